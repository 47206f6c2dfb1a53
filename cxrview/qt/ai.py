"""AI findings in the viewer: the controller that runs predictions and feeds the findings
dock (:mod:`cxrview.qt.findings_dock`) and the overlay layers.

After an image is displayed the controller runs :meth:`Predictor.predict` through the
one worker wrapper, in the latest-wins slot ``"predict"``; a result whose content hash
is not the current image's is dropped. The :class:`Predictor` (which imports torch and
loads two networks, seconds) is built lazily on a worker thread in slot
``"predictor"`` and cached per (bundles, device). A missing or broken bundle is shown
in the dock; the viewer keeps working.

The dock and the layers only ever get :func:`cxrview.inference.gate.presented` output.
When the input check withheld an image (not a frontal adult chest radiograph) they
show nothing but the reasons until the reader asks to see the output anyway; that
choice is remembered per image (its input hash) in the settings, never globally.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QAction, QActionGroup

from cxrview.inference.gate import positive_findings, presented
from cxrview.qt.compat import emit
from cxrview.qt.findings_dock import FindingsDock, output_visible
from cxrview.qt.overlays import apply_prediction, heatmap_rgba, make_layers
from cxrview.qt.settings import as_bool
from cxrview.qt.workers import TaskCancelled, TaskState

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.predict import Prediction, Predictor
    from cxrview.qt.main_window import MainWindow

__all__ = ["AIController", "AIResult", "FindingsDock", "ShownAnyway", "cam_task", "load_predictor_task",
           "predict_task", "prediction_key"]  # FindingsDock re-exported: it lived here before

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda", "mps")
OVERLAYS = (("heatmap", "&Heatmap"), ("boxes", "&Boxes"), ("contours", "Lung/Heart &Contours"),
            ("ctr", "CTR &Calipers"))


def ai_enabled_by_default() -> bool:
    """``CXRVIEW_AI=0`` turns automatic prediction off (the GUI test-suite does)."""
    return os.environ.get("CXRVIEW_AI", "1").strip().lower() not in ("0", "false", "no", "off")


def _active_classifier() -> str | None:
    """The registry's active classifier (Model › Models…), if the registry can tell."""
    try:
        from cxrview.inference.registry import ModelRegistry

        return str(ModelRegistry().active_path("classifier"))
    except Exception as exc:  # a broken registry must not stop the viewer: fall back to the shipped model
        log.warning("model registry unavailable (%s); using the shipped classifier", exc)
        return None


def leave_a_core_for_the_gui() -> None:
    """Inference in the viewer uses all cores but one (process-wide, idempotent).

    With every core busy in torch's thread pool, the GUI thread waits for a CPU and
    the event loop stalls unpredictably (13–35 ms worst gaps measured on 2 cores, one
    50 ms spike in CI). One core kept free gives steady ~13 ms at the cost of ~25 %
    batch throughput on a 2-core machine; command-line scoring keeps every core.
    """
    import torch

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


# -- worker bodies (no Qt) ------------------------------------------------------------------

@dataclass
class PredictorInfo:
    predictor: Predictor
    devices: list[str]


def load_predictor_task(state: TaskState, classifier: str, segmenter: str | None,
                        device: str) -> PredictorInfo:
    """Build (import torch, load bundles) a Predictor off the GUI thread."""
    if state.cancelled:
        raise TaskCancelled("predictor")
    from cxrview.inference.bundle import available_devices
    from cxrview.inference.card import BundleError
    from cxrview.inference.predict import Predictor

    if not Path(classifier).is_dir():
        raise BundleError(f"classifier bundle not found: {classifier}")
    leave_a_core_for_the_gui()
    if segmenter is not None and not Path(segmenter).is_dir():
        segmenter = None  # findings without contours/CTR rather than nothing
    predictor = Predictor(classifier, segmenter, device=device)
    return PredictorInfo(predictor, available_devices())


@dataclass
class AIResult:
    prediction: Prediction
    data: dict[str, Any]
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # finding -> RGBA


def predict_task(state: TaskState, predictor: Predictor, image: XrayImage) -> AIResult:
    """Findings for one image through the shared cache-first path (``scoring.predict_cached``):
    from the results cache when these models saw this input before (heatmaps are then computed
    on demand), else a full prediction (cached)."""
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.predict import Cancelled
    from cxrview.inference.scoring import predict_cached

    try:
        scored = predict_cached(predictor, image, cache=ResultCache(), state=state)
    except Cancelled:
        raise TaskCancelled(image.path) from None
    heatmaps = {}
    for finding, cam in scored.prediction.cams.items():
        if state.cancelled:
            raise TaskCancelled(image.path)
        heatmaps[finding] = heatmap_rgba(cam, scored.prediction.image_size)
    return AIResult(scored.prediction, scored.data, heatmaps)


def cam_task(state: TaskState, predictor: Predictor, image: XrayImage, finding: str,
             thorax: list[list[float]] | None = None) -> tuple[str, str, np.ndarray]:
    """One finding's map on demand, restricted to the thorax outline when the prediction has one."""
    cam = predictor.cam(image, finding, thorax=thorax)
    if state.cancelled:
        raise TaskCancelled(finding)
    return image.content_hash, finding, heatmap_rgba(cam, (image.width, image.height))


# -- "show AI output anyway", per image ------------------------------------------------------

SHOWN_ANYWAY_KEY = "ai/shown_anyway"
SHOWN_ANYWAY_MAX = 500


def prediction_key(data: dict[str, Any]) -> str:
    """The per-image key of a prediction: the hash of what the model saw, else of the pixels."""
    return str(data.get("input_hash") or data.get("content_hash") or "")


class ShownAnyway:
    """Images whose withheld AI output the reader asked to see, most recent last (bounded).

    Kept in QSettings so reopening the image, or restarting the app, keeps the choice; a
    one-element list comes back from INI settings as a plain string, hence the normalising.
    """

    def __init__(self, qs: QSettings, *, limit: int = SHOWN_ANYWAY_MAX) -> None:
        self.qs = qs
        self.limit = limit

    def keys(self) -> list[str]:
        value = self.qs.value(SHOWN_ANYWAY_KEY, [])
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value if v]

    def __contains__(self, key: object) -> bool:
        return bool(key) and key in self.keys()

    def add(self, key: str) -> None:
        keys = [k for k in self.keys() if k != key] + [key]
        self.qs.setValue(SHOWN_ANYWAY_KEY, keys[-self.limit:])

    def remove(self, key: str) -> None:
        keys = self.keys()
        if key in keys:
            self.qs.setValue(SHOWN_ANYWAY_KEY, [k for k in keys if k != key])


# -- controller ------------------------------------------------------------------------------

class AIController(QObject):
    """Runs predictions for the window's current image and feeds the dock and layers."""

    prediction_ready = Signal(object)  # AIResult (current image only)
    prediction_failed = Signal(str)
    predictor_ready = Signal(object)  # Predictor
    shown_anyway_changed = Signal(str, bool)  # image key, withheld output now shown on request

    def __init__(self, window: MainWindow, classifier: str | os.PathLike[str] | None = None,
                 segmenter: str | os.PathLike[str] | None = None) -> None:
        super().__init__(window)
        from cxrview.inference.shipped import shipped_bundle

        self.window = window
        self.classifier = str(classifier or _active_classifier() or shipped_bundle("classifier"))
        self.segmenter: str | None = str(segmenter or shipped_bundle("segmenter"))
        qs = window.settings.qs
        device = str(qs.value("ai/device", "auto") or "auto")
        self.device = device if device in DEVICES else "auto"
        self.enabled = ai_enabled_by_default()
        self.predictor: Predictor | None = None
        self._predictor_key: tuple[str, str | None, str] | None = None
        self._predictor_error: str | None = None
        self.result: AIResult | None = None
        self.shown: dict[str, Any] | None = None  # presented(result.data): what dock and layers show
        self.shown_anyway = ShownAnyway(qs)
        self._forced_unkeyed = False  # "show anyway" for an image without a hash: this display only
        self.dock = FindingsDock(window)
        self.layers = make_layers()
        for name, layer in self.layers.items():
            layer.setVisible(as_bool(qs.value(f"overlays/{name}"), True))
            window.canvas.add_layer(layer)
        self.dock.finding_selected.connect(self.show_heatmap)
        self.dock.show_anyway_requested.connect(self.show_anyway)
        self.dock.hide_again_requested.connect(self.hide_again)
        self.dock.opacity_changed.connect(self.layers["heatmap"].setOpacity)
        self.dock.set_message("" if self.enabled else "Automatic findings are off "
                              "(Model › Run Findings Automatically).")
        self._build_menus()

    # -- menus ---------------------------------------------------------------------------
    def _build_menus(self) -> None:
        w = self.window
        overlays = w.actions_.view_menu.addMenu("&Overlays")
        overlays.setObjectName("menu_overlays")
        self.overlay_actions: dict[str, QAction] = {}
        for name, text in OVERLAYS:
            action = QAction(text, w, checkable=True)
            action.setObjectName(f"action_overlay_{name}")
            action.setChecked(self.layers[name].isVisible())
            action.toggled.connect(partial(self.set_overlay_visible, name))
            overlays.addAction(action)
            self.overlay_actions[name] = action

        bar = w.menuBar()
        help_action = bar.actions()[-1]
        self.model_menu = bar.addMenu("&Model")
        bar.insertMenu(help_action, self.model_menu)
        self.model_menu.setObjectName("menu_model")
        self.run_action = QAction("Run Findings &Automatically", w, checkable=True)
        self.run_action.setObjectName("action_ai_enabled")
        self.run_action.setChecked(self.enabled)
        self.run_action.toggled.connect(self.set_enabled)
        self.model_menu.addAction(self.run_action)
        device_menu = self.model_menu.addMenu("&Device")
        device_menu.setObjectName("menu_device")
        self.device_group = QActionGroup(w)
        self.device_actions: dict[str, QAction] = {}
        for name in DEVICES:
            action = QAction("Auto" if name == "auto" else name.upper(), w, checkable=True)
            action.setObjectName(f"action_device_{name}")
            action.setEnabled(name in ("auto", "cpu"))  # refined once torch is loaded
            action.setChecked(name == self.device)
            action.triggered.connect(partial(_ignore_args, self.set_device, name))
            self.device_group.addAction(action)
            device_menu.addAction(action)
            self.device_actions[name] = action
        w.actions_.docks_menu.addAction(self.dock.toggleViewAction())

    def set_overlay_visible(self, name: str, visible: bool) -> None:
        self.layers[name].setVisible(visible)
        self.window.settings.qs.setValue(f"overlays/{name}", visible)

    def set_device(self, device: str) -> None:
        if device not in DEVICES or device == self.device:
            return
        self.device = device
        self.window.settings.qs.setValue("ai/device", device)
        self.device_actions[device].setChecked(True)
        self.runner.cancel("predict")
        self.request()

    def set_enabled(self, on: bool) -> None:
        self.enabled = bool(on)
        self.run_action.setChecked(self.enabled)
        if self.enabled:
            self.request()
        else:
            self.runner.cancel("predict")
            self.runner.cancel("predictor")

    def set_bundles(self, classifier: str | os.PathLike[str],
                    segmenter: str | os.PathLike[str] | None) -> None:
        """Use other bundles (the next request rebuilds the predictor)."""
        self.classifier = str(classifier)
        self.segmenter = str(segmenter) if segmenter is not None else None
        self.predictor = None
        self._predictor_key = None
        self._predictor_error = None

    @property
    def runner(self):  # TaskRunner
        return self.window.runner

    # -- flow ----------------------------------------------------------------------------
    def image_cleared(self) -> None:
        self.runner.cancel("predict")
        self.runner.cancel("cam")
        self._forget_result()
        self.dock.clear("")

    def _forget_result(self) -> None:
        self.result = None
        self.shown = None
        self._forced_unkeyed = False
        for layer in self.layers.values():
            layer.clear()

    def request(self) -> None:
        """Predict for the image now on the canvas (called after each display)."""
        self.runner.cancel("predict")
        self.runner.cancel("cam")
        self._forget_result()
        image = self.window.canvas.image()
        if image is None or not self.enabled:
            self.dock.clear("" if self.enabled else "Automatic findings are off.")
            return
        key = (self.classifier, self.segmenter, self.device)
        if self.predictor is not None and self._predictor_key == key:
            self._submit_predict(image)
            return
        if self._predictor_key == key and self._predictor_error is not None:
            self.dock.clear(self._predictor_error)
            self.dock.set_message(self._predictor_error, error=True)
            return
        self.dock.clear("Loading model…")
        self._load_predictor(key)

    def _load_predictor(self, key: tuple[str, str | None, str]) -> None:
        """Build the predictor for ``key`` on the worker (unless that is already under way);
        its completion predicts whatever image is then current."""
        current = self.runner.current("predictor")
        if current is not None and current.name == repr(key) and not current.is_done():
            return
        handle = self.runner.submit(load_predictor_task, *key, slot="predictor", name=repr(key))
        handle.returned.connect(partial(self._on_predictor, key))
        handle.errored.connect(partial(self._on_predictor_error, key))

    def preload(self) -> None:
        """Load the model stack while the user is still looking at the fresh window.

        The first load imports torch/torchvision/smp, whose C initialisation holds the GIL
        for a few hundred ms; doing it at start-up keeps that pause away from the moment
        the user starts working with an image.
        """
        if self.enabled and self.predictor is None:
            self._load_predictor((self.classifier, self.segmenter, self.device))

    def _on_predictor(self, key: tuple[str, str | None, str], info: PredictorInfo) -> None:
        self.predictor, self._predictor_key, self._predictor_error = info.predictor, key, None
        for name, action in self.device_actions.items():
            action.setEnabled(name == "auto" or name in info.devices)
        emit(self.predictor_ready, info.predictor)
        self.request()

    def _on_predictor_error(self, key: tuple[str, str | None, str], exc: BaseException) -> None:
        if isinstance(exc, TaskCancelled):
            return
        log.warning("cannot load AI models: %s", exc)
        self.predictor, self._predictor_key = None, key
        self._predictor_error = (f"AI findings unavailable: {type(exc).__name__}: {exc}. "
                                 "The viewer works without them.")
        self.dock.clear()
        self.dock.set_message(self._predictor_error, error=True)
        emit(self.prediction_failed, self._predictor_error)

    def _submit_predict(self, image: XrayImage) -> None:
        assert self.predictor is not None
        self.dock.set_message("Analysing…")
        handle = self.runner.submit(predict_task, self.predictor, image, slot="predict",
                                    name=image.path)
        handle.returned.connect(self._on_predicted)
        handle.errored.connect(self._on_predict_error)

    def _current_hash(self) -> str | None:
        image = self.window.canvas.image()
        return image.content_hash if image is not None else None

    def _on_predicted(self, result: AIResult) -> None:
        content_hash = result.data.get("content_hash") or getattr(result.prediction, "content_hash", "")
        if content_hash != self._current_hash():
            return  # stale: the image changed meanwhile
        self._forget_result()
        self.result = result
        self._present()
        emit(self.prediction_ready, result)

    def _present(self) -> None:
        """Feed the dock and the layers with what the gate lets through for the current result."""
        result = self.result
        if result is None:
            return
        key = prediction_key(result.data)
        force = key in self.shown_anyway if key else self._forced_unkeyed
        shown = presented(result.data, force=force)
        self.shown = shown
        self.runner.cancel("cam")
        for layer in self.layers.values():
            layer.clear()
        self.dock.set_prediction(shown)
        if not output_visible(shown):
            return
        apply_prediction(self.layers, shown)
        positives = positive_findings(shown)  # validated ones only
        if positives:
            top = max(positives, key=lambda n: float(shown["findings"][n]["probability"]))
            self.dock.select_finding(top)  # shows its heatmap

    def output_withheld(self) -> bool:
        """True while the current image's AI output is withheld and not shown on request."""
        return self.shown is not None and not output_visible(self.shown)

    def show_anyway(self) -> None:
        """Show the current image's withheld output (remembered for this image only)."""
        if self.result is None or not self.output_withheld():
            return
        key = prediction_key(self.result.data)
        if key:
            self.shown_anyway.add(key)
        else:
            self._forced_unkeyed = True
        self._present()
        emit(self.shown_anyway_changed, key, True)

    def hide_again(self) -> None:
        """Withhold the current image's output again (and forget that it was asked for)."""
        if self.result is None or self.shown is None or not self.shown.get("forced"):
            return
        key = prediction_key(self.result.data)
        if key:
            self.shown_anyway.remove(key)
        self._forced_unkeyed = False
        self._present()
        emit(self.shown_anyway_changed, key, False)

    def _on_predict_error(self, exc: BaseException) -> None:
        if isinstance(exc, TaskCancelled):
            return
        log.error("prediction failed", exc_info=exc)
        message = f"Prediction failed: {type(exc).__name__}: {exc}"
        self.dock.set_message(message, error=True)
        emit(self.prediction_failed, message)

    def show_heatmap(self, finding: str) -> None:
        """Show ``finding``'s Grad-CAM map (computed on demand for negatives); nothing while the
        output is withheld."""
        result, shown = self.result, self.shown
        if result is None or shown is None or not output_visible(shown):
            return
        if finding not in (shown.get("findings") or {}):
            return
        self.layers["boxes"].set_focus(finding)  # type: ignore[attr-defined]
        rgba = result.heatmaps.get(finding)
        if rgba is not None:
            self.runner.cancel("cam")
            self.layers["heatmap"].set_map(finding, rgba)  # type: ignore[attr-defined]
            return
        image = self.window.canvas.image()
        if self.predictor is None or image is None:
            return
        handle = self.runner.submit(cam_task, self.predictor, image, finding, result.data.get("thorax"),
                                    slot="cam", name=finding)
        handle.returned.connect(self._on_cam)
        handle.errored.connect(self._on_predict_error)

    def _on_cam(self, outcome: tuple[str, str, np.ndarray]) -> None:
        content_hash, finding, rgba = outcome
        if self.result is None or content_hash != self._current_hash():
            return
        self.result.heatmaps[finding] = rgba
        if self.shown is not None and output_visible(self.shown):
            self.layers["heatmap"].set_map(finding, rgba)  # type: ignore[attr-defined]


def _ignore_args(fn: Any, arg: object, *_signal_args: object) -> None:
    fn(arg)

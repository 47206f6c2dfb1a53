"""AI findings in the viewer: the controller that runs predictions for the image on the canvas
and feeds the findings dock (:mod:`cxrview.qt.docks.findings_dock`) and the overlay layers.

After an image is displayed the controller runs a prediction through the one worker
wrapper, in the latest-wins slot ``"predict"``; a result whose content hash is not the
current image's is dropped. The :class:`Predictor` (which imports torch and loads two
networks, seconds) is built lazily on a worker thread in slot ``"predictor"`` and cached
per (bundles, device). A missing or broken bundle is shown in the dock; the viewer keeps
working.

The dock and the layers only ever get :func:`cxrview.inference.gate.presented` output.
When the input check withheld an image (not a frontal adult chest radiograph) they
show nothing but the reasons until the reader asks to see the output anyway; that
choice is remembered per image (:mod:`cxrview.qt.ai.shown_anyway`), never globally.

Collaborators: the canvas (the current image, the layers), the task runner and the
settings. The controller tells the rest of the window what happened through signals
(``prediction_ready``, ``bundles_changed``, …) and offers its commands as action specs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from cxrview.inference.gate import positive_findings, presented
from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.ai.shown_anyway import ShownAnyway, prediction_key
from cxrview.qt.ai.tasks import AIResult, PredictorInfo, cam_task, load_predictor_task, predict_task
from cxrview.qt.compat import emit
from cxrview.qt.docks.findings_dock import FindingsDock, output_visible
from cxrview.qt.overlays import apply_prediction, make_layers
from cxrview.qt.settings import AppSettings, as_bool
from cxrview.qt.workers import TaskCancelled, TaskRunner

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.predict import Predictor
    from cxrview.qt.viewer.canvas import ImageCanvas

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


@dataclass(frozen=True)
class ModelChoice:
    """The bundles and device the viewer predicts with (batch scoring uses the same)."""

    classifier: str
    segmenter: str | None
    device: str


# -- controller ------------------------------------------------------------------------------

class AIController(QObject):
    """Runs predictions for the image on the canvas and feeds the dock and layers."""

    prediction_ready = Signal(object)  # AIResult (current image only)
    prediction_failed = Signal(str)
    predictor_ready = Signal(object)  # Predictor
    shown_anyway_changed = Signal(str, bool)  # image key, withheld output now shown on request
    bundles_changed = Signal(str, object)  # classifier path, segmenter path or None

    def __init__(self, canvas: ImageCanvas, runner: TaskRunner, settings: AppSettings, *,
                 classifier: str | os.PathLike[str] | None = None,
                 segmenter: str | os.PathLike[str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from cxrview.inference.shipped import shipped_bundle

        self.canvas = canvas
        self.runner = runner
        self.qs = settings.qs
        self.classifier = str(classifier or _active_classifier() or shipped_bundle("classifier"))
        self.segmenter: str | None = str(segmenter or shipped_bundle("segmenter"))
        device = str(self.qs.value("ai/device", "auto") or "auto")
        self.device = device if device in DEVICES else "auto"
        self.enabled = ai_enabled_by_default()
        self.predictor: Predictor | None = None
        self._predictor_key: tuple[str, str | None, str] | None = None
        self._predictor_error: str | None = None
        self.result: AIResult | None = None
        self.shown: dict[str, Any] | None = None  # presented(result.data): what dock and layers show
        self.shown_anyway = ShownAnyway(self.qs)
        self._forced_unkeyed = False  # "show anyway" for an image without a hash: this display only
        self.dock = FindingsDock()
        self.layers = make_layers()
        for name, layer in self.layers.items():
            layer.setVisible(as_bool(self.qs.value(f"overlays/{name}"), True))
            canvas.add_layer(layer)
        self.dock.finding_selected.connect(self.show_heatmap)
        self.dock.show_anyway_requested.connect(self.show_anyway)
        self.dock.hide_again_requested.connect(self.hide_again)
        self.dock.opacity_changed.connect(self.layers["heatmap"].setOpacity)
        self.dock.set_message("" if self.enabled else "Automatic findings are off "
                              "(Model › Run Findings Automatically).")
        self.actions = ActionSet(self, self._action_specs())
        self.overlay_actions = {name: self.actions[f"overlay_{name}"] for name, _ in OVERLAYS}
        self.device_actions = {name: self.actions[f"device_{name}"] for name in DEVICES}
        self.run_action = self.actions["ai_enabled"]

    # -- commands --------------------------------------------------------------------------
    def _action_specs(self) -> list[ActionSpec]:
        specs = [ActionSpec(f"overlay_{name}", text, "view.overlays", checkable=True,
                            checked=self.layers[name].isVisible(),
                            toggled=partial(self.set_overlay_visible, name)) for name, text in OVERLAYS]
        specs.append(ActionSpec("ai_enabled", "Run Findings &Automatically", "model.run", checkable=True,
                                checked=self.enabled, toggled=self.set_enabled))
        specs += [ActionSpec(f"device_{name}", "Auto" if name == "auto" else name.upper(), "model.device",
                             group="device", checked=name == self.device,
                             enabled=name in ("auto", "cpu"),  # refined once torch is loaded
                             triggered=partial(self.set_device, name)) for name in DEVICES]
        return specs

    def set_overlay_visible(self, name: str, visible: bool) -> None:
        self.layers[name].setVisible(visible)
        self.qs.setValue(f"overlays/{name}", visible)

    def set_device(self, device: str) -> None:
        if device not in DEVICES or device == self.device:
            return
        self.device = device
        self.qs.setValue("ai/device", device)
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
        emit(self.bundles_changed, self.classifier, self.segmenter)

    def use_classifier(self, classifier: str | os.PathLike[str]) -> None:
        """Switch to another classifier (e.g. the one just activated) and predict again."""
        self.set_bundles(classifier, self.segmenter)
        self.request()

    def model_choice(self) -> ModelChoice:
        return ModelChoice(self.classifier, self.segmenter, self.device)

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
        image = self.canvas.image()
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
        image = self.canvas.image()
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

    def select_finding(self, finding: str) -> None:
        """Select ``finding`` in the findings dock (which shows its heatmap), once there is a result."""
        if self.result is not None:
            self.dock.select_finding(finding)

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
        image = self.canvas.image()
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

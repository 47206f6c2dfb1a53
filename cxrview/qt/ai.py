"""AI findings in the viewer: the findings dock and the controller that runs predictions.

After an image is displayed the controller runs :meth:`Predictor.predict` through the
one worker wrapper, in the latest-wins slot ``"predict"``; a result whose content hash
is not the current image's is dropped. The :class:`Predictor` (which imports torch and
loads two networks, seconds) is built lazily on a worker thread in slot
``"predictor"`` and cached per (bundles, device). A missing or broken bundle is shown
in the dock; the viewer keeps working.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from cxrview.qt.compat import emit
from cxrview.qt.overlays import apply_prediction, finding_color, heatmap_rgba, make_layers
from cxrview.qt.settings import as_bool
from cxrview.qt.workers import TaskCancelled, TaskState

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.predict import Prediction, Predictor
    from cxrview.qt.main_window import MainWindow

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
    """Findings for one image: from the results cache when this image was scored with these
    models before (heatmaps are then computed on demand), else a full prediction (cached)."""
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.predict import Cancelled, Prediction

    cache = ResultCache()
    key = predictor.cache_key(image) if image.content_hash else None
    cached = cache.get(key) if key is not None else None
    if cached is not None:
        cached = {**cached, "path": image.path}
        return AIResult(Prediction.from_dict(cached), cached, {})
    try:
        prediction = predictor.predict(image, cam_for="positives", state=state)
    except Cancelled:
        raise TaskCancelled(image.path) from None
    if key is not None:
        cache.put(key, prediction.to_dict())
    heatmaps = {}
    for finding, cam in prediction.cams.items():
        if state.cancelled:
            raise TaskCancelled(image.path)
        heatmaps[finding] = heatmap_rgba(cam, prediction.image_size)
    return AIResult(prediction, prediction.to_dict(), heatmaps)


def cam_task(state: TaskState, predictor: Predictor, image: XrayImage, finding: str
             ) -> tuple[str, str, np.ndarray]:
    cam = predictor.cam(image, finding)
    if state.cancelled:
        raise TaskCancelled(finding)
    return image.content_hash, finding, heatmap_rgba(cam, (image.width, image.height))


# -- widgets ---------------------------------------------------------------------------------

class ProbabilityBar(QWidget):
    """A horizontal bar for a probability with the decision threshold marked."""

    def __init__(self, probability: float, threshold: float, color: QColor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.probability = float(probability)
        self.threshold = float(threshold)
        self.color = color
        self.setMinimumSize(60, 12)
        self.setToolTip(f"p = {self.probability:.3f}, threshold = {self.threshold:.3f}")

    def sizeHint(self) -> QSize:  # Qt override
        return QSize(120, 14)

    def paintEvent(self, event: QPaintEvent) -> None:  # Qt override
        p = QPainter(self)
        r = QRectF(self.rect()).adjusted(0.5, 2.5, -0.5, -2.5)
        p.fillRect(r, QColor(128, 128, 128, 60))
        filled = QRectF(r.left(), r.top(), r.width() * max(0.0, min(1.0, self.probability)),
                        r.height())
        color = QColor(self.color)
        if self.probability < self.threshold:
            color.setAlpha(110)
        p.fillRect(filled, color)
        x = r.left() + r.width() * max(0.0, min(1.0, self.threshold))
        p.setPen(QPen(self.palette().text().color(), 2))
        p.drawLine(int(x), 0, int(x), self.height())
        p.end()


class FindingRow(QWidget):
    def __init__(self, name: str, info: dict[str, Any], color: QColor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.positive = bool(info["positive"])
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 1, 4, 1)
        label = QLabel(name.replace("_", " "), self)
        label.setMinimumWidth(120)
        pct = QLabel(f"{float(info['probability']):.0%}", self)
        pct.setMinimumWidth(36)
        pct.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if self.positive:
            font = label.font()
            font.setBold(True)
            label.setFont(font)
            pct.setFont(font)
        self.bar = ProbabilityBar(info["probability"], info["threshold"], color, self)
        layout.addWidget(label)
        layout.addWidget(self.bar, 1)
        layout.addWidget(pct)


class FindingsDock(QDockWidget):
    """Findings with probability bars, model info, validity badge and CTR."""

    finding_selected = Signal(str)
    opacity_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Findings", parent)
        self.setObjectName("dock_findings")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        self.model_label = QLabel("Model: not loaded", body)
        self.model_label.setObjectName("findings_model")
        self.model_label.setWordWrap(True)
        self.badge = QLabel(body)
        self.badge.setObjectName("findings_validity")
        self.badge.setWordWrap(True)
        self.badge.setStyleSheet("background: #b3261e; color: white; border-radius: 4px;"
                                 " padding: 3px; font-weight: bold;")
        self.badge.hide()
        self.message = QLabel(body)
        self.message.setObjectName("findings_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel(body)
        self.summary.setObjectName("findings_summary")
        self.summary.setWordWrap(True)
        self.ctr_label = QLabel(body)
        self.ctr_label.setObjectName("findings_ctr")
        self.ctr_label.setWordWrap(True)
        self.list = QListWidget(body)
        self.list.setObjectName("findings_list")
        self.list.currentItemChanged.connect(self._on_current)
        opacity_row = QHBoxLayout()
        opacity_row.addWidget(QLabel("Heatmap opacity", body))
        self.opacity = QSlider(Qt.Orientation.Horizontal, body)
        self.opacity.setObjectName("heatmap_opacity")
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.valueChanged.connect(self._on_opacity)
        opacity_row.addWidget(self.opacity, 1)
        for w in (self.model_label, self.badge, self.message, self.summary, self.ctr_label):
            layout.addWidget(w)
        layout.addWidget(self.list, 1)
        layout.addLayout(opacity_row)
        self.setWidget(body)
        self._rows: list[FindingRow] = []
        self.clear("")

    # -- content -------------------------------------------------------------------------
    def clear(self, message: str = "") -> None:
        self.list.blockSignals(True)
        self.list.clear()
        self.list.blockSignals(False)
        self._rows = []
        self.badge.hide()
        self.summary.clear()
        self.ctr_label.clear()
        self.set_message(message)

    def set_message(self, text: str, *, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #ff6b6b; font-weight: bold;" if error else "")
        self.message.setVisible(bool(text))

    def message_text(self) -> str:
        return self.message.text() if not self.message.isHidden() else ""

    def set_model_info(self, model: dict[str, Any]) -> None:
        text = f"Model: {model.get('name', '?')} {model.get('version', '')}".rstrip()
        seg = model.get("segmenter")
        if seg:
            text += f"\nSegmenter: {seg.get('name', '?')} {seg.get('version', '')}".rstrip()
        text += f"\nDevice: {model.get('device', '?')}"
        self.model_label.setText(text)

    def set_prediction(self, data: dict[str, Any]) -> None:
        self.clear("")
        self.set_model_info(data.get("model") or {})
        findings: dict[str, dict[str, Any]] = data.get("findings") or {}
        labels = list(findings)
        order = sorted(findings, key=lambda n: (not findings[n]["positive"],
                                                -float(findings[n]["probability"])))
        for name in order:
            row = FindingRow(name, findings[name], finding_color(name, labels))
            item = QListWidgetItem(self.list)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setSizeHint(row.sizeHint())
            self.list.setItemWidget(item, row)
            self._rows.append(row)
        positives = [n for n in order if findings[n]["positive"]]
        self.summary.setText(f"{len(positives)} finding(s) above threshold" if positives
                             else "No finding above threshold")
        validity = data.get("validity") or {}
        if not validity.get("ok", True):
            warnings = validity.get("warnings") or ["input check failed"]
            self.badge.setText("⚠ Input may be unsuitable:\n" + "\n".join(map(str, warnings)))
            self.badge.show()
        ctr = data.get("ctr")
        if ctr:
            text = f"CTR {float(ctr['value']):.2f}"
            if ctr.get("flag"):
                text += f" — {ctr['flag']}"
                self.ctr_label.setStyleSheet("color: #ff9f43; font-weight: bold;")
            else:
                self.ctr_label.setStyleSheet("")
            self.ctr_label.setText(text)
        else:
            self.ctr_label.setText("CTR: not measured")

    def finding_names(self) -> list[str]:
        return [row.name for row in self._rows]

    def select_finding(self, name: str | None) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentItem(item)
                return

    def _on_current(self, current: QListWidgetItem | None, _previous: object) -> None:
        if current is not None:
            emit(self.finding_selected, str(current.data(Qt.ItemDataRole.UserRole)))

    def _on_opacity(self, value: int) -> None:
        emit(self.opacity_changed, value / 100.0)


# -- controller ------------------------------------------------------------------------------

class AIController(QObject):
    """Runs predictions for the window's current image and feeds the dock and layers."""

    prediction_ready = Signal(object)  # AIResult (current image only)
    prediction_failed = Signal(str)
    predictor_ready = Signal(object)  # Predictor

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
        self.dock = FindingsDock(window)
        self.layers = make_layers()
        for name, layer in self.layers.items():
            layer.setVisible(as_bool(qs.value(f"overlays/{name}"), True))
            window.canvas.add_layer(layer)
        self.dock.finding_selected.connect(self.show_heatmap)
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
        self.result = None
        for layer in self.layers.values():
            layer.clear()
        self.dock.clear("")

    def request(self) -> None:
        """Predict for the image now on the canvas (called after each display)."""
        self.runner.cancel("predict")
        self.runner.cancel("cam")
        self.result = None
        for layer in self.layers.values():
            layer.clear()
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
        if result.prediction.content_hash != self._current_hash():
            return  # stale: the image changed meanwhile
        self.result = result
        data = result.data
        self.dock.set_prediction(data)
        apply_prediction(self.layers, data)
        positives = result.prediction.positives
        if positives:
            top = max(positives, key=lambda n: data["findings"][n]["probability"])
            self.dock.select_finding(top)  # shows its heatmap
        emit(self.prediction_ready, result)

    def _on_predict_error(self, exc: BaseException) -> None:
        if isinstance(exc, TaskCancelled):
            return
        log.error("prediction failed", exc_info=exc)
        message = f"Prediction failed: {type(exc).__name__}: {exc}"
        self.dock.set_message(message, error=True)
        emit(self.prediction_failed, message)

    def show_heatmap(self, finding: str) -> None:
        """Show ``finding``'s Grad-CAM map (computed on demand for negatives)."""
        result = self.result
        if result is None:
            return
        self.layers["boxes"].set_focus(finding)
        rgba = result.heatmaps.get(finding)
        if rgba is not None:
            self.runner.cancel("cam")
            self.layers["heatmap"].set_map(finding, rgba)
            return
        image = self.window.canvas.image()
        if self.predictor is None or image is None:
            return
        handle = self.runner.submit(cam_task, self.predictor, image, finding, slot="cam",
                                    name=finding)
        handle.returned.connect(self._on_cam)
        handle.errored.connect(self._on_predict_error)

    def _on_cam(self, outcome: tuple[str, str, np.ndarray]) -> None:
        content_hash, finding, rgba = outcome
        if self.result is None or content_hash != self._current_hash():
            return
        self.result.heatmaps[finding] = rgba
        self.layers["heatmap"].set_map(finding, rgba)


def _ignore_args(fn: Any, arg: object, *_signal_args: object) -> None:
    fn(arg)

"""Model › Fine-tune on Corrections…: the dialog and its live loss curve."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

if TYPE_CHECKING:
    from cxrview.finetune_orchestration import FinetuneOptions


class LossCurve(QWidget):
    """Live training curve: loss per step, validation loss per epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(140)
        self.steps: list[float] = []
        self.val: list[tuple[int, float]] = []

    def add(self, event: dict[str, Any]) -> None:
        if event.get("event") == "step" and isinstance(event.get("loss"), (int, float)):
            self.steps.append(float(event["loss"]))
        elif event.get("event") == "epoch" and isinstance(event.get("val_loss"), (int, float)):
            self.val.append((len(self.steps), float(event["val_loss"])))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # Qt override
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(30, 30, 34))
        values = self.steps + [v for _, v in self.val]
        if not self.steps or not values:
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Loss curve appears here")
            return
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        w, h, n = self.width() - 10, self.height() - 20, len(self.steps)

        def point(i: float, v: float) -> QPointF:
            return QPointF(5 + w * i / max(1, n - 1), 10 + h * (1 - (v - lo) / span))

        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor(90, 170, 255), 1.5))
        for i in range(1, n):
            painter.drawLine(point(i - 1, self.steps[i - 1]), point(i, self.steps[i]))
        for i, v in enumerate(self.steps if n <= 40 else []):
            painter.drawEllipse(point(i, v), 2, 2)
        painter.setPen(QPen(QColor(255, 170, 60), 2))
        for i, v in self.val:
            painter.drawEllipse(point(min(i, n - 1), v), 3, 3)
        painter.setPen(QColor(200, 200, 200))
        painter.drawText(8, 14, f"train loss (blue) · val loss (orange)   {lo:.3f}–{hi:.3f}")


class FinetuneCommands(Protocol):
    """What the dialog asks of its controller."""

    def base_text(self) -> str: ...

    def estimate_text(self, options: FinetuneOptions) -> str: ...

    def start(self, options: FinetuneOptions) -> bool: ...

    def cancel(self) -> None: ...


class FinetuneDialog(QDialog):
    """Model › Fine-tune on Corrections…: the run's options, its estimate, a live loss curve."""

    def __init__(self, controller: FinetuneCommands, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle("Fine-tune on Corrections")
        self.setObjectName("finetune_dialog")
        form = QFormLayout()
        self.base = QLabel(controller.base_text(), self)
        self.corrections = QComboBox(self)
        self.corrections.addItem("Reviewed and corrected images only", True)
        self.corrections.addItem("All labelled images", False)
        self.replay = QSpinBox(self)
        self.replay.setRange(0, 100000)
        self.replay.setValue(200)
        self.replay.setSuffix(" original images")
        self.epochs = QSpinBox(self)
        self.epochs.setRange(1, 100)
        self.epochs.setValue(1)
        self.frozen = QSpinBox(self)
        self.frozen.setRange(0, 6)
        self.frozen.setValue(2)
        self.device = QComboBox(self)
        for name in ("auto", "cpu", "cuda", "mps"):
            self.device.addItem(name, name)
        self.estimate = QLabel("", self)
        self.estimate.setWordWrap(True)
        form.addRow("Base model", self.base)
        form.addRow("Corrections", self.corrections)
        form.addRow("Replay", self.replay)
        form.addRow("Epochs", self.epochs)
        form.addRow("Frozen blocks", self.frozen)
        form.addRow("Device", self.device)
        form.addRow("Estimate", self.estimate)
        self.status = QLabel("", self)
        self.status.setObjectName("finetune_status")
        self.status.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.curve = LossCurve(self)
        self.start_button = QPushButton("Start", self)
        self.cancel_button = QPushButton("Cancel Run", self)
        self.cancel_button.setEnabled(False)
        self.close_button = QPushButton("Close", self)
        self.start_button.clicked.connect(self._start)
        self.cancel_button.clicked.connect(controller.cancel)
        self.close_button.clicked.connect(self.hide)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.close_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.bar)
        layout.addWidget(self.curve, 1)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        for spin in (self.replay, self.epochs, self.frozen):
            spin.valueChanged.connect(self._update_estimate)
        for combo in (self.corrections, self.device):
            combo.currentIndexChanged.connect(self._update_estimate)
        self._update_estimate()
        self.resize(560, 560)

    def options(self) -> FinetuneOptions:
        from cxrview.finetune_orchestration import FinetuneOptions

        return FinetuneOptions(epochs=self.epochs.value(), freeze_blocks=self.frozen.value(),
                               replay=self.replay.value(), reviewed_only=bool(self.corrections.currentData()),
                               device=self.device.currentData())

    def _update_estimate(self, *_args: object) -> None:
        self.estimate.setText(self.controller.estimate_text(self.options()))

    def _start(self) -> None:
        self.curve.steps.clear()
        self.curve.val.clear()
        self.controller.start(self.options())

    def set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)

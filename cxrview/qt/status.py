"""The viewer's status bar: cursor position/value, calibration, window, zoom, loading."""

from __future__ import annotations

import math

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from cxrview.core import Window, XrayImage
from cxrview.qt.viewer.canvas import CursorInfo


def _fmt_value(value: float) -> str:
    if math.isnan(value):
        return "–"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.4g}"


def format_window(window: Window | None) -> str:
    if window is None:
        return "C – W –"
    return f"C {window.center:.6g}  W {window.width:.6g}"


class ViewerStatusBar(QStatusBar):
    """Permanent fields on the right; transient messages (errors, notices) on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("status_bar")
        self.loading = QProgressBar(self)
        self.loading.setObjectName("loading_indicator")
        self.loading.setRange(0, 0)  # busy indicator
        self.loading.setMaximumWidth(90)
        self.loading.setMaximumHeight(14)
        self.loading.setTextVisible(False)
        self.loading.hide()
        self.position = self._label("position", "Pixel position (x, y) under the cursor")
        self.value = self._label("value", "Raw value (after rescale slope/intercept)")
        self.calibration = self._label("calibration", "Pixel spacing and its source")
        self.window_label = self._label("window", "Window center / width (modality units)")
        self.zoom = self._label("zoom", "Zoom: 100% = one image pixel per screen pixel")
        self._img: XrayImage | None = None

    def _label(self, name: str, tip: str) -> QLabel:
        label = QLabel(self)
        label.setObjectName(f"status_{name}")
        label.setToolTip(tip)
        label.setMinimumWidth(60)
        self.addPermanentWidget(label)
        return label

    def set_loading(self, on: bool) -> None:
        self.loading.setVisible(on)
        if on:
            self.insertPermanentWidget(0, self.loading)

    def set_image(self, img: XrayImage | None) -> None:
        self._img = img
        self.set_cursor(None)
        if img is None:
            self.calibration.setText("")
            return
        if img.spacing is not None:
            sp = img.spacing
            size = (f"{sp.col_mm:.3g} mm/px" if math.isclose(sp.row_mm, sp.col_mm)
                    else f"{sp.col_mm:.3g}×{sp.row_mm:.3g} mm/px")
            self.calibration.setText(f"{size} ({img.spacing_source.value})")
        else:
            self.calibration.setText("uncalibrated (px)")

    def set_cursor(self, info: CursorInfo | None) -> None:
        if info is None:
            self.position.setText("x –, y –")
            self.value.setText("value –")
            return
        text = f"x {info.x}, y {info.y}"
        img = self._img
        if img is not None and img.spacing is not None:
            text += (f"  ({(info.x + 0.5) * img.spacing.col_mm:.1f}, "
                     f"{(info.y + 0.5) * img.spacing.row_mm:.1f} mm)")
        self.position.setText(text)
        self.value.setText(f"value {_fmt_value(info.raw)}")

    def set_window(self, window: Window | None) -> None:
        self.window_label.setText(format_window(window))

    def set_zoom(self, zoom: float) -> None:
        self.zoom.setText(f"{zoom * 100:.0f}%")

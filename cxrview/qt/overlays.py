"""AI overlay layers: Grad-CAM heatmap, finding boxes, lung/heart contours, CTR calipers.

All draw in image-pixel coordinates (they are :class:`OverlayLayer` s, children of the
image item) and hold plain data set from the GUI thread. Painting never raises: the
base class guards :meth:`paint_overlay`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPolygonF

from cxrview.qt.viewer.layers import OverlayLayer

HEATMAP_MAX_SIDE = 512  # heatmaps are colourised at most this size; the painter scales them

# Inferno-like perceptual colormap: anchors sampled from matplotlib's "inferno".
_INFERNO_ANCHORS = np.array([
    (0.00, 0, 0, 4), (0.13, 31, 12, 72), (0.25, 85, 15, 109), (0.38, 136, 34, 106),
    (0.50, 186, 54, 85), (0.63, 227, 89, 51), (0.75, 249, 140, 10), (0.88, 249, 201, 50),
    (1.00, 252, 255, 164)], dtype=np.float64)


def _build_lut() -> np.ndarray:
    x = np.linspace(0.0, 1.0, 256)
    lut = np.empty((256, 4), dtype=np.uint8)
    for c in range(3):
        lut[:, c] = np.round(np.interp(x, _INFERNO_ANCHORS[:, 0], _INFERNO_ANCHORS[:, c + 1]))
    # Low activations fade out so the anatomy stays readable under the map.
    lut[:, 3] = np.round(255 * np.clip((x - 0.15) / 0.45, 0.0, 1.0))
    return lut


INFERNO_LUT = _build_lut()

FINDING_COLORS = (
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0",
    "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8",
)
CONTOUR_COLORS = {"heart": QColor(255, 80, 80), "left_lung": QColor(0, 200, 255),
                  "right_lung": QColor(0, 230, 160)}


def finding_color(finding: str, labels: list[str] | None = None) -> QColor:
    """A stable colour per finding (by its index in the model's labels when known)."""
    if labels and finding in labels:
        index = labels.index(finding)
    else:
        index = sum(map(ord, finding))
    return QColor(FINDING_COLORS[index % len(FINDING_COLORS)])


def colorize(cam: np.ndarray) -> np.ndarray:
    """float map in [0, 1] -> contiguous RGBA uint8 through the perceptual LUT."""
    idx = np.clip(np.nan_to_num(cam.astype(np.float32)) * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(INFERNO_LUT[idx])


def heatmap_rgba(cam: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Colourised map at the image's aspect ratio, capped at :data:`HEATMAP_MAX_SIDE`."""
    from cxrview.inference.gradcam import cam_to_size

    w, h = image_size
    scale = min(1.0, HEATMAP_MAX_SIDE / max(w, h, 1))
    return colorize(cam_to_size(cam, max(1, round(w * scale)), max(1, round(h * scale))))


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A QImage owning a copy of ``rgba`` (GUI thread)."""
    h, w = rgba.shape[:2]
    data = np.ascontiguousarray(rgba)
    return QImage(data.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


def _cosmetic_pen(color: QColor, width: float = 2.0) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)
    return pen


def _label_font(painter: QPainter, px: float = 12.0) -> QFont:
    """A font that renders ~``px`` screen pixels tall whatever the zoom."""
    scale = abs(painter.worldTransform().m11()) or 1.0
    font = QFont()
    font.setPixelSize(max(1, round(px / scale)))
    font.setBold(True)
    return font


class HeatmapLayer(OverlayLayer):
    """One finding's Grad-CAM map stretched over the image."""

    def __init__(self, name: str = "heatmap", *, z: float = 10.0, opacity: float = 0.5) -> None:
        super().__init__(name, z=z, opacity=opacity)
        self._image: QImage | None = None
        self.finding: str | None = None

    def set_map(self, finding: str | None, rgba: np.ndarray | None) -> None:
        self.finding = finding
        self._image = rgba_to_qimage(rgba) if rgba is not None else None
        self.update()

    def has_content(self) -> bool:
        return self._image is not None and not self._image.isNull()

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def clear(self) -> None:
        self.set_map(None, None)

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        if self._image is None or image_rect.isEmpty():
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(image_rect, self._image)


class BoxesLayer(OverlayLayer):
    """Labelled finding boxes (``Prediction.to_dict()["boxes"]``).

    With a ``focus`` finding only its boxes are drawn (all boxes of all positives at
    once hide the image); ``focus=None`` draws every box.
    """

    def __init__(self, name: str = "boxes", *, z: float = 20.0) -> None:
        super().__init__(name, z=z)
        self._boxes: list[dict[str, Any]] = []
        self._labels: list[str] = []
        self.focus: str | None = None

    def set_focus(self, finding: str | None) -> None:
        self.focus = finding
        self.update()

    def visible_boxes(self) -> list[dict[str, Any]]:
        if self.focus is None:
            return list(self._boxes)
        return [b for b in self._boxes if b["finding"] == self.focus]

    def set_boxes(self, boxes: list[dict[str, Any]], labels: list[str] | None = None) -> None:
        self._boxes = list(boxes)
        self._labels = list(labels or [])
        self.focus = None
        self.update()

    def boxes(self) -> list[dict[str, Any]]:
        return list(self._boxes)

    def has_content(self) -> bool:
        return bool(self._boxes)

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def clear(self) -> None:
        self.set_boxes([])

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        boxes = self.visible_boxes()
        if not boxes:
            return
        painter.setFont(_label_font(painter))
        for box in boxes:
            color = finding_color(str(box["finding"]), self._labels)
            rect = QRectF(float(box["x"]), float(box["y"]), float(box["w"]), float(box["h"]))
            painter.setPen(_cosmetic_pen(color))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(rect)
            # The finding only: a box's ranking score next to the name reads as a probability
            # ("Pneumonia 1%" beside a 93% finding), which it is not.
            text = str(box["finding"])
            painter.drawText(rect.topLeft() + QPointF(2, -3 / (abs(painter.worldTransform().m11()) or 1)),
                             text)


class ContoursLayer(OverlayLayer):
    """Lung and heart outlines from the segmenter's polygons."""

    def __init__(self, name: str = "contours", *, z: float = 15.0) -> None:
        super().__init__(name, z=z)
        self._polygons: dict[str, list[QPolygonF]] = {}

    def set_polygons(self, polygons: dict[str, list[list[list[float]]]]) -> None:
        self._polygons = {
            name: [QPolygonF([QPointF(float(x), float(y)) for x, y in poly]) for poly in polys
                   if len(poly) >= 3]
            for name, polys in (polygons or {}).items()}
        self.update()

    def polygon_count(self) -> int:
        return sum(len(p) for p in self._polygons.values())

    def has_content(self) -> bool:
        return self.polygon_count() > 0

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def clear(self) -> None:
        self._polygons = {}
        self.update()

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for name, polys in self._polygons.items():
            painter.setPen(_cosmetic_pen(CONTOUR_COLORS.get(name, QColor(255, 255, 255)), 1.5))
            for poly in polys:
                painter.drawPolygon(poly)


class CTRLayer(OverlayLayer):
    """Cardiothoracic-ratio calipers: heart and thorax widths with the ratio."""

    HEART = QColor(255, 80, 80)
    THORAX = QColor(255, 210, 0)

    def __init__(self, name: str = "ctr", *, z: float = 25.0) -> None:
        super().__init__(name, z=z)
        self._ctr: dict[str, Any] | None = None

    def set_ctr(self, ctr: dict[str, Any] | None) -> None:
        self._ctr = dict(ctr) if ctr else None
        self.update()

    def has_content(self) -> bool:
        return self._ctr is not None

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def clear(self) -> None:
        self.set_ctr(None)

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        if self._ctr is None:
            return
        scale = abs(painter.worldTransform().m11()) or 1.0
        tick = 6.0 / scale
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for key, color in (("thorax", self.THORAX), ("heart", self.HEART)):
            x0, x1, y = (float(v) for v in self._ctr[key])
            painter.setPen(_cosmetic_pen(color))
            painter.drawLine(QPointF(x0, y), QPointF(x1, y))
            painter.drawLine(QPointF(x0, y - tick), QPointF(x0, y + tick))
            painter.drawLine(QPointF(x1, y - tick), QPointF(x1, y + tick))
        x0, _x1, y = (float(v) for v in self._ctr["heart"])
        text = f"CTR {float(self._ctr['value']):.2f}"
        if self._ctr.get("flag"):
            text += f" ({self._ctr['flag']})"
        painter.setFont(_label_font(painter, 13.0))
        painter.setPen(_cosmetic_pen(self.HEART))
        painter.drawText(QPointF(x0, y - 2 * tick), text)


def make_layers() -> dict[str, OverlayLayer]:
    """The AI layers, keyed by the names used in menus, settings and ``render --overlay``."""
    return {"heatmap": HeatmapLayer(), "boxes": BoxesLayer(), "contours": ContoursLayer(),
            "ctr": CTRLayer()}


def apply_prediction(layers: dict[str, OverlayLayer], data: dict[str, Any]) -> None:
    """Boxes, contours and calipers from ``Prediction.to_dict()`` (the heatmap is per finding)."""
    labels = list(data["findings"])
    layers["boxes"].set_boxes(data["boxes"], labels)  # type: ignore[attr-defined]
    layers["contours"].set_polygons(data.get("masks") or {})  # type: ignore[attr-defined]
    layers["ctr"].set_ctr(data.get("ctr"))  # type: ignore[attr-defined]


def paint_layers(grey: np.ndarray, layers: list[OverlayLayer]) -> np.ndarray:
    """The displayed 8-bit image with ``layers`` painted on it at 1 image pixel per device pixel.

    Offscreen equivalent of the canvas: the same ``paint_overlay`` code, in z
    order, each at its own opacity (hidden layers are skipped). Give the layers
    their image size (``set_image_size``) before their data: a size change
    clears them. Returns (H, W, 3) uint8 RGB.
    """
    h, w = grey.shape
    base = QImage(np.ascontiguousarray(grey).data, w, h, w, QImage.Format.Format_Grayscale8)
    canvas = base.convertToFormat(QImage.Format.Format_RGB32)
    painter = QPainter(canvas)
    try:
        rect = QRectF(0, 0, w, h)
        for layer in sorted((item for item in layers if item.isVisible()), key=lambda item: item.zValue()):
            painter.save()
            painter.setOpacity(layer.opacity())
            layer.paint_overlay(painter, rect)
            painter.restore()
    finally:
        painter.end()
    ptr = canvas.constBits()
    bgra = np.frombuffer(ptr, np.uint8, count=canvas.sizeInBytes()).reshape(h, canvas.bytesPerLine() // 4, 4)
    return np.ascontiguousarray(bgra[:, :w, 2::-1])

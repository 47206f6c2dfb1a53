"""Overlay layers drawn on top of the radiograph, in image-pixel coordinates.

Later features (heatmaps, detection boxes, segmentation masks, calipers) each become
one :class:`OverlayLayer`. A layer is a :class:`QGraphicsItem` parented to the image
item, so zoom and pan apply to it for free and its coordinates are image pixels
(x to the right, y down, pixel (0, 0) covering [0, 1) x [0, 1)).

Painting must never raise: an exception inside ``paint`` would be reported once per
frame and leave the view half-drawn, so :meth:`OverlayLayer.paint` guards the
subclass hook and logs the first failure only.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsLineItem,
    QGraphicsSimpleTextItem,
    QStyleOptionGraphicsItem,
    QWidget,
)

log = logging.getLogger(__name__)

Point = tuple[float, float]
DistanceFn = Callable[[Point, Point], "float | None"]


class OverlayLayer(QGraphicsItem):
    """Base class of every overlay: a named, toggleable, semi-transparent sheet.

    Subclasses either override :meth:`paint_overlay` (immediate-mode drawing, e.g. a
    heatmap image or boxes) or add child ``QGraphicsItem`` s (retained items that need
    hit-testing, e.g. measurements). ``z`` orders layers among themselves; all layers
    sit above the image.
    """

    def __init__(self, name: str, *, z: float = 1.0, opacity: float = 1.0,
                 visible: bool = True) -> None:
        super().__init__()
        self.name = name
        self._image_rect = QRectF()
        self._paint_failed = False
        self.setZValue(z)
        self.setOpacity(opacity)
        self.setVisible(visible)

    # -- geometry ---------------------------------------------------------------------
    def set_image_size(self, width: int, height: int) -> None:
        """Called by the canvas whenever a new image is shown."""
        self.prepareGeometryChange()
        self._image_rect = QRectF(0, 0, width, height)
        self.on_image_changed(width, height)

    def image_rect(self) -> QRectF:
        return QRectF(self._image_rect)

    def on_image_changed(self, width: int, height: int) -> None:
        """Hook: drop or rescale content that belonged to the previous image."""

    def boundingRect(self) -> QRectF:  # Qt override
        return QRectF(self._image_rect)

    # -- painting ---------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem,
              widget: QWidget | None = None) -> None:
        try:
            self.paint_overlay(painter, self._image_rect)
        except Exception:  # never let an overlay break the view
            if not self._paint_failed:
                log.exception("overlay layer %r failed to paint", self.name)
            self._paint_failed = True

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        """Hook: draw in image-pixel coordinates. The default draws nothing."""

    def clear(self) -> None:
        """Hook: remove all content (the canvas calls it on "clear overlays")."""


@dataclass
class Measurement:
    """One distance measurement between two image points (x, y), in pixels."""

    p0: tuple[float, float]
    p1: tuple[float, float]
    length_px: float
    length_mm: float | None
    text: str
    items: list[QGraphicsItem] = field(default_factory=list, repr=False, compare=False)

    @property
    def calibrated(self) -> bool:
        return self.length_mm is not None


def measurement_text(length_px: float, length_mm: float | None) -> str:
    """The label radiologists read: mm when the spacing is known, else an explicit warning."""
    if length_mm is not None:
        return f"{length_mm:.1f} mm"
    return f"{length_px:.0f} px (uncalibrated)"


class MeasurementLayer(OverlayLayer):
    """Distance measurements (ruler lines with a length label).

    Lines use a cosmetic pen and labels ignore the view transform, so both stay
    readable at any zoom level. Mapping pixels to millimetres is delegated to a
    callable supplied by the canvas (the image's ``distance_mm``).
    """

    LINE_COLOR = QColor(255, 210, 0)
    SELECTED_COLOR = QColor(0, 200, 255)

    def __init__(self, name: str = "measurements", *, z: float = 100.0) -> None:
        super().__init__(name, z=z)
        self._measurements: list[Measurement] = []
        self._distance_mm: DistanceFn | None = None
        self._selected: Measurement | None = None

    def set_distance_function(self, fn: DistanceFn | None) -> None:
        """Pixels -> mm mapping of the current image (returns None when uncalibrated)."""
        self._distance_mm = fn

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def measurements(self) -> list[Measurement]:
        return list(self._measurements)

    def compute(self, p0: tuple[float, float], p1: tuple[float, float]
                ) -> tuple[float, float | None, str]:
        length_px = math.hypot(p1[0] - p0[0], p1[1] - p0[1])
        length_mm = None
        if self._distance_mm is not None:
            try:
                length_mm = self._distance_mm(p0, p1)
            except Exception:  # a bad spacing must not lose the measurement
                log.exception("distance_mm failed; showing pixels")
                length_mm = None
        return length_px, length_mm, measurement_text(length_px, length_mm)

    def add(self, p0: tuple[float, float], p1: tuple[float, float]) -> Measurement:
        length_px, length_mm, text = self.compute(p0, p1)
        m = Measurement(p0, p1, length_px, length_mm, text)
        line = QGraphicsLineItem(QLineF(QPointF(*p0), QPointF(*p1)), self)
        line.setPen(self._pen(self.LINE_COLOR))
        label = QGraphicsSimpleTextItem(text, self)
        label.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        font = QFont()
        font.setPointSizeF(10.0)
        font.setBold(True)
        label.setFont(font)
        label.setBrush(QBrush(self.LINE_COLOR))
        label.setPen(QPen(QColor(0, 0, 0), 0.6))
        label.setPos(QPointF(*p1) + QPointF(4, 4))
        m.items = [line, label]
        self._measurements.append(m)
        return m

    def update_line(self, m: Measurement, p1: tuple[float, float]) -> None:
        """Move the end point while the user is dragging."""
        m.p1 = p1
        m.length_px, m.length_mm, m.text = self.compute(m.p0, p1)
        line, label = m.items
        assert isinstance(line, QGraphicsLineItem) and isinstance(label, QGraphicsSimpleTextItem)
        line.setLine(QLineF(QPointF(*m.p0), QPointF(*p1)))
        label.setText(m.text)
        label.setPos(QPointF(*p1) + QPointF(4, 4))

    def remove(self, m: Measurement) -> None:
        if m in self._measurements:
            self._measurements.remove(m)
        for item in m.items:
            scene = item.scene()
            if scene is not None:
                scene.removeItem(item)
            item.setParentItem(None)  # type: ignore[arg-type]  # the stubs lack Optional; Qt takes nullptr
        m.items = []
        if self._selected is m:
            self._selected = None

    def remove_last(self) -> Measurement | None:
        """Delete the selected measurement, or the most recent one."""
        target = self._selected or (self._measurements[-1] if self._measurements else None)
        if target is not None:
            self.remove(target)
        return target

    def clear(self) -> None:
        for m in list(self._measurements):
            self.remove(m)

    def select_near(self, x: float, y: float, tolerance: float) -> Measurement | None:
        """Select the measurement whose line passes within ``tolerance`` image pixels."""
        best, best_d = None, tolerance
        for m in self._measurements:
            d = _point_segment_distance((x, y), m.p0, m.p1)
            if d <= best_d:
                best, best_d = m, d
        self._set_selected(best)
        return best

    def _set_selected(self, m: Measurement | None) -> None:
        self._selected = m
        for other in self._measurements:
            color = self.SELECTED_COLOR if other is m else self.LINE_COLOR
            line = other.items[0]
            if isinstance(line, QGraphicsLineItem):
                line.setPen(self._pen(color))

    @staticmethod
    def _pen(color: QColor) -> QPen:
        pen = QPen(color, 2.0)
        pen.setCosmetic(True)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        return pen


def _point_segment_distance(p: tuple[float, float], a: tuple[float, float],
                            b: tuple[float, float]) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    seg2 = dx * dx + dy * dy
    if seg2 == 0:
        return math.hypot(p[0] - ax, p[1] - ay)
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / seg2))
    return math.hypot(p[0] - (ax + t * dx), p[1] - (ay + t * dy))

"""Reading marks on the canvas: the layer that draws them and the tool that draws new ones.

The marks themselves are Qt-free :class:`~cxrview.core.measure.Annotation` s and their numbers
come from :func:`~cxrview.core.measure.measure`, so the canvas, the measurements panel, the
PNG export and the report agree. Drawing is immediate-mode (``paint_overlay``), which the
offscreen export (``paint_layers``) reuses; labels are drawn in device pixels, upright and
at a constant size whatever the zoom, rotation or flip of the viewport.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF

from cxrview.core import XrayImage
from cxrview.core.measure import KINDS, Annotation, Measured, is_degenerate, measure
from cxrview.qt.viewer.layers import OverlayLayer

Point = tuple[float, float]
LINE_COLOR = QColor(255, 210, 0)
SELECTED_COLOR = QColor(0, 200, 255)
PREVIEW_COLOR = QColor(255, 240, 140)


def _pen(color: QColor, width: float = 2.0, dashed: bool = False) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


def _segment_distance(p: Point, a: Point, b: Point) -> float:
    dx, dy = b[0] - a[0], b[1] - a[1]
    seg2 = dx * dx + dy * dy
    if seg2 == 0:
        return math.hypot(p[0] - a[0], p[1] - a[1])
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / seg2))
    return math.hypot(p[0] - (a[0] + t * dx), p[1] - (a[1] + t * dy))


def hit_distance(a: Annotation, x: float, y: float) -> float:
    """Image-pixel distance from (x, y) to the mark's outline (0 inside a text anchor's box)."""
    pts, p = a.points, (x, y)
    if a.kind in ("distance", "arrow"):
        return _segment_distance(p, pts[0], pts[1])
    if a.kind == "angle":
        return min(_segment_distance(p, pts[0], pts[1]), _segment_distance(p, pts[1], pts[2]))
    if a.kind == "ctr":
        return min(_segment_distance(p, pts[0], (pts[1][0], pts[0][1])),
                   _segment_distance(p, pts[2], (pts[3][0], pts[2][1])))
    if a.kind in ("rect", "ellipse"):
        (x0, y0), (x1, y1) = pts
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        if a.kind == "ellipse":
            cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1e-6), max((y1 - y0) / 2, 1e-6)
            r = math.hypot((x - cx) / rx, (y - cy) / ry)
            return abs(r - 1.0) * min(rx, ry)
        return min(_segment_distance(p, corners[i], corners[(i + 1) % 4]) for i in range(4))
    return math.hypot(x - pts[0][0], y - pts[0][1])


class AnnotationLayer(OverlayLayer):
    """The marks of the image on one canvas (the store is the controller's business)."""

    def __init__(self, name: str = "measurements", *, z: float = 100.0) -> None:
        super().__init__(name, z=z)
        self._marks: list[Annotation] = []
        self._measured: dict[str, Measured] = {}
        self._image: XrayImage | None = None
        self.selected: str | None = None
        self.preview: Annotation | None = None

    def set_context(self, image: XrayImage | None) -> None:
        self._image = image
        self._remeasure()

    def on_image_changed(self, width: int, height: int) -> None:
        self._marks, self._measured, self.selected, self.preview = [], {}, None, None

    def set_annotations(self, marks: list[Annotation]) -> None:
        self._marks = list(marks)
        if self.selected not in {m.uid for m in self._marks}:
            self.selected = None
        self._remeasure()

    def annotations(self) -> list[Annotation]:
        return list(self._marks)

    def measured(self, mark: Annotation) -> Measured | None:
        if mark.uid not in self._measured and self._image is not None:
            self._measured[mark.uid] = measure(mark, self._image)
        return self._measured.get(mark.uid)

    def _remeasure(self) -> None:
        self._measured = {}
        if self._image is not None:
            for mark in self._marks:
                self._measured[mark.uid] = measure(mark, self._image)
        self.update()

    def set_preview(self, mark: Annotation | None) -> None:
        self.preview = mark
        self.update()

    def select(self, uid: str | None) -> None:
        self.selected = uid
        self.update()

    def selected_mark(self) -> Annotation | None:
        return next((m for m in self._marks if m.uid == self.selected), None)

    def mark_near(self, x: float, y: float, tolerance: float) -> Annotation | None:
        best, best_d = None, tolerance
        for mark in self._marks:
            d = hit_distance(mark, x, y)
            if d <= best_d:
                best, best_d = mark, d
        return best

    def clear(self) -> None:
        self.set_annotations([])

    # -- painting ---------------------------------------------------------------------------
    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        for mark in self._marks:
            color = SELECTED_COLOR if mark.uid == self.selected else LINE_COLOR
            measured = self.measured(mark)
            self._draw(painter, mark, color, measured.label if measured else "")
        if self.preview is not None:
            label = measure(self.preview, self._image).label if self._image is not None else ""
            self._draw(painter, self.preview, PREVIEW_COLOR, label, dashed=True)

    def _draw(self, painter: QPainter, mark: Annotation, color: QColor, label: str, *,
              dashed: bool = False) -> None:
        pts = [QPointF(x, y) for x, y in mark.points]
        painter.setPen(_pen(color, dashed=dashed))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        anchor = pts[-1]
        if mark.kind == "distance":
            painter.drawLine(pts[0], pts[1])
            self._ticks(painter, pts[0], pts[1])
        elif mark.kind == "arrow":
            painter.drawLine(pts[0], pts[1])
            self._arrow_head(painter, pts[0], pts[1], color)
            label = mark.text
            anchor = pts[0]
        elif mark.kind == "angle":
            painter.drawPolyline(QPolygonF(pts))
            anchor = pts[1]
        elif mark.kind == "ctr":
            heart = (pts[0], QPointF(pts[1].x(), pts[0].y()))
            thorax = (pts[2], QPointF(pts[3].x(), pts[2].y()))
            for (a, b), caliper in ((heart, QColor(255, 90, 90)), (thorax, color)):
                painter.setPen(_pen(caliper, dashed=dashed))
                painter.drawLine(a, b)
                self._ticks(painter, a, b)
            anchor = heart[0]
        elif mark.kind in ("rect", "ellipse"):
            rect = QRectF(pts[0], pts[1]).normalized()
            if mark.kind == "rect":
                painter.drawRect(rect)
            else:
                painter.drawEllipse(rect)
            anchor = rect.bottomLeft()
        elif mark.kind == "text":
            label = mark.text
            self._cross(painter, pts[0])
        if label:
            self._label(painter, anchor, label, color)

    @staticmethod
    def _device_pixel(painter: QPainter) -> float:
        """Image pixels per device pixel (so ticks and heads keep a constant screen size)."""
        t = painter.worldTransform()
        scale = math.hypot(t.m11(), t.m12()) or 1.0
        return 1.0 / scale

    def _ticks(self, painter: QPainter, a: QPointF, b: QPointF) -> None:
        line = QLineF(a, b)
        if line.length() == 0:
            return
        normal = line.normalVector().unitVector()
        size = 5.0 * self._device_pixel(painter)
        offset = QPointF(normal.dx() * size, normal.dy() * size)
        for p in (a, b):
            painter.drawLine(p - offset, p + offset)

    def _arrow_head(self, painter: QPainter, tail: QPointF, head: QPointF, color: QColor) -> None:
        line = QLineF(head, tail)
        if line.length() == 0:
            return
        size = 12.0 * self._device_pixel(painter)
        path = QPainterPath(head)
        for turn in (25.0, -25.0):
            side = QLineF(line)
            side.setLength(size)
            side.setAngle(line.angle() + turn)
            path.lineTo(side.p2())
            path.moveTo(head)
        painter.drawPath(path)

    def _cross(self, painter: QPainter, p: QPointF) -> None:
        size = 4.0 * self._device_pixel(painter)
        painter.drawLine(p - QPointF(size, 0), p + QPointF(size, 0))
        painter.drawLine(p - QPointF(0, size), p + QPointF(0, size))

    @staticmethod
    def _label(painter: QPainter, at: QPointF, text: str, color: QColor) -> None:
        """Text in device pixels at the mapped point: upright and readable under any view transform."""
        device = painter.worldTransform().map(at) + QPointF(6, 14)
        painter.save()
        painter.resetTransform()
        font = QFont()
        font.setPixelSize(13)
        font.setBold(True)
        painter.setFont(font)
        outline = QPainterPath()
        outline.addText(device, font, text)
        painter.setPen(QPen(QColor(0, 0, 0), 3.0))
        painter.drawPath(outline)
        painter.fillPath(outline, QBrush(color))
        painter.restore()


class AnnotationTool:
    """Turns left-button presses, moves and releases (in image pixels) into one new mark.

    Distance, rectangle, ellipse and arrow are one drag; an angle is a drag along its first
    arm to the vertex, then a click for the end of the second arm; a CTR is two drags, the
    heart's widest extent then the thorax's; a text note is a click, then ``ask_text``.
    """

    def __init__(self, kind: str, layer: AnnotationLayer, finished: Callable[[Annotation], None],
                 ask_text: Callable[[], str | None] | None = None, author: str = "") -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown tool {kind!r}")
        self.kind = kind
        self.layer = layer
        self.finished = finished
        self.ask_text = ask_text
        self.author = author
        self._points: list[Point] = []
        self._pressed = False

    @property
    def busy(self) -> bool:
        """A mark is half drawn (the second arm of an angle, the thorax of a CTR)."""
        return bool(self._points)

    def cancel(self) -> None:
        self._points, self._pressed = [], False
        self.layer.set_preview(None)

    def press(self, p: Point) -> None:
        self._pressed = True
        if self.kind == "text":
            self._points = [p]
            return
        if self.kind == "angle" and len(self._points) == 2:
            self._points.append(p)
        elif self.kind == "ctr" and len(self._points) == 2:
            self._points += [p, p]
        else:
            self._points = [p, p]
        self._show()

    def move(self, p: Point) -> None:
        """Mouse moved (button held or not): the end being placed follows it."""
        if not self._points or self.kind == "text":
            return
        if self.kind == "angle" and len(self._points) == 2 and not self._pressed:
            self._show(extra=p)
            return
        if self._pressed or (self.kind == "angle" and len(self._points) == 3):
            self._points[-1] = p
            self._show()

    def release(self, p: Point) -> None:
        if not self._pressed:
            return
        self._pressed = False
        if self.kind == "text":
            text = self.ask_text() if self.ask_text is not None else None
            self._finish(Annotation("text", (p,), text=(text or "").strip(), author=self.author))
            return
        if self._points:
            self._points[-1] = p
        if self.kind == "angle" and len(self._points) == 2:
            if math.dist(*self._points) < 1.0:
                self.cancel()
            else:
                self._show()
            return
        if self.kind == "ctr" and len(self._points) == 2:
            if abs(self._points[1][0] - self._points[0][0]) < 1.0:
                self.cancel()
            else:
                self._show()
            return
        self._finish(Annotation(self.kind, tuple(self._points), author=self.author))

    def _show(self, extra: Point | None = None) -> None:
        pts = list(self._points) + ([extra] if extra is not None else [])
        if self.kind == "angle" and len(pts) == 2:
            pts.append(pts[1])
        if self.kind == "ctr" and len(pts) == 2:
            pts += [pts[0], pts[0]]  # the thorax caliper still to come
        try:
            self.layer.set_preview(Annotation(self.kind, tuple(pts)))
        except ValueError:
            self.layer.set_preview(None)

    def _finish(self, mark: Annotation) -> None:
        self._points = []
        self.layer.set_preview(None)
        if not is_degenerate(mark):
            self.finished(mark)

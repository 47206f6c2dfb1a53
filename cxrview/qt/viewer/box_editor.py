"""Editable finding boxes: a layer that draws them and a left-button tool that edits them.

The layer holds plain data (id, finding, rect, source) set by the review
controller from the workspace; the tool turns mouse gestures into *one*
request per gesture (``drawn``, ``changed``), which the controller turns into
one undoable command. While a gesture is under way only the preview moves;
nothing touches the database until the button is released.

* Draw mode (B): drag to draw a box for the current finding.
* Otherwise: click a box to select it, drag inside to move it, drag a corner
  or an edge handle to resize it; a click elsewhere deselects and pans.
Dataset boxes are drawn dashed, human boxes solid. Every box stays inside the image: a move
stops at the edge (the box keeps its size), a resize or a drawn box is cut at it.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPen

from cxrview.qt.compat import emit
from cxrview.qt.overlays import finding_color
from cxrview.qt.viewer.layers import OverlayLayer

MIN_SIDE = 3.0  # image pixels: smaller drags are clicks, not boxes
HANDLE_PX = 7.0  # handle size on screen


@dataclass(frozen=True)
class EditableBox:
    id: int
    finding: str
    x: float
    y: float
    w: float
    h: float
    source: str  # "dataset" | "human" | "model" (a model's box a person accepted)

    def rect(self) -> QRectF:
        return QRectF(self.x, self.y, self.w, self.h)


class BoxEditLayer(OverlayLayer):
    def __init__(self, name: str = "review_boxes", *, z: float = 30.0) -> None:
        super().__init__(name, z=z)
        self._boxes: list[EditableBox] = []
        self.selected: int | None = None
        self.preview: tuple[int | None, QRectF] | None = None  # (box id or None for a new one, rect)
        self.labels: list[str] = []

    def set_boxes(self, boxes: list[EditableBox]) -> None:
        self._boxes = list(boxes)
        if self.selected is not None and all(b.id != self.selected for b in boxes):
            self.selected = None
        self.preview = None
        self.update()

    def boxes(self) -> list[EditableBox]:
        return list(self._boxes)

    def box(self, box_id: int | None) -> EditableBox | None:
        return next((b for b in self._boxes if b.id == box_id), None)

    def select(self, box_id: int | None) -> None:
        self.selected = box_id
        self.update()

    def set_preview(self, preview: tuple[int | None, QRectF] | None) -> None:
        self.preview = preview
        self.update()

    def on_image_changed(self, width: int, height: int) -> None:
        self.clear()

    def clear(self) -> None:
        self._boxes, self.selected, self.preview = [], None, None
        self.update()

    def box_at(self, p: QPointF) -> EditableBox | None:
        """The smallest box containing ``p`` (nested boxes stay reachable)."""
        inside = [b for b in self._boxes if b.rect().contains(p)]
        return min(inside, key=lambda b: b.w * b.h) if inside else None

    def paint_overlay(self, painter: QPainter, image_rect: QRectF) -> None:
        scale = abs(painter.worldTransform().m11()) or 1.0
        preview_id = self.preview[0] if self.preview else -1
        for box in self._boxes:
            rect = self.preview[1] if box.id == preview_id and self.preview else box.rect()
            self._draw(painter, box.finding, rect, box.source, box.id == self.selected, scale)
        if self.preview is not None and self.preview[0] is None:
            self._draw(painter, "", self.preview[1], "human", True, scale)

    def _draw(self, painter: QPainter, finding: str, rect: QRectF, source: str, selected: bool,
              scale: float) -> None:
        color = finding_color(finding, self.labels) if finding else QColor(255, 255, 255)
        pen = QPen(color, 3.0 if selected else 2.0)
        pen.setCosmetic(True)
        if source == "dataset":
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect)
        if finding:
            tag = finding + {"dataset": " (dataset)", "model": " (model, accepted)"}.get(source, "")
            font = painter.font()
            font.setPixelSize(max(1, round(12.0 / scale)))
            painter.setFont(font)
            painter.drawText(rect.bottomLeft() + QPointF(2.0 / scale, 13.0 / scale), tag)
        if selected:
            half = HANDLE_PX / 2.0 / scale
            painter.setBrush(QBrush(color))
            for pt in _handle_points(rect).values():
                painter.drawRect(QRectF(pt.x() - half, pt.y() - half, 2 * half, 2 * half))


def _handle_points(rect: QRectF) -> dict[str, QPointF]:
    cx, cy = rect.center().x(), rect.center().y()
    return {"tl": rect.topLeft(), "tr": rect.topRight(), "bl": rect.bottomLeft(), "br": rect.bottomRight(),
            "t": QPointF(cx, rect.top()), "b": QPointF(cx, rect.bottom()),
            "l": QPointF(rect.left(), cy), "r": QPointF(rect.right(), cy)}


class BoxTool(QObject):
    """Mouse gestures on a :class:`BoxEditLayer` → one request per gesture."""

    drawn = Signal(object)  # (x, y, w, h) of a new box
    changed = Signal(int, object)  # box id, new (x, y, w, h)
    selection_changed = Signal(object)  # box id or None
    editing = Signal(bool)  # a gesture started (True) / ended (False)

    def __init__(self, layer: BoxEditLayer, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.layer = layer
        self.draw_mode = False
        self.enabled = True
        self._start: QPointF | None = None
        self._grab: str | None = None  # "move" or a handle name
        self._origin: QRectF | None = None
        self._box_id: int | None = None

    # -- canvas protocol ------------------------------------------------------------------
    def press(self, p: QPointF, tolerance: float) -> bool:
        if not self.enabled or not self.layer.isVisible():
            return False
        if self.draw_mode:
            self._begin(p, None, "draw", QRectF(p, p))
            return True
        selected = self.layer.box(self.layer.selected)
        if selected is not None:
            for name, pt in _handle_points(selected.rect()).items():
                if abs(pt.x() - p.x()) <= tolerance and abs(pt.y() - p.y()) <= tolerance:
                    self._begin(p, selected.id, name, selected.rect())
                    return True
        hit = self.layer.box_at(p)
        if hit is None:
            if self.layer.selected is not None:
                self.layer.select(None)
                emit(self.selection_changed, None)
            return False
        if hit.id != self.layer.selected:
            self.layer.select(hit.id)
            emit(self.selection_changed, hit.id)
        self._begin(p, hit.id, "move", hit.rect())
        return True

    def move(self, p: QPointF) -> None:
        if self._start is None or self._origin is None:
            return
        self.layer.set_preview((self._box_id, self._geometry(p)))

    def release(self, p: QPointF) -> None:
        if self._start is None or self._origin is None:
            return
        rect = self._geometry(p)
        grab, box_id, origin = self._grab, self._box_id, self._origin
        self._start = self._origin = self._grab = self._box_id = None
        self.layer.set_preview(None)
        emit(self.editing, False)
        if rect.width() < MIN_SIDE or rect.height() < MIN_SIDE:
            return
        values = (round(rect.x(), 1), round(rect.y(), 1), round(rect.width(), 1), round(rect.height(), 1))
        if grab == "draw":
            emit(self.drawn, values)
        elif box_id is not None and rect != origin:
            emit(self.changed, box_id, values)

    # -- geometry ---------------------------------------------------------------------------
    def _begin(self, p: QPointF, box_id: int | None, grab: str, origin: QRectF) -> None:
        self._start, self._box_id, self._grab, self._origin = p, box_id, grab, origin
        emit(self.editing, True)

    def _geometry(self, p: QPointF) -> QRectF:
        return _inside(self._free_geometry(p), self.layer.image_rect(), keep_size=self._grab == "move")

    def _free_geometry(self, p: QPointF) -> QRectF:
        assert self._start is not None and self._origin is not None
        dx, dy = p.x() - self._start.x(), p.y() - self._start.y()
        r = QRectF(self._origin)
        grab = self._grab or ""
        if grab == "draw":
            return QRectF(self._start, p).normalized()
        if grab == "move":
            return r.translated(dx, dy)
        left, top, right, bottom = r.left(), r.top(), r.right(), r.bottom()
        if "l" in grab:
            left += dx
        if "r" in grab:
            right += dx
        if "t" in grab:
            top += dy
        if "b" in grab:
            bottom += dy
        return QRectF(QPointF(left, top), QPointF(right, bottom)).normalized()



def _inside(rect: QRectF, bounds: QRectF, *, keep_size: bool) -> QRectF:
    """``rect`` kept within ``bounds`` (no bounds yet: as it is). ``keep_size``: shifted back
    inside (a move), else cut at the edges (a resize or a new box)."""
    if bounds.isEmpty():
        return rect
    if not keep_size:
        return rect.intersected(bounds)
    w, h = min(rect.width(), bounds.width()), min(rect.height(), bounds.height())
    x = min(max(rect.x(), bounds.left()), bounds.right() - w)
    y = min(max(rect.y(), bounds.top()), bounds.bottom() - h)
    return QRectF(x, y, w, h)

"""The central image canvas: zoom, pan, window/level, invert, measurements, overlays.

Design notes (why it looks like this):

* The view owns *display state* (window, invert, zoom); the :class:`XrayImage` stays
  untouched. Every re-render goes through ``cxrview.core.render_display`` so the GUI
  shows exactly what the CLI exports.
* Zoom anchoring and panning are done with the scroll bars (hidden). The scene rect is
  the image inflated by one viewport on every side, recomputed on each zoom, so the
  point under the cursor can always be kept in place, even near the image border.
* Zoomed-out drawing uses a small area-averaged pyramid (see :class:`ImageItem`):
  bilinear down-sampling of a 4-megapixel radiograph by 3x aliases fine noise into
  visible texture, which is exactly what a reader must not be shown.
* Keyboard shortcuts live on the main window's actions (one list, which also feeds the
  Help dialog); the canvas itself only handles mouse gestures and the Space modifier.
* Rotation and flips are a transform of the image item (``ViewTransform``): the layers are
  its children and turn with it, while the stored pixels, the rendering and therefore the
  models' input never change. Corner text, orientation markers and the LOSSY badge are
  drawn over the viewport (``drawForeground``), upright whatever the transform.
* Reading marks (distance, angle, CTR, ROIs, arrow, text) are edited through a *marks
  handler*: the default one edits the layer in place; the annotation controller installs
  one that stores each edit (undoable) in the per-user store.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRect, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from cxrview.core import Window, XrayImage, render_display
from cxrview.core.measure import Annotation, Measured
from cxrview.core.overlay_text import ViewTransform, corner_text, lossy_badge, orientation_markers
from cxrview.qt.compat import emit
from cxrview.qt.viewer.annotations import AnnotationLayer, AnnotationTool
from cxrview.qt.viewer.hud import HudContent, paint_hud
from cxrview.qt.viewer.image_item import ImageItem
from cxrview.qt.viewer.layers import OverlayLayer

log = logging.getLogger(__name__)

MIN_ZOOM = 0.01
MAX_ZOOM = 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch (120 eighths of a degree)
WL_DRAG_PIXELS_FOR_FULL_RANGE = 400.0  # right-drag distance that sweeps the whole range
WL_RENDER_INTERVAL_MS = 15  # coalesce window/level re-renders during a drag (~60 fps)
PATHS_MIME = "application/x-cxrview-paths"  # dragged from the study browser: one path per line


def paths_from_mime(mime: QMimeData) -> list[str]:
    if not mime.hasFormat(PATHS_MIME):
        return []
    return [line for line in bytes(mime.data(PATHS_MIME).data()).decode("utf-8").splitlines() if line]


class LocalMarks:
    """The marks handler of a canvas without a store: edits change the layer only."""

    def __init__(self, layer: AnnotationLayer) -> None:
        self.layer = layer

    def add(self, mark: Annotation) -> None:
        self.layer.set_annotations([*self.layer.annotations(), mark])

    def remove(self, marks: list[Annotation]) -> None:
        uids = {m.uid for m in marks}
        self.layer.set_annotations([m for m in self.layer.annotations() if m.uid not in uids])

    def replace(self, before: Annotation, after: Annotation) -> None:
        self.layer.set_annotations([after if m.uid == before.uid else m for m in self.layer.annotations()])


@dataclass(frozen=True)
class CursorInfo:
    """What the status bar shows for the pixel under the mouse."""

    x: int
    y: int
    raw: float


class ImageCanvas(QGraphicsView):
    """Graphics view showing one radiograph with interactive display controls."""

    cursor_moved = Signal(object)  # CursorInfo, or None when outside the image
    window_changed = Signal(object)  # effective Window
    zoom_changed = Signal(float)  # zoom factor (1.0 = one image pixel per screen pixel)
    inverted_changed = Signal(bool)
    measure_mode_changed = Signal(bool)
    measurement_added = Signal(object)  # Annotation (any reading mark, drawn or added)
    reading_tool_changed = Signal(object)  # the tool's kind ("distance", "angle", …) or None
    view_transform_changed = Signal(object)  # ViewTransform
    hud_toggled = Signal(bool)  # corner text shown
    image_painted = Signal()  # first paint after set_image (time-to-first-paint)

    #: Mouse gestures, listed in the Help dialog next to the keyboard actions.
    MOUSE_BINDINGS: tuple[tuple[str, str], ...] = (
        ("Wheel", "Zoom in/out, keeping the point under the cursor fixed"),
        ("Middle-drag, Space+left-drag, left-drag", "Pan"),
        ("Right-drag", "Window/level: horizontal = width (contrast), vertical = center"),
        ("Left-drag with a reading tool", "Draw a distance, ROI or arrow; angle and CTR take two steps"),
        ("Left-click on a measurement", "Select it (Delete removes it)"),
    )

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(QColor(0, 0, 0))
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.FullViewportUpdate)
        self.setMouseTracking(True)
        self.viewport().setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setAcceptDrops(False)  # let drops reach the main window

        self._image_item = ImageItem()
        self.scene().addItem(self._image_item)
        self._img: XrayImage | None = None
        self._pixels: np.ndarray | None = None
        self._window: Window | None = None  # None = the file's default display
        self._preset: str | None = None
        self._inverted = False
        self._fit_mode = True
        self._paint_pending = False

        self._layers: dict[str, OverlayLayer] = {}
        self._marks = AnnotationLayer()
        self.add_layer(self._marks)
        self._marks_handler: Any = LocalMarks(self._marks)
        self._reading_tool: AnnotationTool | None = None
        self.ask_text: Any = None  # () -> str | None: the note of a text mark (the controller's dialog)
        self.author = ""
        self._view_transform = ViewTransform()
        self._hud_visible = True
        self.hud_templates: dict[str, str] | None = None

        self._space_down = False
        self._tool: Any = None  # a left-button tool (box editing); see set_tool
        self._tool_active = False
        self._pan_last: QPoint | None = None
        self._wl_start: tuple[QPoint, Window] | None = None
        self._zoom_anchor: tuple[QPointF, QPointF, tuple[int, int]] | None = None
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(WL_RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render_now)

    # -- image ------------------------------------------------------------------------
    def set_image(self, img: XrayImage, pixels: np.ndarray | None = None) -> None:
        """Show ``img``; ``pixels`` is its default rendering if already computed off-thread."""
        self._render_timer.stop()
        self._img = img
        self._window = None
        self._preset = img.default_preset
        self._inverted = False
        if pixels is None:
            pixels = render_display(img)
        self._show_pixels(pixels)
        for layer in self._layers.values():
            layer.set_image_size(img.width, img.height)
        self._marks.set_context(img)
        self._cancel_reading_tool()
        self._set_item_transform(ViewTransform())
        self._paint_pending = True
        self.fit()
        self.viewport().update()
        emit(self.window_changed, self.window())
        emit(self.inverted_changed, False)

    def displayed_pixels(self) -> np.ndarray | None:
        """The 8-bit image as currently displayed (window/level and inversion applied)."""
        return None if self._pixels is None else self._pixels.copy()

    def clear_image(self) -> None:
        self._img = None
        self._pixels = None
        self._image_item.clear()
        self._marks.set_context(None)
        for layer in self._layers.values():
            layer.set_image_size(0, 0)
        self.viewport().update()

    def image(self) -> XrayImage | None:
        return self._img

    def display_pixels(self) -> np.ndarray | None:
        """The 8-bit array currently on screen (before zoom)."""
        return self._pixels

    def _show_pixels(self, pixels: np.ndarray) -> None:
        self._pixels = pixels
        self._image_item.set_pixels(pixels)

    def _render_now(self) -> None:
        self._render_timer.stop()
        if self._img is None:
            return
        try:
            pixels = render_display(self._img, self._window, invert=self._inverted)
        except Exception:  # keep the old picture rather than crash
            log.exception("render_display failed")
            return
        self._show_pixels(pixels)

    # -- window / level / invert -------------------------------------------------------
    # Shadows QWidget.window() (the top-level widget), which nothing here calls on the canvas; the
    # name is the viewer's word for level/width throughout the GUI and its tests.
    def window(self) -> Window | None:  # type: ignore[override]
        """The effective window (the file's default preset until the user changes it)."""
        if self._window is not None:
            return self._window
        if self._img is None:
            return None
        return self._img.presets.get(self._img.default_preset)

    def set_window(self, window: Window | None, *, render: bool = True) -> None:
        """Apply a window (None = back to the file's default display)."""
        self._window = window
        self._preset = None if window is not None else (
            self._img.default_preset if self._img else None)
        if render:
            self._render_now()
        else:
            if not self._render_timer.isActive():
                self._render_timer.start()
        emit(self.window_changed, self.window())

    def preset_names(self) -> list[str]:
        return list(self._img.presets) if self._img else []

    def current_preset(self) -> str | None:
        return self._preset

    def apply_preset(self, name: str) -> bool:
        """Switch to the named preset; False if the image has no such preset."""
        if self._img is None or name not in self._img.presets:
            return False
        if name == self._img.default_preset:
            self.set_window(None)  # exact file rendering (may use a VOI LUT)
        else:
            self.set_window(self._img.presets[name])
        self._preset = name
        return True

    def is_inverted(self) -> bool:
        return self._inverted

    def set_inverted(self, inverted: bool) -> None:
        if inverted == self._inverted:
            return
        self._inverted = inverted
        self._render_now()
        emit(self.inverted_changed, inverted)

    def toggle_invert(self) -> None:
        self.set_inverted(not self._inverted)

    def _modality_span(self) -> float:
        if self._img is None:
            return 1.0
        lo, hi = self._img.modality_range()
        return max(hi - lo, 1.0)

    # -- zoom / pan ---------------------------------------------------------------------
    def zoom_factor(self) -> float:
        """Image pixels to *device* pixels; 1.0 means 1:1 on any DPI."""
        return self.transform().m11() * self.devicePixelRatioF()

    def _view_scale(self) -> float:
        return self.transform().m11()

    def zoom_by(self, factor: float, anchor: QPointF | QPoint | None = None) -> None:
        """Multiply the zoom, keeping the image point under ``anchor`` (viewport px) fixed."""
        if self._img is None or factor <= 0:
            return
        current = self._view_scale()
        dpr = self.devicePixelRatioF()
        target = min(max(current * factor, MIN_ZOOM / dpr), MAX_ZOOM / dpr)
        self._fit_mode = False
        self._set_scale(target, anchor)

    def set_zoom(self, zoom: float, anchor: QPointF | QPoint | None = None) -> None:
        """Set an absolute zoom factor (device pixels per image pixel)."""
        if self._img is None:
            return
        self._fit_mode = False
        dpr = self.devicePixelRatioF()
        self._set_scale(min(max(zoom, MIN_ZOOM), MAX_ZOOM) / dpr, anchor)

    def _set_scale(self, scale: float, anchor: QPointF | QPoint | None) -> None:
        vp = self.viewport().rect()
        anchor_pt = QPointF(anchor) if anchor is not None else QPointF(vp.center())
        last = self._zoom_anchor
        if last is not None and last[0] == anchor_pt and self._scroll_pos() == last[2]:
            # Same cursor position, no pan since: reuse the exact scene point so integer
            # scroll positions do not make the image creep over a series of wheel notches.
            scene_pt = last[1]
        else:
            scene_pt = self.mapToScene(anchor_pt.toPoint())
            # mapToScene works on integer viewport pixels; add the sub-pixel remainder.
            frac = anchor_pt - QPointF(anchor_pt.toPoint())
            scene_pt += frac / (self._view_scale() or 1.0)
        self.resetTransform()
        self.scale(scale, scale)
        self._update_scene_rect()
        self._scroll_scene_point_to(scene_pt, anchor_pt)
        self._zoom_anchor = (anchor_pt, scene_pt, self._scroll_pos())
        emit(self.zoom_changed, self.zoom_factor())

    def _scroll_pos(self) -> tuple[int, int]:
        return self.horizontalScrollBar().value(), self.verticalScrollBar().value()

    def _scroll_scene_point_to(self, scene_pt: QPointF, viewport_pt: QPointF) -> None:
        mapped = self.transform().map(scene_pt)  # view coords before scrolling
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(round(mapped.x() - viewport_pt.x()))
        v.setValue(round(mapped.y() - viewport_pt.y()))

    def _update_scene_rect(self) -> None:
        if self._img is None:
            return
        s = self._view_scale() or 1.0
        mx = self.viewport().width() / s
        my = self.viewport().height() / s
        w, h = self._shown_size()
        self.setSceneRect(QRectF(0, 0, w, h).adjusted(-mx, -my, mx, my))

    def _shown_size(self) -> tuple[int, int]:
        """The picture's size on screen axes (a quarter turn swaps width and height)."""
        if self._img is None:
            return 0, 0
        if self._view_transform.rotation in (90, 270):
            return self._img.height, self._img.width
        return self._img.width, self._img.height

    def fit(self) -> None:
        """Fit the whole image in the viewport (and keep fitting on resize)."""
        if self._img is None:
            return
        vp = self.viewport().rect()
        margin = 8
        width, height = self._shown_size()
        sx = max(vp.width() - 2 * margin, 1) / width
        sy = max(vp.height() - 2 * margin, 1) / height
        scale = max(min(sx, sy), MIN_ZOOM / self.devicePixelRatioF())
        self.resetTransform()
        self.scale(scale, scale)
        self._update_scene_rect()
        self._scroll_scene_point_to(QPointF(width / 2, height / 2), QPointF(vp.width() / 2, vp.height() / 2))
        self._fit_mode = True
        emit(self.zoom_changed, self.zoom_factor())

    def fit_zoom(self) -> float:
        """The zoom :meth:`fit` would give (device pixels per image pixel)."""
        if self._img is None:
            return 1.0
        vp = self.viewport().rect()
        width, height = self._shown_size()
        scale = min(max(vp.width() - 16, 1) / width, max(vp.height() - 16, 1) / height)
        return max(scale, MIN_ZOOM / self.devicePixelRatioF()) * self.devicePixelRatioF()

    def center_on(self, image_pt: tuple[float, float]) -> None:
        """Pan so that this image point is at the viewport's centre (zoom unchanged)."""
        if self._img is None:
            return
        self._fit_mode = False
        scene = self._image_item.mapToScene(QPointF(*image_pt))
        self._scroll_scene_point_to(scene, QPointF(self.viewport().rect().center()))

    def one_to_one(self) -> None:
        """One image pixel per physical screen pixel, centred on the viewport centre."""
        self.set_zoom(1.0)

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) viewport pixels."""
        self._fit_mode = False
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - round(dx))
        v.setValue(v.value() - round(dy))

    def reset_view(self) -> None:
        """Back to the file's display: default window, no inversion, fit, no selection."""
        self.reset_window()
        self.set_measure_mode(False)
        self.fit()

    def reset_window(self) -> None:
        """The file's default window, no inversion (zoom, pan, rotation and marks stay)."""
        self.set_window(None)
        self.set_inverted(False)

    def escape(self) -> None:
        """Esc: drop a half-drawn mark if there is one, else fit the image (zoom and pan only:
        the reader's window, inversion, rotation and marks are kept)."""
        if self._reading_tool is not None and self._reading_tool.busy:
            self._reading_tool.cancel()
            return
        self.fit()

    # -- rotation and flips (the view only: stored pixels and the AI input never change) --
    def view_transform(self) -> ViewTransform:
        return self._view_transform

    def set_view_transform(self, transform: ViewTransform) -> None:
        if transform == self._view_transform:
            return
        self._set_item_transform(transform)
        if self._img is not None:
            self.fit() if self._fit_mode else self._update_scene_rect()
        self.viewport().update()
        emit(self.view_transform_changed, transform)

    def rotate_view(self, degrees: int = 90) -> None:
        self.set_view_transform(self._view_transform.rotated(degrees))

    def flip(self, *, horizontal: bool) -> None:
        self.set_view_transform(self._view_transform.flipped(horizontal=horizontal))

    def item_transform(self) -> QTransform:
        """Image pixels → the picture as turned and flipped on screen (before zoom and pan)."""
        return self._image_item.transform()

    def _set_item_transform(self, transform: ViewTransform) -> None:
        """The image item's transform: flips in image axes, then clockwise quarter turns,
        each followed by a shift that keeps the picture's top-left at the scene origin."""
        self._view_transform = transform
        width = float(self._img.width) if self._img is not None else 0.0
        height = float(self._img.height) if self._img is not None else 0.0
        t = QTransform()
        if transform.flip_h:
            t = t * QTransform(-1, 0, 0, 1, width, 0)
        if transform.flip_v:
            t = t * QTransform(1, 0, 0, -1, 0, height)
        for _ in range(transform.rotation // 90):  # (x, y) -> (h - y, x) on a w x h picture
            t = t * QTransform(0, 1, -1, 0, height, 0)
            width, height = height, width
        self._image_item.setTransform(t)

    # -- what is written over the film ---------------------------------------------------
    def is_hud_visible(self) -> bool:
        return self._hud_visible

    def set_hud_visible(self, visible: bool) -> None:
        if visible != self._hud_visible:
            self._hud_visible = visible
            self.viewport().update()
            emit(self.hud_toggled, visible)

    def toggle_hud(self) -> None:
        self.set_hud_visible(not self._hud_visible)

    def hud_content(self, *, anonymised: bool = False, corners: bool | None = None) -> HudContent:
        """What is drawn over the film now: corner text (unless hidden), the orientation markers
        of the current rotation / flips and the LOSSY badge (always: it is a warning)."""
        if self._img is None:
            return HudContent()
        window = self.window()
        view = {"preset": self._preset or "", "zoom": f"{self.zoom_factor():.2f}×",
                "window_width": f"{window.width:.6g}" if window else "",
                "window_center": f"{window.center:.6g}" if window else "",
                "rotation": self._view_transform.describe()}
        show = self._hud_visible if corners is None else corners
        text = corner_text(self._img, view, self.hud_templates, anonymised=anonymised) if show else {}
        return HudContent(corners=text, markers=orientation_markers(self._img, self._view_transform),
                          badge=lossy_badge(self._img))

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:  # Qt override
        if self._img is None:
            return
        try:
            painter.save()
            painter.resetTransform()
            paint_hud(painter, QRectF(self.viewport().rect()), self.hud_content())
            painter.restore()
        except Exception:  # text over the film must never break the view
            log.exception("HUD paint failed")

    # -- layers -------------------------------------------------------------------------
    def add_layer(self, layer: OverlayLayer) -> OverlayLayer:
        """Attach an overlay; a layer with the same name is replaced."""
        if layer.name in self._layers:
            self.remove_layer(layer.name)
        layer.setParentItem(self._image_item)
        if self._img is not None:
            layer.set_image_size(self._img.width, self._img.height)
        self._layers[layer.name] = layer
        return layer

    def remove_layer(self, name: str) -> OverlayLayer | None:
        layer = self._layers.pop(name, None)
        if layer is not None:
            self.scene().removeItem(layer)
            layer.setParentItem(None)  # type: ignore[arg-type]  # the stubs lack Optional; Qt takes nullptr
        return layer

    def layer(self, name: str) -> OverlayLayer | None:
        return self._layers.get(name)

    def layers(self) -> list[OverlayLayer]:
        """Layers in drawing order (lowest z first)."""
        return sorted(self._layers.values(), key=lambda layer: layer.zValue())

    # -- measurements ---------------------------------------------------------------------
    def set_tool(self, tool: Any) -> None:
        """A left-button tool with ``press(image_pt, tolerance) -> bool``, ``move(image_pt)`` and
        ``release(image_pt)``; ``press`` returning False lets the canvas pan as usual."""
        self._tool = tool
        self._tool_active = False

    def marks_layer(self) -> AnnotationLayer:
        return self._marks

    def set_marks_handler(self, handler: Any | None) -> None:
        """Who applies edits of the reading marks: ``add(mark)``, ``remove(marks)`` and
        ``replace(before, after)``; None = edit the layer only (nothing is kept)."""
        self._marks_handler = handler if handler is not None else LocalMarks(self._marks)

    def reading_tool(self) -> str | None:
        return self._reading_tool.kind if self._reading_tool is not None else None

    def set_reading_tool(self, kind: str | None) -> None:
        """Draw marks of ``kind`` with the left button (None: back to panning and selecting)."""
        if kind == self.reading_tool():
            return
        self._cancel_reading_tool()
        was_measuring = self._reading_tool is not None
        self._reading_tool = None if kind is None else AnnotationTool(
            kind, self._marks, self._on_mark_drawn, author=self.author,
            ask_text=lambda: self.ask_text() if self.ask_text else None)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if kind else Qt.CursorShape.ArrowCursor)
        emit(self.reading_tool_changed, kind)
        if was_measuring != (kind is not None):
            emit(self.measure_mode_changed, kind is not None)

    def _cancel_reading_tool(self) -> None:
        if self._reading_tool is not None:
            self._reading_tool.cancel()

    def is_measure_mode(self) -> bool:
        return self._reading_tool is not None

    def set_measure_mode(self, on: bool) -> None:
        """Measure mode is the distance tool (M); off leaves any reading tool."""
        if on != self.is_measure_mode():
            self.set_reading_tool("distance" if on else None)

    def _on_mark_drawn(self, mark: Annotation) -> None:
        self._marks_handler.add(mark)
        emit(self.measurement_added, mark)

    def add_mark(self, mark: Annotation) -> Annotation:
        """Add a reading mark as if drawn (through the marks handler)."""
        self._on_mark_drawn(mark)
        return mark

    def add_measurement(self, p0: tuple[float, float], p1: tuple[float, float]) -> Annotation:
        """Add a distance measurement between two image points (x, y)."""
        return self.add_mark(Annotation("distance", (p0, p1), author=self.author))

    def measurements(self) -> list[Annotation]:
        """The reading marks of the shown image, in the order they were made."""
        return self._marks.annotations()

    def measured(self, mark: Annotation) -> Measured | None:
        return self._marks.measured(mark)

    def delete_measurement(self) -> None:
        """Remove the selected mark (or the last one drawn)."""
        marks = self._marks.annotations()
        chosen = self._marks.selected_mark() or (marks[-1] if marks else None)
        if chosen is not None:
            self._marks_handler.remove([chosen])

    def clear_measurements(self) -> None:
        marks = self._marks.annotations()
        if marks:
            self._marks_handler.remove(marks)

    # -- coordinates --------------------------------------------------------------------
    def image_point(self, viewport_pos: QPointF | QPoint) -> QPointF:
        """Viewport position -> image pixel coordinates (continuous)."""
        pos = QPointF(viewport_pos)
        scene = self.mapToScene(pos.toPoint()) + (pos - QPointF(pos.toPoint())) / (
            self._view_scale() or 1.0)
        return self._image_item.mapFromScene(scene)

    def viewport_point(self, image_pt: QPointF | tuple[float, float]) -> QPointF:
        """Image pixel coordinates -> viewport position (continuous)."""
        pt = QPointF(*image_pt) if isinstance(image_pt, tuple) else QPointF(image_pt)
        scene = self._image_item.mapToScene(pt)
        view = self.transform().map(scene)
        return view - QPointF(self.horizontalScrollBar().value(),
                              self.verticalScrollBar().value())

    def _cursor_info(self, viewport_pos: QPointF | QPoint) -> CursorInfo | None:
        if self._img is None:
            return None
        p = self.image_point(viewport_pos)
        x, y = math.floor(p.x()), math.floor(p.y())
        if not (0 <= x < self._img.width and 0 <= y < self._img.height):
            return None
        try:
            raw = self._img.modality_value_at(x, y)
        except Exception:  # status bar info is best effort
            raw = float("nan")
        return CursorInfo(x, y, raw)

    # -- events -------------------------------------------------------------------------
    def paintEvent(self, event: QPaintEvent) -> None:  # Qt override
        super().paintEvent(event)
        if self._paint_pending and self._img is not None:
            self._paint_pending = False
            emit(self.image_painted)

    def resizeEvent(self, event: QResizeEvent) -> None:  # Qt override
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()
        else:
            self._update_scene_rect()

    def wheelEvent(self, event: QWheelEvent) -> None:  # Qt override
        delta = event.angleDelta().y() or event.pixelDelta().y()
        if delta == 0 or self._img is None:
            event.ignore()
            return
        self.zoom_by(WHEEL_STEP ** (delta / 120.0), event.position())
        event.accept()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.viewport().setCursor(Qt.CursorShape.OpenHandCursor)
            event.accept()
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:  # Qt override
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            self.viewport().setCursor(Qt.CursorShape.CrossCursor if self._reading_tool is not None
                                      else Qt.CursorShape.ArrowCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    def mousePressEvent(self, event: QMouseEvent) -> None:  # Qt override
        pos = event.position().toPoint()
        button = event.button()
        if self._img is None:
            super().mousePressEvent(event)
            return
        if button == Qt.MouseButton.RightButton:
            window = self.window()
            if window is not None:
                self._wl_start = (pos, window)
        elif button == Qt.MouseButton.MiddleButton or (
                button == Qt.MouseButton.LeftButton and self._space_down):
            self._pan_last = pos
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton and self._reading_tool is not None:
            self._reading_tool.press(self._clamped(event.position()))
        elif button == Qt.MouseButton.LeftButton and self._tool is not None and self._tool.press(
                self.image_point(event.position()), 6.0 / (self._view_scale() or 1.0)):
            self._tool_active = True
        elif button == Qt.MouseButton.LeftButton:
            tol = 6.0 / (self._view_scale() or 1.0)
            p = self.image_point(event.position())
            near = self._marks.mark_near(p.x(), p.y(), tol)
            self._marks.select(near.uid if near is not None else None)
            if near is None:
                self._pan_last = pos  # plain left-drag pans too
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # Qt override
        pos = event.position().toPoint()
        if self._wl_start is not None:
            start, w0 = self._wl_start
            span = self._modality_span()
            per_px = span / WL_DRAG_PIXELS_FOR_FULL_RANGE
            dx, dy = pos.x() - start.x(), pos.y() - start.y()
            width = max(w0.width + dx * per_px, span / 1000.0)
            self.set_window(Window(w0.center + dy * per_px, width), render=False)
        elif self._pan_last is not None:
            delta = pos - self._pan_last
            self._pan_last = pos
            self.pan_by(delta.x(), delta.y())
        elif self._reading_tool is not None:
            self._reading_tool.move(self._clamped(event.position()))
        elif self._tool_active:
            p = self.image_point(event.position())
            self._tool.move(QPointF(self._clamp_x(p.x()), self._clamp_y(p.y())))
        emit(self.cursor_moved, self._cursor_info(event.position()))
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # Qt override
        button = event.button()
        if button == Qt.MouseButton.RightButton and self._wl_start is not None:
            self._wl_start = None
            if self._render_timer.isActive():
                self._render_now()
        elif self._pan_last is not None and button in (Qt.MouseButton.MiddleButton,
                                                        Qt.MouseButton.LeftButton):
            self._pan_last = None
            self.viewport().setCursor(Qt.CursorShape.CrossCursor if self._reading_tool is not None
                                      else Qt.CursorShape.ArrowCursor)
        elif button == Qt.MouseButton.LeftButton and self._tool_active:
            self._tool_active = False
            p = self.image_point(event.position())
            self._tool.release(QPointF(self._clamp_x(p.x()), self._clamp_y(p.y())))
        elif button == Qt.MouseButton.LeftButton and self._reading_tool is not None:
            self._reading_tool.release(self._clamped(event.position()))  # a mere click keeps nothing
        event.accept()

    def leaveEvent(self, event: QEvent) -> None:  # Qt override
        emit(self.cursor_moved, None)
        super().leaveEvent(event)

    def _clamped(self, viewport_pos: QPointF | QPoint) -> tuple[float, float]:
        p = self.image_point(viewport_pos)
        return self._clamp_x(p.x()), self._clamp_y(p.y())

    def _clamp_x(self, x: float) -> float:
        return min(max(x, 0.0), float(self._img.width)) if self._img else x

    def _clamp_y(self, y: float) -> float:
        return min(max(y, 0.0), float(self._img.height)) if self._img else y

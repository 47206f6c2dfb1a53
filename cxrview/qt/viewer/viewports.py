"""Several viewports: 1×1, 1×2 and 2×2 layouts around the window's main canvas, with linked
zoom, pan and window.

The main canvas stays the one the review, the AI and the reading marks work on (the
*current* film); the other viewports show films beside it (a prior, a lateral, whatever is
dragged in from the study browser). Linking maps zoom as a multiple of each viewport's own
fit, pan as the same point of the image (in fractions of its size) at the centre, and the
window in modality units, so films of different sizes still line up.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPointF, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QGridLayout, QWidget

from cxrview.qt.compat import emit
from cxrview.qt.viewer.canvas import PATHS_MIME, ImageCanvas, paths_from_mime

LAYOUTS: dict[str, tuple[int, int]] = {"1x1": (1, 1), "1x2": (1, 2), "2x2": (2, 2)}


class SideCanvas(ImageCanvas):
    """A viewport beside the main one: accepts a path dragged from the study browser."""

    path_dropped = Signal(object, str)  # (this canvas, path)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.path: str | None = None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if event.mimeData().hasFormat(PATHS_MIME):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragEnterEvent) -> None:  # type: ignore[override]  # Qt override
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        paths = paths_from_mime(event.mimeData())
        if paths:
            event.acceptProposedAction()
            emit(self.path_dropped, self, paths[0])


class ViewportGrid(QWidget):
    """The main canvas and up to three side canvases in a grid."""

    layout_changed = Signal(str)

    def __init__(self, main: ImageCanvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.main = main
        self.sides = [SideCanvas(self) for _ in range(3)]
        for i, side in enumerate(self.sides):
            side.setObjectName(f"viewport_{i + 1}")
            side.hide()
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setSpacing(2)
        self._layout = "1x1"
        self.main_first = False  # 1×2: the current film on the right (the prior on the left)
        self._linked = False
        self._syncing = False
        self._place()
        for canvas in self.canvases_all():
            canvas.zoom_changed.connect(self._partial_sync(canvas))
            canvas.horizontalScrollBar().valueChanged.connect(self._partial_sync(canvas))
            canvas.verticalScrollBar().valueChanged.connect(self._partial_sync(canvas))
            canvas.window_changed.connect(self._window_sync(canvas))
            canvas.inverted_changed.connect(self._window_sync(canvas))

    def canvases_all(self) -> list[ImageCanvas]:
        return [self.main, *self.sides]

    def visible_canvases(self) -> list[ImageCanvas]:
        """The viewports of the current layout, in reading order (left to right, top to bottom)."""
        rows, cols = LAYOUTS[self._layout]
        count = rows * cols
        order: list[ImageCanvas] = [self.main, *self.sides][:count]
        if count == 2 and not self.main_first:
            order = [self.sides[0], self.main]
        return order

    def layout_name(self) -> str:
        return self._layout

    def set_layout(self, name: str) -> None:
        if name not in LAYOUTS:
            raise ValueError(f"unknown layout {name!r}")
        self._layout = name
        self._place()
        emit(self.layout_changed, name)

    def _place(self) -> None:
        for canvas in self.canvases_all():
            self._grid.removeWidget(canvas)
        shown = self.visible_canvases()
        rows, cols = LAYOUTS[self._layout]
        for i in range(2):  # equal shares: a prior as large as the current film
            self._grid.setColumnStretch(i, 1 if i < cols else 0)
            self._grid.setRowStretch(i, 1 if i < rows else 0)
        for i, canvas in enumerate(shown):
            self._grid.addWidget(canvas, i // cols, i % cols)
            canvas.show()
        for side in self.sides:
            if side not in shown:
                side.hide()

    # -- linking --------------------------------------------------------------------------------
    def is_linked(self) -> bool:
        return self._linked

    def set_linked(self, linked: bool) -> None:
        self._linked = linked
        if linked:
            self.sync_from(self.main)

    def _partial_sync(self, source: ImageCanvas) -> Callable[..., None]:
        return lambda *_args: self._sync_view(source)

    def _window_sync(self, source: ImageCanvas) -> Callable[..., None]:
        return lambda *_args: self._sync_window(source)

    def _targets(self, source: ImageCanvas) -> list[ImageCanvas]:
        if not self._linked or self._syncing or source.image() is None:
            return []
        return [c for c in self.visible_canvases() if c is not source and c.image() is not None]

    def _sync_view(self, source: ImageCanvas) -> None:
        targets = self._targets(source)
        if not targets:
            return
        src = source.image()
        assert src is not None
        centre = source.image_point(QPointF(source.viewport().rect().center()))
        fx, fy = centre.x() / src.width, centre.y() / src.height
        relative = source.zoom_factor() / (source.fit_zoom() or 1.0)
        self._syncing = True
        try:
            for target in targets:
                img = target.image()
                assert img is not None
                target.set_zoom(relative * target.fit_zoom())
                target.center_on((fx * img.width, fy * img.height))
        finally:
            self._syncing = False

    def _sync_window(self, source: ImageCanvas) -> None:
        targets = self._targets(source)
        if not targets:
            return
        self._syncing = True
        try:
            for target in targets:
                target.set_window(source.window() if source.current_preset() is None else None)
                if source.current_preset() is not None:
                    target.apply_preset(source.current_preset() or "")
                target.set_inverted(source.is_inverted())
        finally:
            self._syncing = False

    def sync_from(self, source: ImageCanvas) -> None:
        self._sync_window(source)
        self._sync_view(source)

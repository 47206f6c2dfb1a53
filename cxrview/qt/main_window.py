"""The main window: it builds the parts, gives each the collaborators it uses, and wires them.

The parts (AI findings, review, batch scoring, fine-tuning) never see the window: each gets
the canvas, the task runner, the settings, a notifier or the file list as it needs, offers
its commands as action specs and tells the rest through signals, which are connected here
and only here (ADR 0010). The window itself decides *what* to load when, and keeps the UI
consistent with it. Loading is asynchronous and latest-wins: paging quickly through a
folder never shows a stale image.
"""

from __future__ import annotations

import getpass
import logging
import time
import traceback
from functools import partial
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QCursor, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QVBoxLayout,
    QWidget,
)

from cxrview.core import ImageLoadError, Window, find_images
from cxrview.qt.actions import build_menu_bar
from cxrview.qt.ai.controller import AIController
from cxrview.qt.batch import BatchScorer, BatchSummary
from cxrview.qt.compat import emit
from cxrview.qt.dialogs import ShortcutsDialog, apply_saved_shortcuts
from cxrview.qt.docks.file_list import FileListDock
from cxrview.qt.docks.metadata import MetadataDock
from cxrview.qt.export_view import ExportController
from cxrview.qt.finetune.controller import FinetuneController
from cxrview.qt.identity import AboutDialog, app_icon
from cxrview.qt.loading import ImageCache, LoadedImage, load_task
from cxrview.qt.marks import MarksController
from cxrview.qt.notify import ErrorBanner, Notifier
from cxrview.qt.review import ReviewController
from cxrview.qt.settings import AppSettings
from cxrview.qt.status import ViewerStatusBar
from cxrview.qt.study import StudyController, is_dicomdir
from cxrview.qt.theme import apply_theme, current_theme
from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.viewer.viewports import ViewportGrid
from cxrview.qt.viewports import ViewportController
from cxrview.qt.window_actions import ViewerCommands, WindowActions
from cxrview.qt.workers import TaskCancelled, TaskRunner

log = logging.getLogger(__name__)

DEFAULT_FILES_WIDTH = 260  # px, first start only (afterwards the saved layout wins)
DEFAULT_METADATA_WIDTH = 400


class MainWindow(QMainWindow):
    """cxrview's viewer window."""

    image_decoded = Signal(str)  # path arrived from the worker (before display)
    image_shown = Signal(str)  # path now on the canvas
    load_failed = Signal(str, str)  # path, message
    first_paint = Signal(str, float)  # path, ms from "open requested" to first paint

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("main_window")
        self.setWindowTitle("cxrview")
        self.setWindowIcon(app_icon())
        self.settings = settings or AppSettings()
        self.runner = TaskRunner(self)
        self.cache = ImageCache(capacity=4)
        self.last_load_ms: float | None = None
        self._current_path: str | None = None
        self._shown_path: str | None = None
        self._t_request: float | None = None
        self._paint_pending: tuple[str, float] | None = None  # (path, t_request) awaiting paint

        self.canvas = ImageCanvas(self)
        self.canvas.setObjectName("canvas")
        self.banner = ErrorBanner(self)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        self.viewport_grid = ViewportGrid(self.canvas, central)
        layout.addWidget(self.viewport_grid, 1)
        self.setCentralWidget(central)
        self.file_dock = FileListDock(self)
        self.metadata_dock = MetadataDock(self)
        self.status = ViewerStatusBar(self)
        self.setStatusBar(self.status)
        self.notifier = Notifier(self.banner, self.status)

        # The parts, each with only the collaborators it uses.
        self.studies = StudyController(self.runner, self.notifier, parent=self)
        self.marks = MarksController(self.canvas, self.notifier, author=getpass.getuser() or "reader",
                                     dialog_parent=self, parent=self)
        self.viewports = ViewportController(self.viewport_grid, self.runner, self.studies, self.notifier,
                                            current_path=self.shown_path, parent=self)
        self.exports = ExportController(self.canvas, self.viewport_grid.visible_canvases, self.notifier,
                                        shown=lambda: self.ai.shown, dialog_parent=self, parent=self)
        self._waiting_scan: str | None = None  # a folder / CD whose images come from its scan
        self.ai = AIController(self.canvas, self.runner, self.settings, parent=self)
        self.findings_dock = self.ai.dock
        self.review = ReviewController(self.canvas, self.file_dock, self.settings, self.notifier,
                                       model_output=self.ai, classifier=self.ai.classifier,
                                       dialog_parent=self, parent=self)
        self.batch = BatchScorer(self.runner, self.file_dock, self.settings, self.notifier,
                                 models=self.ai.model_choice, workspace=self.review.workspace_path,
                                 parent=self)
        self.finetune = FinetuneController(self.runner, self.notifier, workspace=lambda: self.review.ws,
                                           dialog_parent=self, parent=self)
        self.actions_ = WindowActions(self, ViewerCommands(
            open_file=self.open_file_dialog, open_folder=self.open_folder_dialog, quit=self.close,
            next_image=self.next_image, previous_image=self.previous_image, fit=self.canvas.fit,
            one_to_one=self.canvas.one_to_one, zoom_in=self.zoom_in, zoom_out=self.zoom_out,
            toggle_invert=self.toggle_invert, reset_window=self.canvas.reset_window,
            reset_zoom=self.canvas.escape,
            rotate=self.canvas.rotate_view, flip=lambda horizontal: self.canvas.flip(horizontal=horizontal),
            toggle_hud=self.canvas.toggle_hud,
            toggle_measure=self.toggle_measure, delete_selection=self.delete_selection,
            clear_measurements=self.canvas.clear_measurements, show_shortcuts=self.show_shortcuts,
            show_about=self.show_about, apply_preset=self.apply_preset_index, set_theme=self.set_theme,
            open_recent=self.open_paths, clear_recent=self.clear_recent))
        self._place_docks()
        build_menu_bar(self.menuBar(), self, self._menu_entries())
        self.status.addPermanentWidget(self.batch.progress)
        self.status.addPermanentWidget(self.finetune.bar)
        apply_saved_shortcuts(self.all_actions(), self.settings.qs)
        self._wire()
        self.setAcceptDrops(True)
        self._restore_settings()
        self.canvas.setFocus()

    # -- assembly -------------------------------------------------------------------------
    def _docks(self) -> list[QDockWidget]:
        return [self.file_dock, self.metadata_dock, self.findings_dock, self.review.dock,
                self.review.worklist, self.studies.dock, self.marks.dock]

    def _place_docks(self) -> None:
        # Right: Findings (tabbed with Metadata) above Review; left: Files above Worklist.
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.file_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.metadata_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.findings_dock)
        self.tabifyDockWidget(self.metadata_dock, self.findings_dock)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.review.dock)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.review.worklist)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.studies.dock)
        self.tabifyDockWidget(self.file_dock, self.studies.dock)
        self.file_dock.raise_()
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.marks.dock)
        self.tabifyDockWidget(self.review.dock, self.marks.dock)
        self.review.dock.raise_()

    def _menu_entries(self) -> list[tuple[str, QAction]]:
        """Every part's (menu section, action), plus View › Panels for every dock."""
        panels = [("view.panels", dock.toggleViewAction()) for dock in self._docks()]
        return [*self.actions_.entries(), *panels, *self.ai.actions.entries(), *self.review.actions.entries(),
                *self.marks.actions.entries(), *self.viewports.actions.entries(),
                *self.exports.actions.entries(),
                *self.batch.actions.entries(), *self.finetune.actions.entries()]

    def _wire(self) -> None:
        """The one place where the parts' signals meet."""
        self.canvas.cursor_moved.connect(self.status.set_cursor)
        self.canvas.window_changed.connect(self._on_window_changed)
        self.canvas.zoom_changed.connect(self.status.set_zoom)
        self.canvas.inverted_changed.connect(self.actions_["invert"].setChecked)
        self.canvas.reading_tool_changed.connect(self._on_reading_tool)
        self.canvas.hud_toggled.connect(self.actions_["toggle_hud"].setChecked)
        self.actions_["toggle_hud"].setChecked(self.canvas.is_hud_visible())
        self.canvas.image_painted.connect(self._on_first_paint)
        self.file_dock.current_changed.connect(self._on_row_changed)
        self.image_shown.connect(self.review.image_shown)
        self.image_shown.connect(self.marks.image_shown)
        self.image_shown.connect(self._on_image_shown_ai)
        self.ai.prediction_ready.connect(self.review.record_prediction)
        self.ai.bundles_changed.connect(self._on_bundles_changed)
        self.review.worklist_ready.connect(self.show_worklist)
        self.review.show_requested.connect(self.show_path)
        self.review.advance_requested.connect(self.next_image)
        self.review.finding_selected.connect(self.ai.select_finding)
        self.review.dirty_changed.connect(self._update_title)
        self.batch.finished.connect(self._on_batch_finished)
        self.finetune.model_activated.connect(self.ai.use_classifier)
        self.studies.scanned.connect(self._on_scanned)
        self.review.related = self.studies.films_in_time_order
        self.studies.dock.image_activated.connect(self.show_path)
        self.studies.dock.series_activated.connect(self.show_list)

    def _on_bundles_changed(self, classifier: str, _segmenter: str | None) -> None:
        self.review.set_classifier(classifier)
        self.batch.model_changed()

    def _on_batch_finished(self, summary: BatchSummary | None) -> None:
        if summary is not None and summary.recorded:
            self.review.scores_changed()

    def all_actions(self) -> list[QAction]:
        """Every action of every part that the menus offer, in menu order of the parts (for the
        Keyboard Shortcuts dialog and the saved remappings)."""
        seen: dict[int, QAction] = {}
        for _section, action in self._menu_entries():
            seen.setdefault(id(action), action)
        return list(seen.values())

    # -- settings -----------------------------------------------------------------------
    def _restore_settings(self) -> None:
        self.resize(1400, 900)
        geometry, state = self.settings.geometry(), self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        else:
            # First start: room for file names on the left and for the metadata *values*
            # on the right (Tag + Name + VR alone fill a dock at its minimum width).
            self.resizeDocks([self.file_dock, self.metadata_dock],
                             [DEFAULT_FILES_WIDTH, DEFAULT_METADATA_WIDTH],
                             Qt.Orientation.Horizontal)
            self.resizeDocks([self.findings_dock, self.review.dock], [330, 520], Qt.Orientation.Vertical)
            self.resizeDocks([self.file_dock, self.review.worklist], [520, 330], Qt.Orientation.Vertical)
            self.findings_dock.raise_()
        for dock in self._docks():
            dock.setVisible(self.settings.dock_visible(dock.objectName()))
        theme = current_theme(QApplication.instance())  # type: ignore[arg-type]
        self.actions_.themes[theme].setChecked(True)
        self.actions_.set_recent(self.settings.recent_files())

    def _save_settings(self) -> None:
        self.settings.save_layout(self.saveGeometry(), self.saveState())
        for dock in self._docks():
            # a dock behind another tab is not "visible" but still open: ask its menu action
            self.settings.set_dock_visible(dock.objectName(), dock.toggleViewAction().isChecked())
        self.settings.sync()

    def set_theme(self, theme: str) -> None:
        applied = apply_theme(QApplication.instance(), theme)  # type: ignore[arg-type]
        self.settings.set_theme(applied)
        self.actions_.themes[applied].setChecked(True)

    def clear_recent(self) -> None:
        self.settings.clear_recent()
        self.actions_.set_recent([])

    # -- opening ------------------------------------------------------------------------
    def open_file_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open images", self.settings.last_folder(),
            "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff);;All files (*)")
        if paths:
            self.open_paths(paths)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open folder",
                                                  self.settings.last_folder())
        if folder:
            self.open_paths([folder])

    def open_paths(self, paths: list[str]) -> int:
        """Open files and/or folders (a folder contributes its images), or a workspace database
        (``*.sqlite``: its worklist). Returns the number of images listed."""
        workspaces = [p for p in paths if str(p).endswith(".sqlite")]
        if workspaces:
            if self.review.open_workspace(workspaces[-1]):
                self.actions_.set_recent(self.settings.add_recent(str(workspaces[-1])))
                self.review.apply_query(self.review.worklist.query())
            paths = [p for p in paths if p not in workspaces]
            if not paths:
                return self.file_dock.count()
        files: list[str] = []
        scan_root: str | None = None
        for raw in paths:
            p = Path(raw)
            try:
                if p.is_dir() or is_dicomdir(p):
                    # The study browser indexes the tree (sub-folders, DICOMDIR); the file list
                    # gets the folder's own images at once, else the scan's when it ends.
                    scan_root = str(p)
                    if p.is_dir():  # a CD's DICOMDIR is an index, not an image
                        files.extend(str(f) for f in find_images(p) if not is_dicomdir(f))
                    self.settings.set_last_folder(str(p if p.is_dir() else p.parent))
                else:
                    files.append(str(p))
                    self.settings.set_last_folder(str(p.parent))
            except Exception as exc:  # an unreadable folder is a user error
                self.show_error(f"{raw}: cannot list folder ({exc})")
                continue
            self.actions_.set_recent(self.settings.add_recent(str(p)))
        self._waiting_scan = None
        if scan_root is not None:
            self.studies.scan(scan_root)
        if not files:
            if scan_root is not None:
                self._waiting_scan = scan_root
                self.status.showMessage(f"Searching {scan_root} (sub-folders, DICOMDIR)…")
            elif paths:
                self.show_error(f"No images found in {', '.join(paths)}")
            return 0
        self.cache.clear()
        self.banner.hide()
        self.batch.cancel()  # its scores belong to the previous list
        self.review.attach_files(files)
        self.file_dock.set_files(files)
        self.file_dock.set_current_row(0)
        return len(files)

    def _on_scanned(self, root: str, paths: list[str]) -> None:
        """A scan ended: the folder / CD that had no images of its own lists the tree's."""
        if root != self._waiting_scan:
            return
        self._waiting_scan = None
        if not paths:
            self.show_error(f"No images found in {root} (sub-folders and DICOMDIR searched)")
            return
        self.show_list(paths)

    def show_list(self, paths: list[str]) -> None:
        """Page through these images (a study or series picked in the browser)."""
        if not paths:
            return
        self.cache.clear()
        self.banner.hide()
        self.batch.cancel()
        self.review.attach_files(paths)
        self.file_dock.set_files(paths)
        self.file_dock.set_current_row(0)

    def resume_last_session(self) -> bool:
        """Reopen the workspace last reviewed, with its worklist sort, at the image left on."""
        last = self.review.last_session()
        if last is None:
            return False
        workspace, image = last
        if not self.review.open_workspace(workspace):
            return False
        self.review.apply_query(self.review.worklist.query())
        paths = self.file_dock.paths()
        target = next((p for p in paths if image is not None and Path(p).name == image), None)
        if target is not None:
            self.show_path(target)
        return True

    def show_worklist(self, paths: list[str]) -> None:
        """Put a workspace worklist into the file list (paging follows it); keep the shown image."""
        self.batch.cancel()
        shown = self._shown_path
        self.file_dock.set_files(paths)
        if not paths:
            self.show_error("No images match this worklist filter.")
            return
        if shown in paths:
            self.file_dock.set_current_row(paths.index(shown), notify=False)
            self._update_title()
        else:
            self.file_dock.set_current_row(0)

    def show_path(self, path: str) -> None:
        """Show ``path``: its row when it is in the file list, else on its own."""
        paths = self.file_dock.paths()
        if path in paths:
            self.file_dock.set_current_row(paths.index(path))
        else:
            self._request(path)

    def delete_selection(self) -> None:
        if not self.review.delete_selected_box():
            self.canvas.delete_measurement()

    def current_path(self) -> str | None:
        return self._current_path

    def shown_path(self) -> str | None:
        return self._shown_path

    def next_image(self) -> None:
        self.file_dock.step(+1)

    def previous_image(self) -> None:
        self.file_dock.step(-1)

    # -- loading ------------------------------------------------------------------------
    def _on_row_changed(self, _row: int, path: str) -> None:
        self._request(path)

    def _request(self, path: str) -> None:
        """Show ``path``: from the cache, from an in-flight prefetch, or by loading it."""
        self._current_path = path
        self._t_request = time.perf_counter()
        self._update_title()
        cached = self.cache.get(path)
        if cached is not None:
            self.runner.cancel("load")
            self._display(path, cached)
            return
        prefetch = self.runner.current("prefetch")
        if prefetch is not None and prefetch.name == path:
            self.runner.cancel("load")  # the prefetch will deliver it (_on_prefetched)
        else:
            handle = self.runner.submit(load_task, path, slot="load", name=path)
            handle.returned.connect(partial(self._on_loaded, path))
            handle.errored.connect(partial(self._on_load_error, True, path))
        self.status.set_loading(True)

    def _prefetch_next(self) -> None:
        paths = self.file_dock.paths()
        row = self.file_dock.current_row()
        if not 0 <= row + 1 < len(paths):
            return
        path = paths[row + 1]
        if path in self.cache or self.file_dock.error_for(path) is not None:
            return
        handle = self.runner.submit(load_task, path, slot="prefetch", name=path,
                                    priority=-1)
        handle.returned.connect(partial(self._on_prefetched, path))
        handle.errored.connect(partial(self._on_load_error, False, path))

    def _on_loaded(self, path: str, result: LoadedImage) -> None:
        self.cache.put(path, result)
        emit(self.image_decoded, path)
        if path == self._current_path:
            self._display(path, result)

    def _on_prefetched(self, path: str, result: LoadedImage) -> None:
        self.cache.put(path, result)
        emit(self.image_decoded, path)
        if path == self._current_path and self._shown_path != path:
            self._display(path, result)

    def _on_load_error(self, foreground: bool, path: str, exc: BaseException) -> None:
        if isinstance(exc, TaskCancelled):
            return
        message = str(exc) if isinstance(exc, ImageLoadError) else (
            f"{path}: unexpected error: {type(exc).__name__}: {exc}")
        if not isinstance(exc, ImageLoadError):
            log.error("loading %s failed", path, exc_info=exc)
        self.file_dock.mark_failed(path, message.removeprefix(f"{path}: "))
        emit(self.load_failed, path, message)
        if path == self._current_path and (foreground or self._shown_path != path):
            self.status.set_loading(False)
            self._shown_path = None
            self._t_request = None
            self.canvas.clear_image()
            self.ai.image_cleared()
            self.review.image_cleared()
            self.metadata_dock.clear()
            self.status.set_image(None)
            self.show_error(message)
            self._prefetch_next()

    def _display(self, path: str, loaded: LoadedImage) -> None:
        img = loaded.image
        self.canvas.set_image(img, loaded.pixels)
        self._shown_path = path
        if self._t_request is not None:
            self._paint_pending = (path, self._t_request)
            self._t_request = None
        self.status.set_loading(False)
        self.status.set_image(img)
        self.metadata_dock.set_metadata(img.metadata)
        self.actions_.set_presets(list(img.presets), self.canvas.current_preset())
        self.file_dock.mark_ok(path)
        self.banner.hide()
        if img.notices:
            self.status.showMessage("; ".join(img.notices), 15000)
        else:
            self.status.clearMessage()
        emit(self.image_shown, path)
        self._prefetch_next()

    def _on_image_shown_ai(self, _path: str) -> None:
        self.ai.request()

    def _on_first_paint(self) -> None:
        pending, self._paint_pending = self._paint_pending, None
        if pending is None or pending[0] != self._shown_path:
            return
        path, t_request = pending
        self.last_load_ms = (time.perf_counter() - t_request) * 1000.0
        log.debug("time to first paint %.1f ms: %s", self.last_load_ms, path)
        emit(self.first_paint, path, self.last_load_ms)

    def _update_title(self) -> None:
        if self._current_path is None:
            self.setWindowTitle("cxrview")
            return
        row, count = self.file_dock.current_row(), self.file_dock.count()
        # "•" only while an edit is in progress: every finished edit is already in the database.
        pending = " •" if self.review.is_dirty() else ""
        # Qt appends the application display name ("cxrview") itself.
        self.setWindowTitle(f"{Path(self._current_path).name} ({row + 1}/{count}){pending}")

    # -- view commands ------------------------------------------------------------------
    def _cursor_anchor(self) -> QPoint | None:
        pos = self.canvas.viewport().mapFromGlobal(QCursor.pos())
        return pos if self.canvas.viewport().rect().contains(pos) else None

    def zoom_in(self) -> None:
        self.canvas.zoom_by(1.25, self._cursor_anchor())

    def zoom_out(self) -> None:
        self.canvas.zoom_by(1 / 1.25, self._cursor_anchor())

    def toggle_invert(self) -> None:
        self.canvas.toggle_invert()

    def toggle_measure(self) -> None:
        self.canvas.set_reading_tool(None if self.canvas.reading_tool() == "distance" else "distance")

    def _on_reading_tool(self, kind: str | None) -> None:
        self.actions_["measure"].setChecked(kind == "distance")

    def apply_preset_index(self, index: int) -> None:
        names = self.canvas.preset_names()
        if 0 <= index < len(names):
            self.canvas.apply_preset(names[index])
            self.actions_.set_presets(names, names[index])
            self.status.showMessage(f"Preset: {names[index]}", 3000)

    def _on_window_changed(self, window: Window | None) -> None:
        self.status.set_window(window)
        if self.canvas.image() is not None:
            self.actions_.set_presets(self.canvas.preset_names(), self.canvas.current_preset())

    # -- messages -----------------------------------------------------------------------
    def show_error(self, message: str) -> None:
        """Non-blocking error: red banner over the image plus the status bar."""
        self.notifier.error(message)

    def report_exception(self, exc_type: type[BaseException], exc: BaseException,
                         tb: TracebackType | None) -> None:
        """Called by the app's excepthook: a bug must not kill a reading session."""
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("unexpected error:\n%s", text)
        self.show_error(f"Unexpected error: {exc_type.__name__}: {exc} "
                        "(details in the log; the viewer keeps running)")

    def show_shortcuts(self) -> ShortcutsDialog:
        dialog = ShortcutsDialog(self.all_actions(), ImageCanvas.MOUSE_BINDINGS, self, self.settings.qs)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()  # non-modal: keep reading while looking up a key
        return dialog

    def show_about(self) -> AboutDialog:
        """Help › About for the models this window predicts with (not merely the shipped ones)."""
        from cxrview.about import gather

        bundles = {"classifier": Path(self.ai.classifier)}
        if self.ai.segmenter:
            bundles["segmenter"] = Path(self.ai.segmenter)
        dialog = AboutDialog(gather(bundles), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # -- drag and drop / close -----------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # Qt override
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:  # Qt override
        paths = [url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # Qt override
        if not self.finetune.confirm_close():
            event.ignore()
            return
        self._save_settings()
        self.runner.shutdown()
        self.review.close()
        self.marks.close()
        super().closeEvent(event)

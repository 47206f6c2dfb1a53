"""Reading marks that stay: the controller between the canvas, the per-user store and the
measurements panel.

Every edit drawn on the canvas (distance, angle, CTR by hand, rectangle / ellipse ROI, arrow,
text) becomes a command on a :class:`~cxrview.core.history.MarkHistory` over the
:class:`~cxrview.core.annotation_store.AnnotationStore` (the user data directory, never next
to the images), keyed by the image's content hash: marks survive paging away and back, a
restart, and a renamed copy. The panel lists the shown image's marks with what they measure.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QInputDialog,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cxrview.core.annotation_store import AnnotationStore, AnnotationStoreError
from cxrview.core.history import AddMarks, MarkCommand, MarkHistory, RemoveMarks, ReplaceMark
from cxrview.core.measure import TITLES, Annotation
from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.compat import emit
from cxrview.qt.notify import Notifier
from cxrview.qt.viewer.canvas import ImageCanvas

UID_ROLE = Qt.ItemDataRole.UserRole
#: The reading tools after Measure Distance (M), with their keys.
TOOLS: tuple[tuple[str, str], ...] = (("angle", "G"), ("ctr", "Shift+C"), ("rect", "Shift+R"),
                                      ("ellipse", "E"), ("arrow", "W"), ("text", "T"))


class MeasurementsDock(QDockWidget):
    """The shown image's marks: kind and value; Delete, Undo and Redo under the list."""

    selected = Signal(object)  # uid or None
    delete_requested = Signal()
    undo_requested = Signal()
    redo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Measurements", parent)
        self.setObjectName("dock_measurements")
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(0, 0, 0, 0)
        self.list = QTreeWidget(body)
        self.list.setObjectName("measurement_list")
        self.list.setHeaderLabels(["Mark", "Value"])
        self.list.setRootIsDecorated(False)
        self.list.currentItemChanged.connect(self._on_current)
        layout.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        self.delete = QPushButton("Delete", body)
        self.undo = QPushButton("Undo", body)
        self.redo = QPushButton("Redo", body)
        for button, signal in ((self.delete, self.delete_requested), (self.undo, self.undo_requested),
                               (self.redo, self.redo_requested)):
            button.clicked.connect(partial(emit, signal))
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.setWidget(body)
        self._filling = False

    def show_marks(self, rows: list[tuple[str, str, str]], selected: str | None) -> None:
        """(uid, title, value) rows in drawing order."""
        self._filling = True
        try:
            self.list.clear()
            for uid, title, value in rows:
                item = QTreeWidgetItem([title, value])
                item.setData(0, UID_ROLE, uid)
                item.setToolTip(1, value)
                self.list.addTopLevelItem(item)
                if uid == selected:
                    self.list.setCurrentItem(item)
        finally:
            self._filling = False
        self.setWindowTitle(f"Measurements ({len(rows)})")

    def rows(self) -> list[tuple[str, str]]:
        items = (self.list.topLevelItem(i) for i in range(self.list.topLevelItemCount()))
        return [(item.text(0), item.text(1)) for item in items if item is not None]

    def _on_current(self, item: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        if not self._filling:
            emit(self.selected, item.data(0, UID_ROLE) if item is not None else None)


class MarksController(QObject):
    """The canvas' marks handler: each edit is stored (undoable), the panel follows."""

    changed = Signal()  # the shown image's marks changed (edit, undo, redo, another image)

    def __init__(self, canvas: ImageCanvas, notifier: Notifier, *, author: str = "",
                 store: Callable[[], AnnotationStore] = AnnotationStore, dialog_parent: QWidget | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.notifier = notifier
        self.dialog_parent = dialog_parent
        self._make_store = store
        self._history: MarkHistory | None = None
        self._hash: str | None = None
        self._path = ""
        canvas.author = author
        canvas.set_marks_handler(self)
        canvas.ask_text = self.ask_text
        canvas.reading_tool_changed.connect(self._on_tool_changed)
        self.dock = MeasurementsDock()
        self.dock.selected.connect(self._on_selected)
        self.dock.delete_requested.connect(canvas.delete_measurement)
        self.dock.undo_requested.connect(self.undo)
        self.dock.redo_requested.connect(self.redo)
        specs = [ActionSpec(f"tool_{kind}", TITLES[kind], "tools.marks", partial(self.toggle_tool, kind),
                            keys=(key,), checkable=True) for kind, key in TOOLS]
        specs += [ActionSpec("undo_mark", "Undo Mark", "tools.marks", self.undo, keys=("Ctrl+Alt+Z",)),
                  ActionSpec("redo_mark", "Redo Mark", "tools.marks", self.redo, keys=("Ctrl+Alt+Y",))]
        self.actions = ActionSet(self, specs)
        self._refresh_buttons()

    # -- the store, opened on the first mark or the first image with marks ---------------------
    @property
    def history(self) -> MarkHistory | None:
        if self._history is None:
            try:
                self._history = MarkHistory(self._make_store())
            except AnnotationStoreError as exc:
                self.notifier.error(str(exc))
                return None
            self._history.add_listener(self._on_command)
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.store.close()
            self._history = None

    # -- the shown image ---------------------------------------------------------------------------
    def image_shown(self, path: str) -> None:
        image = self.canvas.image()
        self._hash = image.content_hash if image is not None else None
        self._path = path
        self._reload()

    def _reload(self) -> None:
        marks: list[Annotation] = []
        history = self.history if self._hash is not None else None
        if history is not None and self._hash is not None:
            marks = history.store.annotations(self._hash)
        self.canvas.marks_layer().set_annotations(marks)
        self._show_panel()
        emit(self.changed)

    def _show_panel(self) -> None:
        layer = self.canvas.marks_layer()
        rows = []
        for mark in layer.annotations():
            measured = layer.measured(mark)
            value = measured.label if measured is not None else ""
            if mark.kind in ("arrow", "text"):
                value = mark.text
            rows.append((mark.uid, TITLES[mark.kind], value))
        self.dock.show_marks(rows, layer.selected)
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        history = self._history
        self.dock.undo.setEnabled(bool(history and history.can_undo()))
        self.dock.redo.setEnabled(bool(history and history.can_redo()))
        self.dock.delete.setEnabled(bool(self.canvas.marks_layer().annotations()))

    # -- the canvas' marks handler -------------------------------------------------------------------
    def _push(self, command: MarkCommand) -> None:
        history = self.history
        if history is None:
            return
        try:
            history.push(command)
        except AnnotationStoreError as exc:
            self.notifier.error(str(exc))

    def add(self, mark: Annotation) -> None:
        if self._hash is None:
            return
        self._push(AddMarks(self._hash, [mark], image_path=self._path))

    def remove(self, marks: list[Annotation]) -> None:
        if self._hash is not None and marks:
            self._push(RemoveMarks(self._hash, list(marks), image_path=self._path))

    def replace(self, before: Annotation, after: Annotation) -> None:
        if self._hash is not None:
            self._push(ReplaceMark(self._hash, before, after))

    def undo(self) -> None:
        self._step(undo=True)

    def redo(self) -> None:
        self._step(undo=False)

    def _step(self, *, undo: bool) -> None:
        history = self._history
        if history is None:
            return
        try:
            command = history.undo() if undo else history.redo()
        except AnnotationStoreError as exc:
            self.notifier.error(str(exc))
            return
        if command is not None:
            self.notifier.status(f"{'Undid' if undo else 'Redid'} {command.text}")

    def _on_command(self, command: MarkCommand) -> None:
        if command.content_hash == self._hash:
            self._reload()
        else:
            self._refresh_buttons()  # an edit of another image (undone from here): listed there
            self.notifier.status(f"The {command.text} belongs to another image")

    # -- tools ----------------------------------------------------------------------------------------
    def toggle_tool(self, kind: str) -> None:
        self.canvas.set_reading_tool(None if self.canvas.reading_tool() == kind else kind)

    def _on_tool_changed(self, kind: object) -> None:
        for tool, _key in TOOLS:
            self.actions[f"tool_{tool}"].setChecked(tool == kind)

    def _on_selected(self, uid: object) -> None:
        self.canvas.marks_layer().select(uid if isinstance(uid, str) else None)

    def ask_text(self) -> str | None:
        text, ok = QInputDialog.getText(self.dialog_parent, "Text note", "Note:")
        return text if ok else None

"""Review mode: labels, boxes and review state of the shown image, edited through the undo stack.

Opening images opens (or creates) their workspace: the default database next
to the images when that folder is writable, else in the user data directory
(``cxrview.core.workspace.default_workspace_path``); File › Open Workspace…
opens any workspace, e.g. one made by ``cxrview import-nih``. Every edit is a
command pushed on one :class:`UndoStack` and committed at once, so nothing is
ever left unsaved; the title shows "•" only while a box drag is under way.

Keyboard-first: number keys toggle findings 1–10 (Alt+1…4 for 11–14), U
marks the selected finding uncertain, Return confirms (and advances when
auto-advance is on), Shift+F flags, N goes to the next unreviewed image,
[ and ] step through the same patient's follow-ups, B draws a box for the
selected finding, A accepts the model's box for it, Del deletes the selected box.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu

from cxrview.core.commands import AddBox, Command, DeleteBox, EditBox, SetLabel, SetReview, UndoStack
from cxrview.core.findings import (
    ABSENT,
    CONFIRMED,
    CORRECTED,
    FLAGGED,
    NIH_BOX_FRAME,
    NIH_FINDINGS,
    PRESENT,
    UNCERTAIN,
)
from cxrview.core.worklist import WorklistQuery, count, query_images
from cxrview.core.workspace import ImageRecord, Workspace, WorkspaceError, default_workspace_path
from cxrview.qt.compat import emit
from cxrview.qt.docks.review_dock import ReviewDock, finding_key, next_value
from cxrview.qt.docks.worklist_dock import WorklistDock
from cxrview.qt.settings import as_bool
from cxrview.qt.viewer.box_editor import BoxEditLayer, BoxTool, EditableBox

if TYPE_CHECKING:
    from cxrview.qt.main_window import MainWindow

log = logging.getLogger(__name__)
WORKLIST_LIMIT = 20000  # rows put into the file list at once (the query itself is not limited)


def _workspace_for(paths: list[str]) -> Path:
    """The default workspace of the folder holding these images."""
    return default_workspace_path(os.path.commonpath([str(Path(p).resolve().parent) for p in paths]))


class ReviewController(QObject):
    changed = Signal()  # the shown image's review data changed (edit, undo, redo, new image)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.author = getpass.getuser() or "reviewer"
        self.ws: Workspace | None = None
        self.stack: UndoStack | None = None
        self.record: ImageRecord | None = None
        self._thresholds: dict[str, float] = {}
        self.dock = ReviewDock(window)
        self.worklist = WorklistDock(window)
        qs = window.settings.qs
        self.dock.auto_advance.setChecked(as_bool(qs.value("review/auto_advance"), True))
        self.dock.auto_advance.toggled.connect(lambda on: qs.setValue("review/auto_advance", on))
        self.boxes = BoxEditLayer()
        self.boxes.labels = list(NIH_FINDINGS)
        window.canvas.add_layer(self.boxes)
        self.tool = BoxTool(self.boxes, self)
        window.canvas.set_tool(self.tool)
        self.tool.drawn.connect(self._on_box_drawn)
        self.tool.changed.connect(self._on_box_changed)
        self.tool.editing.connect(self._on_editing)
        self.tool.selection_changed.connect(self._on_box_selected)
        self.dock.cycle_requested.connect(self._cycle)
        self.dock.finding_selected.connect(self._on_finding_selected)
        self.dock.note_edited.connect(self._on_note)
        self.dock.confirm_requested.connect(self.confirm)
        self.dock.flag_requested.connect(self.flag)
        self.dock.next_unreviewed_requested.connect(self.next_unreviewed)
        self.dock.open_image_requested.connect(self.open_image_id)
        self.worklist.query_changed.connect(self.apply_query)
        window.ai.prediction_ready.connect(self._on_prediction)
        self._build_actions()

    # -- actions and menus -------------------------------------------------------------------
    def _action(self, object_name: str, text: str, keys: tuple[str, ...], slot: Any,
                menu: QMenu, *, checkable: bool = False) -> QAction:
        action = QAction(text, self.window, checkable=checkable)
        action.setObjectName(f"action_{object_name}")
        action.setShortcuts([QKeySequence(k) for k in keys])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda *_: slot())
        self.window.addAction(action)
        menu.addAction(action)
        self.actions[object_name] = action
        return action

    def _build_actions(self) -> None:
        w = self.window
        bar = w.menuBar()
        self.actions: dict[str, QAction] = {}
        edit = QMenu("&Edit", w)
        edit.setObjectName("menu_edit")
        bar.insertMenu(w.actions_.view_menu.menuAction(), edit)
        self.undo_action = self._action("undo", "&Undo", ("Ctrl+Z",), self.undo, edit)
        self.redo_action = self._action("redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), self.redo, edit)
        file_menu = w.actions_.file_menu
        first = file_menu.actions()[3] if len(file_menu.actions()) > 3 else None
        ws_menu = QMenu("&Workspace", w)
        file_menu.insertMenu(first, ws_menu) if first is not None else file_menu.addMenu(ws_menu)
        self._action("open_workspace", "&Open Workspace…", ("Ctrl+Shift+W",), self.open_workspace_dialog,
                     ws_menu)
        self._action("import_nih", "&Import NIH Dataset…", (), self.import_nih_dialog, ws_menu)
        self._action("export", "&Export…", ("Ctrl+E",), self.export_dialog, ws_menu)

        review = QMenu("&Review", w)
        review.setObjectName("menu_review")
        bar.insertMenu(w.ai.model_menu.menuAction(), review)
        self._action("confirm", "&Confirm (and Next)", ("Return", "Enter"), self.confirm, review)
        self._action("flag", "&Flag (and Next)", ("Shift+F",), self.flag, review)
        self._action("next_unreviewed", "&Next Unreviewed", ("N",), self.next_unreviewed, review)
        self._action("prev_follow_up", "&Previous Film of Patient", ("[",), partial(self.step_follow_up, -1),
                     review)
        self._action("next_follow_up", "Next &Film of Patient", ("]",), partial(self.step_follow_up, 1),
                     review)
        review.addSeparator()
        labels = review.addMenu("&Toggle Finding")
        for i, name in enumerate(NIH_FINDINGS):
            self._action(f"toggle_{name.lower()}", f"{name.replace('_', ' ')}", (finding_key(i),),
                         partial(self.toggle, name), labels)
        self._action("uncertain", "Mark Selected Finding &Uncertain", ("U",), self.mark_uncertain, review)
        review.addSeparator()
        self.draw_action = self._action("draw_box", "&Draw Box for Selected Finding", ("B",),
                                        self._sync_draw_mode, review, checkable=True)
        self._action("accept_box", "&Accept Model Box for Selected Finding", ("A",), self.accept_model_box,
                     review)
        box_finding = review.addMenu("Set Selected Box's Finding")
        for name in NIH_FINDINGS:
            action = box_finding.addAction(name.replace("_", " "))
            action.triggered.connect(partial(lambda n, *_: self.set_box_finding(n), name))
        review.addSeparator()
        review.addAction(self.dock.toggleViewAction())
        review.addAction(self.worklist.toggleViewAction())
        w.actions_.docks_menu.addAction(self.dock.toggleViewAction())
        w.actions_.docks_menu.addAction(self.worklist.toggleViewAction())
        self._update_actions()

    def all_actions(self) -> list[QAction]:
        return list(self.actions.values())

    # -- workspace lifecycle --------------------------------------------------------------
    def open_workspace(self, path: str | os.PathLike[str], *, create: bool = False) -> bool:
        try:
            ws = Workspace(path, create=create)
        except (WorkspaceError, OSError) as exc:
            self.window.show_error(f"Cannot open workspace: {exc}")
            return False
        if self.ws is not None:
            self.ws.close()
        self.ws = ws
        self.stack = UndoStack(ws)
        self.stack.add_listener(self._on_stack_changed)
        self._thresholds = self._model_thresholds()
        self.worklist.set_workspace(f"Workspace: {ws.path}")
        self.window.settings.qs.setValue("review/last_workspace", str(ws.path))
        self._update_actions()
        return True

    def attach_files(self, paths: list[str]) -> None:
        """Images opened from disk: use the open workspace if it knows them, else their folder's."""
        if not paths:
            return
        if self.ws is not None and all(self.ws.image_by_file(p) is not None for p in paths[:50]):
            return
        target = _workspace_for(paths)
        try:
            if self.ws is None or self.ws.path != target:
                if not self.open_workspace(target, create=True):
                    return
            assert self.ws is not None
            self.ws.add_images(paths)
        except (WorkspaceError, OSError, ValueError) as exc:
            self.window.show_error(f"Review data cannot be stored for these images: {exc}")

    def open_workspace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Workspace",
                                              self.window.settings.last_folder(),
                                              "cxrview workspaces (*.sqlite);;All files (*)")
        if path and self.open_workspace(path):
            self.apply_query(self.worklist.query())

    def import_nih_dialog(self) -> None:
        from cxrview.qt.review_dialogs import ImportNihDialog

        dialog = ImportNihDialog(self.window)
        if dialog.exec() and dialog.result_path is not None and self.open_workspace(dialog.result_path):
            self.apply_query(self.worklist.query())

    def export_dialog(self) -> None:
        from cxrview.qt.review_dialogs import ExportDialog

        if self.ws is None:
            self.window.show_error("Open a workspace (or a folder of images) before exporting.")
            return
        ExportDialog(self.ws.path, self.window).exec()

    def _model_thresholds(self) -> dict[str, float]:
        try:
            from cxrview.inference.card import ModelCard
            from cxrview.inference.evidence import operating_points

            return operating_points(ModelCard.read(self.window.ai.classifier))
        except Exception:  # no bundle: thresholds only colour the model column
            return {}

    # -- worklist ---------------------------------------------------------------------------
    def apply_query(self, query: WorklistQuery) -> None:
        if self.ws is None:
            return
        start = time.perf_counter()
        query.limit = WORKLIST_LIMIT
        try:
            records = query_images(self.ws, query)
            total = count(self.ws, query)
        except WorkspaceError as exc:
            self.window.show_error(str(exc))
            return
        elapsed = (time.perf_counter() - start) * 1000
        reviewed, present = self.ws.review_progress()
        self.worklist.set_counts(len(records), total, reviewed, present, elapsed)
        paths = [str(self.ws.absolute_path(r)) for r in records if r.present]
        self.window.show_worklist(paths)

    # -- the shown image ------------------------------------------------------------------
    def image_shown(self, path: str) -> None:
        self.record = None
        if self.ws is not None:
            self.record = self.ws.image_by_file(path)
            if self.record is None:
                self.attach_files([path])
                self.record = self.ws.image_by_file(path) if self.ws is not None else None
        self.refresh()

    def image_cleared(self) -> None:
        self.record = None
        self.boxes.clear()
        self.dock.clear("No image.")

    def refresh(self) -> None:
        if self.ws is None or self.record is None:
            self.boxes.clear()
            self.dock.clear("Open a folder or a workspace to review.")
            return
        record = self.record = self.ws.image(self.record.id)
        selected = self.dock.selected_finding()
        self.dock.show_image(record, self.ws.findings(record.id), self._thresholds,
                             self.ws.same_patient(record.id))
        if selected:
            self.dock.select_finding(selected)
        sx, sy = self._box_scale()
        self.boxes.set_boxes([EditableBox(b.id, b.finding, b.x * sx, b.y * sy, b.w * sx, b.h * sy, b.source)
                              for b in self.ws.answer_boxes(record.id)])
        reviewed, present = self.ws.review_progress()
        self.worklist.progress.setMaximum(max(present, 1))
        self.worklist.progress.setValue(reviewed)
        emit(self.changed)

    def _on_prediction(self, result: Any) -> None:
        """The viewer's prediction for the shown image becomes its stored "model opinion"."""
        predictor = self.window.ai.predictor
        if self.ws is None or self.record is None or predictor is None:
            return
        if Path(result.prediction.path).name != self.record.file:
            return
        from cxrview.core.mislabel import out_of_sample_flags, score_records
        from cxrview.inference.cache import model_identity
        from cxrview.inference.evidence import operating_points

        card = predictor.card
        if list(card.labels) != list(NIH_FINDINGS) or result.prediction.withheld:
            return  # a film the input check withholds gives no opinion on its labels
        probs = [result.data["findings"][name]["probability"] for name in NIH_FINDINGS]
        oos = out_of_sample_flags(card.training, [self.record])[self.record.id]
        model = model_identity(card)
        try:
            self.ws.store_predictions(model, {self.record.id: probs}, {self.record.id: oos})
            self.ws.store_scores(model, score_records([self.record], {self.record.id: probs},
                                                      {self.record.id: oos}, operating_points(card)))
        except (WorkspaceError, OSError) as exc:
            log.warning("could not store the prediction: %s", exc)
            return
        self._thresholds = operating_points(card)
        self.refresh()

    def open_image_id(self, image_id: int) -> None:
        if self.ws is None:
            return
        path = str(self.ws.absolute_path(self.ws.image(image_id)))
        self.window.show_path(path)

    # -- editing --------------------------------------------------------------------------
    def push(self, command: Command) -> bool:
        if self.stack is None:
            return False
        try:
            self.stack.push(command)
        except (WorkspaceError, OSError) as exc:
            self.window.show_error(f"Edit not saved: {exc}")
            return False
        return True

    def undo(self) -> None:
        if self.stack is not None:
            command = self._guard(self.stack.undo)
            self._follow(command)

    def redo(self) -> None:
        if self.stack is not None:
            command = self._guard(self.stack.redo)
            self._follow(command)

    def _guard(self, fn: Any) -> Command | None:
        try:
            return fn()
        except (WorkspaceError, OSError) as exc:
            self.window.show_error(f"Undo/redo failed: {exc}")
            return None

    def _follow(self, command: Command | None) -> None:
        """Undoing an edit of another image shows that image (the change must be visible)."""
        if command is None or self.ws is None or self.record is None:
            return
        if command.image_id != self.record.id:
            self.open_image_id(command.image_id)

    def toggle(self, finding: str) -> None:
        if self.record is None:
            return
        self.dock.select_finding(finding)
        current = self.record.current_value(finding)
        value = ABSENT if current in (PRESENT, UNCERTAIN) else PRESENT
        self.push(SetLabel(self.record.id, finding, value, self.author, self.dock.current_reason()))

    def _cycle(self, finding: str) -> None:
        if self.record is not None:
            value = next_value(self.record.current_value(finding))
            self.push(SetLabel(self.record.id, finding, value, self.author, self.dock.current_reason()))

    def mark_uncertain(self) -> None:
        finding = self.dock.selected_finding()
        if self.record is not None and finding is not None:
            self.push(SetLabel(self.record.id, finding, UNCERTAIN, self.author, self.dock.current_reason()))

    def _on_note(self, text: str) -> None:
        if self.record is not None and text != self.record.note:
            self.push(SetReview(self.record.id, self.record.review_state, self.author, note=text))

    def confirm(self) -> None:
        if self.record is None:
            return
        state = CORRECTED if self.record.differs_from_dataset() else CONFIRMED
        if self.push(SetReview(self.record.id, state, self.author)) and self.dock.auto_advance.isChecked():
            self.window.next_image()

    def flag(self) -> None:
        if self.record is not None and self.push(SetReview(self.record.id, FLAGGED, self.author)) \
                and self.dock.auto_advance.isChecked():
            self.window.next_image()

    def next_unreviewed(self) -> None:
        if self.ws is None:
            return
        paths = self.window.file_dock.paths()
        row = self.window.file_dock.current_row()
        order = paths[row + 1:] + paths[:row + 1]
        for start in range(0, len(order), 500):  # a few queries, not one per listed file
            chunk = order[start:start + 500]
            names = [Path(p).name for p in chunk]
            marks = ",".join("?" * len(names))
            unreviewed = {file for (file,) in self.ws.execute(
                f"SELECT file FROM images WHERE review_state = 'unreviewed' AND file IN ({marks})", names)}
            for path, name in zip(chunk, names, strict=True):
                if name in unreviewed:
                    self.window.show_path(path)
                    return
        self.window.status.showMessage("Every image in this list has been reviewed.", 8000)

    def step_follow_up(self, delta: int) -> None:
        if self.ws is None or self.record is None:
            return
        series = [r for r in self.ws.same_patient(self.record.id) if r.present]
        ids = [r.id for r in series]
        if self.record.id in ids:
            i = ids.index(self.record.id) + delta
            if 0 <= i < len(series):
                self.open_image_id(series[i].id)

    # -- boxes ------------------------------------------------------------------------------
    def _box_scale(self) -> tuple[float, float]:
        """Stored box coordinates → shown image pixels.

        NIH boxes (and so every box of an image imported from NIH) live in the 1024 × 1024
        frame of the distributed PNGs, whatever size the local copy has (e.g. 256 px);
        boxes of other images are stored in their own pixels.
        """
        image = self.window.canvas.image()
        if image is None or self.record is None or not self.record.dataset_labelled:
            return 1.0, 1.0
        return image.width / NIH_BOX_FRAME, image.height / NIH_BOX_FRAME

    def _to_stored(self, rect: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        sx, sy = self._box_scale()
        x, y, w, h = rect
        return (round(x / sx, 1), round(y / sy, 1), round(w / sx, 1), round(h / sy, 1))

    def _sync_draw_mode(self) -> None:
        self.tool.draw_mode = self.draw_action.isChecked()
        if self.tool.draw_mode and self.dock.selected_finding() is None:
            self.window.status.showMessage("Select a finding in the Review panel (or press its number) "
                                           "first: new boxes get that finding.", 8000)

    def _on_box_drawn(self, rect: tuple[float, float, float, float]) -> None:
        finding = self.dock.selected_finding()
        if self.record is None or finding is None:
            self.window.status.showMessage("Select a finding first: the box needs one.", 8000)
            return
        self.push(AddBox(self.record.id, self.author, finding=finding, rect=self._to_stored(rect)))

    def _on_box_changed(self, box_id: int, rect: tuple[float, float, float, float]) -> None:
        if self.record is not None:
            self.push(EditBox(self.record.id, self.author, box_id=box_id, rect=self._to_stored(rect)))

    def _on_box_selected(self, box_id: int | None) -> None:
        box = self.boxes.box(box_id)
        if box is not None:
            self.dock.select_finding(box.finding)

    def _on_finding_selected(self, finding: str) -> None:
        if self.window.ai.result is not None:
            self.window.ai.dock.select_finding(finding)  # show that finding's heatmap

    def _on_editing(self, on: bool) -> None:
        if self.stack is not None:
            self.stack.begin_edit() if on else self.stack.end_edit()

    def set_box_finding(self, finding: str) -> None:
        box = self.boxes.box(self.boxes.selected)
        if self.record is not None and box is not None:
            self.push(EditBox(self.record.id, self.author, box_id=box.id, finding=finding))

    def delete_selected_box(self) -> bool:
        box = self.boxes.box(self.boxes.selected)
        if self.record is None or box is None:
            return False
        self.push(DeleteBox(self.record.id, self.author, box_id=box.id))
        self.boxes.select(None)
        return True

    def accept_model_box(self) -> None:
        finding = self.dock.selected_finding()
        shown = self.window.ai.shown  # what the viewer shows: nothing of a withheld film
        if self.record is None or finding is None or shown is None:
            self.window.status.showMessage("Select a finding with a model box first.", 8000)
            return
        if self.window.ai.output_withheld():
            self.window.status.showMessage("The AI output for this film is withheld (input check); "
                                           "there is no model box to accept.", 8000)
            return
        boxes = [b for b in shown.get("boxes", []) if b["finding"] == finding]
        if not boxes:
            self.window.status.showMessage(f"The model drew no box for {finding}.", 8000)
            return
        best = max(boxes, key=lambda b: b.get("score", 0.0))
        self.push(AddBox(self.record.id, self.author, finding=finding,
                         rect=self._to_stored((best["x"], best["y"], best["w"], best["h"]))))

    # -- state ------------------------------------------------------------------------------
    def _on_stack_changed(self, command: Command | None) -> None:
        if command is not None and self.record is not None and command.image_id == self.record.id:
            self.refresh()
        self._update_actions()
        self.window.update_title()

    def _update_actions(self) -> None:
        stack = self.stack
        self.undo_action.setEnabled(bool(stack and stack.can_undo()))
        self.redo_action.setEnabled(bool(stack and stack.can_redo()))
        self.undo_action.setText(f"&Undo {stack.undo_text()}" if stack and stack.can_undo() else "&Undo")
        self.redo_action.setText(f"&Redo {stack.redo_text()}" if stack and stack.can_redo() else "&Redo")

    def is_dirty(self) -> bool:
        return bool(self.stack and self.stack.is_dirty())

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

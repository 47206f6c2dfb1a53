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

Every edit is made for the image it was started on: the selected finding (what U acts on) is
cleared when another image is shown, the note and the reason carry the id of the image they
were entered for (the review dock), and keys typed into text fields stay there
(``cxrview.qt.text_keys``), so Return in the note or the file filter never confirms an image.
A reason picked after a toggle applies to the decisions made on that image since it was shown.

Collaborators: the canvas (the shown image, the box layer and tool), the file list (for
"next unreviewed"), the settings, a notifier, the AI output on screen (read-only, for "accept
the model's box") and a parent for its dialogs. It asks the window to show images through
signals (``show_requested``, ``advance_requested``, ``worklist_ready``) and records the
viewer's predictions through ``scoring.record_predictions``, as ``cxrview score`` does.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QWidget

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
from cxrview.core.workspace import (
    ImageRecord,
    Workspace,
    WorkspaceError,
    default_workspace_path,
    not_trained_reason,
)
from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.compat import emit
from cxrview.qt.docks.review_dock import ReviewDock, finding_key, next_value
from cxrview.qt.docks.worklist_dock import WorklistDock
from cxrview.qt.settings import AppSettings, as_bool
from cxrview.qt.viewer.box_editor import BoxEditLayer, BoxTool, EditableBox

if TYPE_CHECKING:
    from cxrview.qt.ai.tasks import AIResult
    from cxrview.qt.docks.file_list import FileListDock
    from cxrview.qt.notify import Notifier
    from cxrview.qt.viewer.canvas import ImageCanvas

log = logging.getLogger(__name__)
WORKLIST_LIMIT = 20000  # rows put into the file list at once (the query itself is not limited)


class ShownOutput(Protocol):
    """The AI output on screen for the shown image (the AI controller)."""

    shown: dict[str, Any] | None  # gate.presented(...) of the current prediction, None before one

    def output_withheld(self) -> bool: ...


def _model_thresholds(classifier: str) -> dict[str, float]:
    """The classifier's validated operating points ({} without a readable bundle)."""
    try:
        from cxrview.inference.card import ModelCard
        from cxrview.inference.evidence import operating_points

        return operating_points(ModelCard.read(classifier))
    except Exception:  # no bundle: thresholds only colour the model column
        return {}


def _workspace_for(paths: list[str]) -> Path:
    """The workspace of the folder holding these images: one made there on purpose (an import, a
    workspace the reader created) if it exists, else one in the user data directory. Viewing a
    folder never writes into it (issue 15): no ``cxrview.workspace.sqlite``, ``-wal`` or ``-shm``."""
    folder = os.path.commonpath([str(Path(p).resolve().parent) for p in paths])
    beside = default_workspace_path(folder)
    if beside.is_file():
        return beside
    return default_workspace_path(folder, beside_images=False)


class ReviewController(QObject):
    changed = Signal()  # the shown image's review data changed (edit, undo, redo, new image)
    dirty_changed = Signal()  # an edit began or ended, or the history changed (the title's "•")
    show_requested = Signal(str)  # path: show this image (follow-up, undo of another image's edit)
    advance_requested = Signal()  # confirm/flag with auto-advance: the next image of the list
    worklist_ready = Signal(object)  # list[str]: the worklist's paths, for the file list
    finding_selected = Signal(str)  # the reader selected a finding (its heatmap may be shown)

    def __init__(self, canvas: ImageCanvas, files: FileListDock, settings: AppSettings, notifier: Notifier, *,
                 model_output: ShownOutput, classifier: str, dialog_parent: QWidget | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.files = files
        self.settings = settings
        self.notifier = notifier
        self.model_output = model_output
        self.dialog_parent = dialog_parent
        self.author = getpass.getuser() or "reviewer"
        #: path → the same patient's films in time order (the study index), or None
        self.related: Callable[[str], list[str]] | None = None
        self._shown: str | None = None
        self.ws: Workspace | None = None
        self.stack: UndoStack | None = None
        self.record: ImageRecord | None = None
        self._classifier = classifier
        self._thresholds: dict[str, float] = {}
        self._shown_id: int | None = None  # the image whose finding selection the dock shows
        self._visit_edits: set[str] = set()  # findings decided on the shown image since it was shown
        self.dock = ReviewDock()
        self.worklist = WorklistDock()
        qs = settings.qs
        self.dock.auto_advance.setChecked(as_bool(qs.value("review/auto_advance"), True))
        self.dock.auto_advance.toggled.connect(lambda on: qs.setValue("review/auto_advance", on))
        self.boxes = BoxEditLayer()
        self.boxes.labels = list(NIH_FINDINGS)
        canvas.add_layer(self.boxes)
        self.tool = BoxTool(self.boxes, self)
        canvas.set_tool(self.tool)
        self.tool.drawn.connect(self._on_box_drawn)
        self.tool.changed.connect(self._on_box_changed)
        self.tool.editing.connect(self._on_editing)
        self.tool.selection_changed.connect(self._on_box_selected)
        self.dock.cycle_requested.connect(self._cycle)
        self.dock.finding_selected.connect(self._on_finding_selected)
        self.dock.note_edited.connect(self._on_note)
        self.dock.note_committed.connect(self.canvas.setFocus)  # review keys work again after Enter
        self.dock.reason_changed.connect(self._on_reason)
        self.dock.confirm_requested.connect(self.confirm)
        self.dock.flag_requested.connect(self.flag)
        self.dock.next_unreviewed_requested.connect(self.next_unreviewed)
        self.dock.open_image_requested.connect(self.open_image_id)
        self.worklist.query_changed.connect(self.apply_query)
        self.worklist.set_sort(str(qs.value("review/worklist_sort", "file") or "file"))  # as left
        self.actions = ActionSet(self, self._action_specs())
        self.actions.adopt("review.panels", self.dock.toggleViewAction())
        self.actions.adopt("review.panels", self.worklist.toggleViewAction())
        self.undo_action = self.actions["undo"]
        self.redo_action = self.actions["redo"]
        self.draw_action = self.actions["draw_box"]
        self._update_actions()

    # -- commands -----------------------------------------------------------------------------
    def _action_specs(self) -> list[ActionSpec]:
        specs = [
            ActionSpec("undo", "&Undo", "edit.history", self.undo, keys=("Ctrl+Z",)),
            ActionSpec("redo", "&Redo", "edit.history", self.redo, keys=("Ctrl+Shift+Z", "Ctrl+Y")),
            ActionSpec("open_workspace", "&Open Workspace…", "file.workspace", self.open_workspace_dialog,
                       keys=("Ctrl+Shift+W",)),
            ActionSpec("import_nih", "&Import NIH Dataset…", "file.workspace", self.import_nih_dialog),
            ActionSpec("export", "&Export…", "file.workspace", self.export_dialog, keys=("Ctrl+E",)),
            ActionSpec("confirm", "&Confirm (and Next)", "review.step", self.confirm,
                       keys=("Return", "Enter")),
            ActionSpec("flag", "&Flag (and Next)", "review.step", self.flag, keys=("Shift+F",)),
            ActionSpec("next_unreviewed", "&Next Unreviewed", "review.step", self.next_unreviewed,
                       keys=("N",)),
            ActionSpec("prev_follow_up", "&Previous Film of Patient", "review.step",
                       partial(self.step_follow_up, -1), keys=("[",)),
            ActionSpec("next_follow_up", "Next &Film of Patient", "review.step",
                       partial(self.step_follow_up, 1), keys=("]",)),
        ]
        specs += [ActionSpec(f"toggle_{name.lower()}", name.replace("_", " "), "review.toggle",
                             partial(self.toggle, name), keys=(finding_key(i),))
                  for i, name in enumerate(NIH_FINDINGS)]
        specs += [
            ActionSpec("uncertain", "Mark Selected Finding &Uncertain", "review.uncertain",
                       self.mark_uncertain, keys=("U",)),
            ActionSpec("draw_box", "&Draw Box for Selected Finding", "review.boxes", self._sync_draw_mode,
                       keys=("B",), checkable=True),
            ActionSpec("accept_box", "&Accept Model Box for Selected Finding", "review.boxes",
                       self.accept_model_box, keys=("A",)),
        ]
        specs += [ActionSpec(f"box_finding_{name.lower()}", name.replace("_", " "), "review.box_finding",
                             partial(self.set_box_finding, name)) for name in NIH_FINDINGS]
        return specs

    # -- workspace lifecycle --------------------------------------------------------------
    def open_workspace(self, path: str | os.PathLike[str], *, create: bool = False) -> bool:
        try:
            ws = Workspace(path, create=create)
        except (WorkspaceError, OSError) as exc:
            self.notifier.error(f"Cannot open workspace: {exc}")
            return False
        if self.ws is not None:
            self.ws.close()
        self.ws = ws
        self.stack = UndoStack(ws)
        self.stack.add_listener(self._on_stack_changed)
        self._thresholds = _model_thresholds(self._classifier)
        self.worklist.set_workspace(f"Workspace: {ws.path}")
        self.settings.qs.setValue("review/last_workspace", str(ws.path))
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
            self.notifier.error(f"Review data cannot be stored for these images: {exc}")

    def open_workspace_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.dialog_parent, "Open Workspace",
                                              self.settings.last_folder(),
                                              "cxrview workspaces (*.sqlite);;All files (*)")
        if path and self.open_workspace(path):
            self.apply_query(self.worklist.query())

    def import_nih_dialog(self) -> None:
        from cxrview.qt.review_dialogs import ImportNihDialog

        dialog = ImportNihDialog(self.dialog_parent)
        if dialog.exec() and dialog.result_path is not None and self.open_workspace(dialog.result_path):
            self.apply_query(self.worklist.query())

    def export_dialog(self) -> None:
        from cxrview.qt.review_dialogs import ExportDialog

        if self.ws is None:
            self.notifier.error("Open a workspace (or a folder of images) before exporting.")
            return
        ExportDialog(self.ws.path, self.dialog_parent).exec()

    def set_classifier(self, classifier: str) -> None:
        """The viewer uses another classifier: colour the model column by its operating points."""
        self._classifier = classifier
        self._thresholds = _model_thresholds(classifier)
        if self.record is not None:
            self.refresh()

    def workspace_path(self) -> Path | None:
        return self.ws.path if self.ws is not None else None

    # -- worklist ---------------------------------------------------------------------------
    def last_session(self) -> tuple[str, str | None] | None:
        """(workspace path, image file name) the reviewer last worked on, if the workspace is there."""
        path = str(self.settings.qs.value("review/last_workspace", "") or "")
        if not path or not Path(path).is_file():
            return None
        return path, str(self.settings.qs.value("review/last_image", "") or "") or None

    def apply_query(self, query: WorklistQuery) -> None:
        if self.ws is None:
            return
        self.settings.qs.setValue("review/worklist_sort", query.sort)
        start = time.perf_counter()
        query.limit = WORKLIST_LIMIT
        try:
            records = query_images(self.ws, query)
            total = count(self.ws, query)
        except WorkspaceError as exc:
            self.notifier.error(str(exc))
            return
        elapsed = (time.perf_counter() - start) * 1000
        reviewed, present = self.ws.review_progress()
        self.worklist.set_counts(len(records), total, reviewed, present, elapsed)
        paths = [str(self.ws.absolute_path(r)) for r in records if r.present]
        emit(self.worklist_ready, paths)

    # -- the shown image ------------------------------------------------------------------
    def image_shown(self, path: str) -> None:
        self._shown = path
        self.record = None
        if self.ws is not None:
            self.record = self.ws.image_by_file(path)
            if self.record is None:
                self.attach_files([path])
                self.record = self.ws.image_by_file(path) if self.ws is not None else None
        if self.record is not None:
            self.settings.qs.setValue("review/last_image", self.record.file)  # resume here next time
        self.refresh()

    def image_cleared(self) -> None:
        self.record = None
        self._shown_id = None
        self.boxes.clear()
        self.dock.clear("No image.")

    def refresh(self) -> None:
        if self.ws is None or self.record is None:
            self.boxes.clear()
            self._shown_id = None
            self.dock.clear("Open a folder or a workspace to review.")
            return
        record = self.record = self.ws.image(self.record.id)
        selected = self.dock.selected_finding() if record.id == self._shown_id else None
        if record.id != self._shown_id:
            self._shown_id = record.id
            self._visit_edits = set()
        self.dock.show_image(record, self.ws.findings(record.id), self._thresholds,
                             self.ws.same_patient(record.id),
                             not_trained=not_trained_reason(record, self.ws.locked_patients()))
        self.dock.table.clearSelection()
        if selected:  # a selection belongs to its image: another image starts with none
            self.dock.select_finding(selected)
        sx, sy = self._box_scale()
        self.boxes.set_boxes([EditableBox(b.id, b.finding, b.x * sx, b.y * sy, b.w * sx, b.h * sy,
                                          "model" if b.accepted_from else b.source)
                              for b in self.ws.answer_boxes(record.id)])
        reviewed, present = self.ws.review_progress()
        self.worklist.progress.setMaximum(max(present, 1))
        self.worklist.progress.setValue(reviewed)
        emit(self.changed)

    def record_prediction(self, result: AIResult) -> None:
        """The viewer's prediction for the shown image becomes its stored "model opinion"
        (``scoring.record_predictions``: a withheld film gives none)."""
        if self.ws is None or self.record is None or result.card is None:
            return
        if Path(result.prediction.path).name != self.record.file:
            return
        from cxrview.inference.evidence import operating_points
        from cxrview.inference.scoring import ScoringError, record_predictions

        try:
            record_predictions(self.ws, result.card, {self.record.id: result.prediction})
        except ScoringError:
            return  # a model whose labels are not the workspace's findings has no opinion on them
        except (WorkspaceError, OSError) as exc:
            log.warning("could not store the prediction: %s", exc)
            return
        self._thresholds = operating_points(result.card)
        self.refresh()

    def scores_changed(self) -> None:
        """Scores were recorded elsewhere (Score All Files): show the shown image's anew."""
        if self.record is not None:
            self.refresh()

    def open_image_id(self, image_id: int) -> None:
        if self.ws is None:
            return
        path = str(self.ws.absolute_path(self.ws.image(image_id)))
        emit(self.show_requested, path)

    # -- editing --------------------------------------------------------------------------
    def push(self, command: Command) -> bool:
        if self.stack is None:
            return False
        try:
            self.stack.push(command)
        except (WorkspaceError, OSError) as exc:
            self.notifier.error(f"Edit not saved: {exc}")
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

    def _guard(self, fn: Callable[[], Command | None]) -> Command | None:
        try:
            return fn()
        except (WorkspaceError, OSError) as exc:
            self.notifier.error(f"Undo/redo failed: {exc}")
            return None

    def _follow(self, command: Command | None) -> None:
        """Undoing an edit of another image shows that image (the change must be visible)."""
        if command is None or self.ws is None or self.record is None:
            return
        if command.image_id != self.record.id:
            self.open_image_id(command.image_id)

    def _set_label(self, finding: str, value: str) -> None:
        assert self.record is not None
        if self.push(SetLabel(self.record.id, finding, value, self.author, self.dock.current_reason())):
            self._visit_edits.add(finding)

    def toggle(self, finding: str) -> None:
        if self.record is None:
            return
        self.dock.select_finding(finding)
        current = self.record.current_value(finding)
        self._set_label(finding, ABSENT if current in (PRESENT, UNCERTAIN) else PRESENT)

    def _cycle(self, finding: str) -> None:
        if self.record is not None:
            self._set_label(finding, next_value(self.record.current_value(finding)))

    def mark_uncertain(self) -> None:
        finding = self.dock.selected_finding()
        if self.record is None or finding is None:
            self.notifier.status("Select a finding of this image first (its number key), then U.")
            return
        self._set_label(finding, UNCERTAIN)

    def _on_note(self, image_id: int, text: str) -> None:
        """A note typed for ``image_id`` (perhaps no longer the image on screen) is stored there."""
        if self.ws is None:
            return
        try:
            record = self.ws.image(image_id)
        except WorkspaceError:
            return
        if text != record.note:
            self.push(SetReview(image_id, record.review_state, self.author, note=text))

    def _on_reason(self, image_id: int, reason: str | None) -> None:
        """A reason picked after the edits it explains: those decisions (made on this image since
        it was shown) get it, each as an undoable step; later edits of the image get it too."""
        if self.ws is None or self.record is None or image_id != self.record.id or reason is None:
            return
        humans = {f.finding: f.human for f in self.ws.findings(image_id) if f.human is not None}
        for finding in sorted(self._visit_edits):
            human = humans.get(finding)
            if human is not None and human.reason != reason:
                self.push(SetLabel(image_id, finding, human.value, self.author, reason))

    def confirm(self) -> None:
        if self.record is None:
            return
        state = CORRECTED if self.record.differs_from_dataset() else CONFIRMED
        if self.push(SetReview(self.record.id, state, self.author)) and self.dock.auto_advance.isChecked():
            emit(self.advance_requested)

    def flag(self) -> None:
        if self.record is not None and self.push(SetReview(self.record.id, FLAGGED, self.author)) \
                and self.dock.auto_advance.isChecked():
            emit(self.advance_requested)

    def next_unreviewed(self) -> None:
        if self.ws is None:
            return
        paths = self.files.paths()
        row = self.files.current_row()
        order = paths[row + 1:] + paths[:row + 1]
        for start in range(0, len(order), 500):  # a few queries, not one per listed file
            chunk = order[start:start + 500]
            names = [Path(p).name for p in chunk]
            unreviewed = self.ws.unreviewed_files(names)
            for path, name in zip(chunk, names, strict=True):
                if name in unreviewed:
                    emit(self.show_requested, path)
                    return
        self.notifier.status("Every image in this list has been reviewed.")

    def step_follow_up(self, delta: int) -> None:
        """The patient's previous / next film: by DICOM PatientID from the study index when it
        knows the shown image (``related``), else by the workspace's (NIH) patient."""
        if self.related is not None and self._shown is not None:
            films = self.related(self._shown)
            if self._shown in films:
                i = films.index(self._shown) + delta
                if 0 <= i < len(films):
                    emit(self.show_requested, films[i])
                return
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
        image = self.canvas.image()
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
            self.notifier.status("Select a finding in the Review panel (or press its number) "
                                 "first: new boxes get that finding.")

    def _on_box_drawn(self, rect: tuple[float, float, float, float]) -> None:
        finding = self.dock.selected_finding()
        if self.record is None or finding is None:
            self.notifier.status("Select a finding first: the box needs one.")
            return
        if self.push(AddBox(self.record.id, self.author, finding=finding, rect=self._to_stored(rect))):
            self.draw_action.setChecked(False)  # one box per B: the next drag selects or moves again
            self._sync_draw_mode()

    def _on_box_changed(self, box_id: int, rect: tuple[float, float, float, float]) -> None:
        if self.record is not None:
            self.push(EditBox(self.record.id, self.author, box_id=box_id, rect=self._to_stored(rect)))

    def _on_box_selected(self, box_id: int | None) -> None:
        box = self.boxes.box(box_id)
        if box is not None:
            self.dock.select_finding(box.finding)

    def _on_finding_selected(self, finding: str) -> None:
        emit(self.finding_selected, finding)  # the findings dock shows that finding's heatmap

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
        shown = self.model_output.shown  # what the viewer shows: nothing of a withheld film
        if self.record is None or finding is None or shown is None:
            self.notifier.status("Select a finding with a model box first.")
            return
        if self.model_output.output_withheld():
            self.notifier.status("The AI output for this film is withheld (input check); "
                                 "there is no model box to accept.")
            return
        boxes = [b for b in shown.get("boxes", []) if b["finding"] == finding]
        if not boxes:
            self.notifier.status(f"The model drew no box for {finding}.")
            return
        best = max(boxes, key=lambda b: b.get("score", 0.0))
        self.push(AddBox(self.record.id, self.author, finding=finding,
                         rect=self._to_stored((best["x"], best["y"], best["w"], best["h"])),
                         accepted_from=str(shown.get("model") or "model")))

    # -- state ------------------------------------------------------------------------------
    def _on_stack_changed(self, command: Command | None) -> None:
        if isinstance(command, SetLabel) and self.ws is not None:
            self._refresh_scores(command.image_id)
        if command is not None and self.record is not None and command.image_id == self.record.id:
            self.refresh()
        self._update_actions()
        emit(self.dirty_changed)

    def _refresh_scores(self, image_id: int) -> None:
        """A label changed: the image's mislabel score and suspect follow (its last scoring's model)."""
        from cxrview.core.mislabel import refresh_scores

        assert self.ws is not None
        try:
            refresh_scores(self.ws, image_id)
        except (WorkspaceError, OSError, ValueError) as exc:
            log.warning("could not refresh the scores of image %s: %s", image_id, exc)

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

"""Edits as command objects on an undo stack (Qt-free; the GUI wraps it in actions).

Every command is bound to the image it was made for (``image_id``, fixed when it is
created) and names what it changes by stable ids (``uid``s of decisions and boxes,
never SQLite row ids, which are reused). It applies itself to the workspace
(``redo``) and takes itself back exactly (``undo``), each time in *one*
transaction together with its audit events and the saved undo history, so a
killed process never leaves half an edit, and the log, the history and the
decisions always agree.

Undo and redo check row versions: a review decision, a note or a box that someone
else changed since (another window, another annotator) is not changed back — the
command is dropped from the history with :class:`EditConflict` and their work stays.

Consecutive moves of the same box made by one gesture (``merge_key``) collapse into
one step. A command that fails is not recorded and changes nothing; one that fails
for a reason a retry can cure (the database is locked, the disk is full, the media
is read-only) is *kept* by :meth:`UndoStack.submit` and applied, in order with
later edits, by :meth:`UndoStack.retry`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from cxrview.core.store import EditConflict, WorkspaceError, transient
from cxrview.core.workspace import Workspace, new_uid

log = logging.getLogger(__name__)
Rect = tuple[float, float, float, float]


@dataclass
class Command:
    image_id: int
    author: str
    text: ClassVar[str] = "edit"
    changes_labels: ClassVar[bool] = False

    def redo(self, ws: Workspace, via: str = "do") -> None:
        raise NotImplementedError

    def undo(self, ws: Workspace) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.text

    def merge_key(self) -> object | None:
        """Commands with equal non-None keys pushed back to back merge into one step."""
        return None

    def merge(self, later: Command) -> None:
        raise NotImplementedError


@dataclass
class SetLabel(Command):
    finding: str = ""
    value: str = ""
    reason: str | None = None
    note: str | None = None
    uid: str = field(default_factory=new_uid)  # the decision's row, also this command's id
    changes_labels: ClassVar[bool] = True

    def describe(self) -> str:
        return f"{self.finding}: {self.value}"

    def redo(self, ws: Workspace, via: str = "do") -> None:
        ws.set_label(self.image_id, self.finding, self.value, author=self.author, reason=self.reason,
                     note=self.note, uid=self.uid, command=self.uid, via=via)

    def undo(self, ws: Workspace) -> None:
        ws.remove_label(self.uid, author=self.author, command=self.uid)


@dataclass
class SetReview(Command):
    state: str = ""
    note: str | None = None  # None: keep the note
    uid: str = field(default_factory=new_uid)
    previous: tuple[str, str, str | None, float | None] | None = None
    base: int | None = None  # the image's review row version before this command …
    after: int | None = None  # … and after it: undo and redo check that nobody changed it since

    def describe(self) -> str:
        return f"mark {self.state}" if self.note is None else "edit note"

    def redo(self, ws: Workspace, via: str = "do") -> None:
        first = via == "do"
        change = ws.set_review(self.image_id, self.state, author=self.author, note=self.note,
                               expect_version=None if first else self.base,
                               set_version=None if first else self.after, command=self.uid, via=via)
        self.previous = change.previous
        if first:
            self.base, self.after = change.version - 1, change.version

    def undo(self, ws: Workspace) -> None:
        if self.previous is not None:
            ws.restore_review(self.image_id, self.previous, expect_version=self.after,
                              restore_version=self.base, author=self.author, command=self.uid)


@dataclass
class _BoxCommand(Command):
    """Shared take-over: the first human box edit on an image copies its dataset boxes."""

    uid: str = field(default_factory=new_uid)
    taken_over: list[str] = field(default_factory=list)  # copies this command made (undo removes them)
    copies: dict[str, str] = field(default_factory=dict)  # dataset box uid → copy uid, kept for redo

    def _take_over(self, ws: Workspace, via: str) -> dict[str, str]:
        """{dataset box uid: its human copy's uid} (copies made now, under their first names on a redo,
        or earlier)."""
        self.taken_over = ws.take_over_boxes(self.image_id, author=self.author, command=self.uid, via=via,
                                             uids=self.copies)
        found = {b.origin: b.uid for b in ws.boxes(self.image_id, source="human", include_deleted=True)
                 if b.origin is not None}
        if self.taken_over:
            self.copies = {origin: uid for origin, uid in found.items() if uid in self.taken_over}
        return found

    def _resolve(self, ws: Workspace, box: str, via: str) -> str:
        if ws.box(box).source != "dataset":
            return box
        copies = self._take_over(ws, via)
        if box not in copies:
            raise WorkspaceError("this dataset box has no human copy")
        return copies[box]

    def _release(self, ws: Workspace) -> None:
        if self.taken_over:
            ws.undo_take_over(self.image_id, self.taken_over, author=self.author, command=self.uid)
            self.taken_over = []


@dataclass
class AddBox(_BoxCommand):
    finding: str = ""
    rect: Rect = (0.0, 0.0, 1.0, 1.0)
    source: str = "human"  # "model": a model box the annotator accepted
    model: str | None = None
    text: ClassVar[str] = "add box"

    def redo(self, ws: Workspace, via: str = "do") -> None:
        self._take_over(ws, via)
        ws.add_box(self.image_id, self.finding, self.rect, author=self.author, source=self.source,
                   model=self.model, uid=self.uid, command=self.uid, via=via)

    def undo(self, ws: Workspace) -> None:
        ws.purge_box(self.uid, expect_version=0, author=self.author, command=self.uid)
        self._release(ws)


@dataclass
class EditBox(_BoxCommand):
    """Move/resize (``rect``) and/or relabel (``finding``) one box; dataset boxes via their copy."""

    box: str = ""  # the box as shown (a dataset box's uid is resolved to its human copy)
    rect: Rect | None = None
    finding: str | None = None
    gesture: object | None = field(default=None, compare=False)  # same gesture → one undo step
    target: str | None = None
    old_rect: Rect | None = None
    old_finding: str | None = None
    base: int | None = None  # the box's version before this command …
    after: int | None = None  # … and after it

    def describe(self) -> str:
        return "change box finding" if self.rect is None else "move box"

    def redo(self, ws: Workspace, via: str = "do") -> None:
        first = via == "do"
        self.target = self._resolve(ws, self.box, via)
        if first:
            before = ws.box(self.target)
            self.old_rect = before.rect() if self.rect is not None else None
            self.old_finding = before.finding if self.finding is not None else None
            self.base = before.version
        version = ws.update_box(self.target, rect=self.rect, finding=self.finding,
                                expect_version=None if first else self.base,
                                set_version=None if first else self.after,
                                author=self.author, command=self.uid, via=via)
        if first:
            self.after = version

    def undo(self, ws: Workspace) -> None:
        if self.target is not None:
            ws.update_box(self.target, rect=self.old_rect, finding=self.old_finding,
                          expect_version=self.after, set_version=self.base, author=self.author,
                          command=self.uid, via="undo")
        self._release(ws)

    def merge_key(self) -> object | None:
        return None if self.gesture is None else ("box", self.box, id(self.gesture))

    def merge(self, later: Command) -> None:
        assert isinstance(later, EditBox)
        # keep our "before" state; take the later command's "after" state
        self.rect = later.rect if later.rect is not None else self.rect
        self.finding = later.finding if later.finding is not None else self.finding
        self.after = later.after


@dataclass
class DeleteBox(_BoxCommand):
    box: str = ""
    target: str | None = None
    base: int | None = None
    after: int | None = None
    text: ClassVar[str] = "delete box"

    def redo(self, ws: Workspace, via: str = "do") -> None:
        first = via == "do"
        self.target = self._resolve(ws, self.box, via)
        if first:
            self.base = ws.box(self.target).version
        version = ws.set_box_deleted(self.target, True, expect_version=None if first else self.base,
                                     set_version=None if first else self.after, author=self.author,
                                     command=self.uid, via=via)
        if first:
            self.after = version

    def undo(self, ws: Workspace) -> None:
        if self.target is not None:
            ws.set_box_deleted(self.target, False, expect_version=self.after, set_version=self.base,
                               author=self.author, command=self.uid, via="undo")
        self._release(ws)


COMMAND_TYPES: dict[str, type[Command]] = {c.__name__: c for c in (SetLabel, SetReview, AddBox, EditBox,
                                                                   DeleteBox)}


def command_to_json(command: Command) -> str:
    data = {f.name: getattr(command, f.name) for f in dataclasses.fields(command) if f.name != "gesture"}
    return json.dumps({"type": type(command).__name__, **data})


def command_from_json(text: str) -> Command:
    data = json.loads(text)
    cls = COMMAND_TYPES[data.pop("type")]
    names = {f.name for f in dataclasses.fields(cls)}
    for key in ("rect", "old_rect", "previous"):  # JSON has no tuples
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    return cls(**{k: v for k, v in data.items() if k in names})


class UndoStack:
    """Linear undo/redo history over one workspace; listeners hear about every change.

    With ``author`` the history is saved in the workspace (``undo_history``) in the same
    transaction as each edit, and loaded again when a stack for that author is made: undo
    survives a restart. Without it the history lives as long as the object.
    """

    def __init__(self, ws: Workspace, limit: int = 500, *, author: str | None = None) -> None:
        self.ws = ws
        self.limit = limit
        self.author = author
        self._done: list[tuple[int | None, Command]] = []
        self._undone: list[tuple[int | None, Command]] = []
        self.pending: list[Command] = []  # kept after a transient failure, applied by retry()
        self.last_error: WorkspaceError | None = None
        self._editing = 0
        self._listeners: list[Callable[[Command | None], None]] = []
        if author is not None:
            self._load(author)

    def _load(self, author: str) -> None:
        undone: list[tuple[int | None, Command]] = []
        for seq, state, text in self.ws.history_rows(author):
            try:
                command = command_from_json(text)
            except (ValueError, KeyError, TypeError) as exc:  # a history row from another version
                log.warning("undo history entry %s skipped: %s", seq, exc)
                continue
            (self._done if state == "done" else undone).append((seq, command))
        self._undone = sorted(undone, key=lambda item: -(item[0] or 0))

    def add_listener(self, fn: Callable[[Command | None], None]) -> None:
        self._listeners.append(fn)

    def _changed(self, command: Command | None) -> None:
        for fn in list(self._listeners):
            fn(command)

    def _persist(self) -> bool:
        return self.author is not None and not self.ws.read_only

    # -- editing ------------------------------------------------------------------------------
    def push(self, command: Command) -> None:
        """Apply ``command`` and record it, in one transaction; merges with the previous step when both
        carry the same merge key. A failing command changes nothing and is not recorded."""
        with self.ws.transaction() as conn:
            command.redo(self.ws)
            key = command.merge_key()
            merged = key is not None and bool(self._done) and self._done[-1][1].merge_key() == key
            seq: int | None = None
            if self._persist():
                conn.execute("DELETE FROM undo_history WHERE author = ? AND state = 'undone'", (self.author,))
                if merged and self._done[-1][0] is not None:
                    self._done[-1][1].merge(command)
                    conn.execute("UPDATE undo_history SET command = ? WHERE seq = ?",
                                 (command_to_json(self._done[-1][1]), self._done[-1][0]))
                else:
                    seq = int(conn.execute("INSERT INTO undo_history(author, state, command) "
                                           "VALUES (?, 'done', ?)",
                                           (self.author, command_to_json(command))).lastrowid or 0)
                    conn.execute("DELETE FROM undo_history WHERE author = ? AND seq <= ? - ?",
                                 (self.author, seq, self.limit))
            elif merged:
                self._done[-1][1].merge(command)
        if not merged:
            self._done.append((seq, command))
            del self._done[:-self.limit]
        self._undone.clear()
        self._after(command)

    def submit(self, command: Command) -> bool:
        """Push, keeping the edit when the failure is one a retry can cure (locked, full, read-only):
        it waits in :attr:`pending`, in order with later edits. Returns whether it is saved now."""
        self.pending.append(command)
        return self.retry()

    def retry(self) -> bool:
        """Apply the kept edits in order; True when none is left. A kept edit that fails for good
        (it no longer makes sense) is dropped and its error raised."""
        while self.pending:
            try:
                self.push(self.pending[0])
            except WorkspaceError as exc:
                if transient(exc):
                    self.last_error = exc
                    self._changed(None)
                    return False
                self.pending.pop(0)
                self._changed(None)
                raise
            self.pending.pop(0)
        self.last_error = None
        return True

    def undo(self) -> Command | None:
        if not self._done:
            return None
        seq, command = self._done[-1]
        try:
            with self.ws.transaction() as conn:
                command.undo(self.ws)
                if seq is not None and self._persist():
                    conn.execute("UPDATE undo_history SET state = 'undone' WHERE seq = ?", (seq,))
        except EditConflict:
            self._drop(self._done, seq)
            raise
        self._done.pop()
        self._undone.append((seq, command))
        self._after(command)
        return command

    def redo(self) -> Command | None:
        if not self._undone:
            return None
        seq, command = self._undone[-1]
        try:
            with self.ws.transaction() as conn:
                command.redo(self.ws, "redo")
                if seq is not None and self._persist():
                    conn.execute("UPDATE undo_history SET state = 'done' WHERE seq = ?", (seq,))
        except EditConflict:
            self._drop(self._undone, seq)
            raise
        self._undone.pop()
        self._done.append((seq, command))
        self._after(command)
        return command

    def _drop(self, stack: list[tuple[int | None, Command]], seq: int | None) -> None:
        """Someone else's later work stands in the way: forget this step (saying so is the caller's)."""
        stack.pop()
        if seq is not None and self._persist():
            try:
                with self.ws.transaction() as conn:
                    conn.execute("DELETE FROM undo_history WHERE seq = ?", (seq,))
            except WorkspaceError as exc:
                log.warning("could not forget undo step %s: %s", seq, exc)
        self._changed(None)

    def _after(self, command: Command) -> None:
        if command.changes_labels:
            _rescore(self.ws, command.image_id)
        self._changed(command)

    # -- state --------------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo_text(self) -> str:
        return self._done[-1][1].describe() if self._done else ""

    def redo_text(self) -> str:
        return self._undone[-1][1].describe() if self._undone else ""

    def done(self) -> list[Command]:
        return [command for _seq, command in self._done]

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self._changed(None)

    def pending_label(self, image_id: int, finding: str) -> str | None:
        """The value a kept (not yet saved) edit gives this finding, if any."""
        for command in reversed(self.pending):
            if isinstance(command, SetLabel) and command.image_id == image_id and command.finding == finding:
                return command.value
        return None

    # -- pending state -------------------------------------------------------------------
    def begin_edit(self) -> None:
        """An edit is under way (e.g. a box being dragged) and not yet committed."""
        self._editing += 1
        self._changed(None)

    def end_edit(self) -> None:
        self._editing = max(0, self._editing - 1)
        self._changed(None)

    def is_dirty(self) -> bool:
        """Anything not yet in the database? An edit in progress, or edits kept after a failure."""
        return self._editing > 0 or bool(self.pending)


def _rescore(ws: Workspace, image_id: int) -> None:
    """A label changed: its image's mislabel score and suspect follow at once (derived data: a failure
    here is logged, never the edit's)."""
    from cxrview.core.mislabel import rescore_images

    try:
        rescore_images(ws, [image_id])
    except (WorkspaceError, ValueError) as exc:
        log.warning("could not rescore image %s after an edit: %s", image_id, exc)

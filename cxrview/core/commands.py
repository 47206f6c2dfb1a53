"""Edits as command objects on an undo stack (Qt-free; the GUI wraps it in actions).

Every command applies itself to the workspace in one transaction (``redo``)
and can take itself back exactly (``undo``): a label decision removes the row
it added, a box edit restores the previous geometry. Consecutive moves of the
same box made by one gesture (``merge_key``) collapse into one step, so a drag
or a run of arrow-key nudges is undone at once.

Because each command is committed when it is pushed, nothing is ever left
unsaved: the stack's clean point moves with every successful push and
``is_dirty`` is true only while an edit is being made (``begin_edit``/
``end_edit``, e.g. during a mouse drag before the release commits it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cxrview.core.workspace import Workspace, WorkspaceError

Rect = tuple[float, float, float, float]


class Command:
    text = "edit"
    image_id: int

    def redo(self, ws: Workspace) -> None:
        raise NotImplementedError

    def undo(self, ws: Workspace) -> None:
        raise NotImplementedError

    def merge_key(self) -> object | None:
        """Commands with equal non-None keys pushed back to back merge into one step."""
        return None

    def merge(self, later: Command) -> None:
        raise NotImplementedError


@dataclass
class SetLabel(Command):
    image_id: int
    finding: str
    value: str
    author: str
    reason: str | None = None
    record_id: int | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"{self.finding}: {self.value}"

    def redo(self, ws: Workspace) -> None:
        self.record_id = ws.set_label(self.image_id, self.finding, self.value, author=self.author,
                                      reason=self.reason, record_id=self.record_id).id

    def undo(self, ws: Workspace) -> None:
        if self.record_id is not None:
            ws.remove_label(self.record_id)


@dataclass
class SetReview(Command):
    image_id: int
    state: str
    author: str
    note: str | None = None
    previous: tuple[str, str, str | None, float | None] | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"mark {self.state}" if self.note is None else "edit note"

    def redo(self, ws: Workspace) -> None:
        self.previous = ws.set_review(self.image_id, self.state, author=self.author, note=self.note)

    def undo(self, ws: Workspace) -> None:
        if self.previous is not None:
            ws.restore_review(self.image_id, self.previous)


@dataclass
class _BoxCommand(Command):
    """Shared take-over: the first human box edit on an image copies its dataset boxes."""

    image_id: int
    author: str
    taken_over: list[int] = field(default_factory=list)

    def _take_over(self, ws: Workspace) -> dict[int, int]:
        """{dataset box id: its human copy id} (copies made now or earlier)."""
        self.taken_over = ws.take_over_boxes(self.image_id, author=self.author)
        return {b.origin_id: b.id for b in ws.boxes(self.image_id, source="human", include_deleted=True)
                if b.origin_id is not None}

    def _resolve(self, ws: Workspace, box_id: int) -> int:
        box = ws.box(box_id)
        if box.source == "human":
            return box_id
        copies = self._take_over(ws)
        if box_id not in copies:
            raise WorkspaceError(f"box {box_id} has no human copy")
        return copies[box_id]

    def _release(self, ws: Workspace) -> None:
        if self.taken_over:
            ws.undo_take_over(self.image_id, self.taken_over)
            self.taken_over = []


@dataclass
class AddBox(_BoxCommand):
    finding: str = ""
    rect: Rect = (0.0, 0.0, 1.0, 1.0)
    box_id: int | None = None
    accepted_from: str | None = None  # the model whose box the person accepted (None: drawn)
    text = "add box"

    def redo(self, ws: Workspace) -> None:
        self._take_over(ws)
        self.box_id = ws.add_box(self.image_id, self.finding, self.rect, author=self.author,
                                 box_id=self.box_id, accepted_from=self.accepted_from)

    def undo(self, ws: Workspace) -> None:
        if self.box_id is not None:
            ws.purge_box(self.box_id)
        self._release(ws)


@dataclass
class EditBox(_BoxCommand):
    """Move/resize (``rect``) and/or relabel (``finding``) one box; dataset boxes via their copy."""

    box_id: int = 0
    rect: Rect | None = None
    finding: str | None = None
    gesture: object | None = None  # same gesture → one undo step
    target_id: int | None = None
    old_rect: Rect | None = None
    old_finding: str | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return "change box finding" if self.rect is None else "move box"

    def redo(self, ws: Workspace) -> None:
        self.target_id = self._resolve(ws, self.box_id)
        before = ws.box(self.target_id)
        self.old_rect, self.old_finding = before.rect(), before.finding
        ws.update_box(self.target_id, rect=self.rect, finding=self.finding)

    def undo(self, ws: Workspace) -> None:
        if self.target_id is not None:
            ws.update_box(self.target_id, rect=self.old_rect, finding=self.old_finding)
        self._release(ws)

    def merge_key(self) -> object | None:
        return None if self.gesture is None else ("box", self.box_id, self.gesture)

    def merge(self, later: Command) -> None:
        assert isinstance(later, EditBox)
        # keep our "before" state; take the later command's "after" state
        self.rect = later.rect if later.rect is not None else self.rect
        self.finding = later.finding if later.finding is not None else self.finding


@dataclass
class DeleteBox(_BoxCommand):
    box_id: int = 0
    target_id: int | None = None
    text = "delete box"

    def redo(self, ws: Workspace) -> None:
        self.target_id = self._resolve(ws, self.box_id)
        ws.set_box_deleted(self.target_id, True)

    def undo(self, ws: Workspace) -> None:
        if self.target_id is not None:
            ws.set_box_deleted(self.target_id, False)
        self._release(ws)


class UndoStack:
    """Linear undo/redo history over one workspace; listeners hear about every change."""

    def __init__(self, ws: Workspace, limit: int = 500) -> None:
        self.ws = ws
        self.limit = limit
        self._done: list[Command] = []
        self._undone: list[Command] = []
        self._editing = 0
        self._listeners: list[Callable[[Command | None], None]] = []

    def add_listener(self, fn: Callable[[Command | None], None]) -> None:
        self._listeners.append(fn)

    def _changed(self, command: Command | None) -> None:
        for fn in list(self._listeners):
            fn(command)

    def push(self, command: Command) -> None:
        """Apply ``command`` (one transaction) and record it; merges with the previous step
        when both carry the same merge key. A failing command changes nothing and is not recorded."""
        command.redo(self.ws)
        key = command.merge_key()
        if key is not None and self._done and self._done[-1].merge_key() == key:
            self._done[-1].merge(command)
        else:
            self._done.append(command)
            del self._done[:-self.limit]
        self._undone.clear()
        self._changed(command)

    def undo(self) -> Command | None:
        if not self._done:
            return None
        command = self._done.pop()
        command.undo(self.ws)
        self._undone.append(command)
        self._changed(command)
        return command

    def redo(self) -> Command | None:
        if not self._undone:
            return None
        command = self._undone.pop()
        command.redo(self.ws)
        self._done.append(command)
        self._changed(command)
        return command

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo_text(self) -> str:
        return self._done[-1].text if self._done else ""

    def redo_text(self) -> str:
        return self._undone[-1].text if self._undone else ""

    def clear(self) -> None:
        self._done.clear()
        self._undone.clear()
        self._changed(None)

    # -- pending state -------------------------------------------------------------------
    def begin_edit(self) -> None:
        """An edit is under way (e.g. a box being dragged) and not yet committed."""
        self._editing += 1
        self._changed(None)

    def end_edit(self) -> None:
        self._editing = max(0, self._editing - 1)
        self._changed(None)

    def is_dirty(self) -> bool:
        """Anything not yet in the database? Only an edit in progress: pushes commit at once."""
        return self._editing > 0

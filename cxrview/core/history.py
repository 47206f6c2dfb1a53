"""A small Qt-free undo history for reading marks (the review's own is ``core.commands``).

The same pattern as ADR 0005: each command applies itself to the store at once (``redo``)
and takes itself back exactly (``undo``); pushing commits, so nothing is ever unsaved. The
review's stack is bound to a workspace; reading marks live in the per-user
:class:`~cxrview.core.annotation_store.AnnotationStore`, hence this one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from cxrview.core.annotation_store import AnnotationStore
from cxrview.core.measure import TITLES, Annotation


class MarkCommand:
    """One edit of one image's marks."""

    content_hash: str
    text: str = "edit"

    def redo(self, store: AnnotationStore) -> None:
        raise NotImplementedError

    def undo(self, store: AnnotationStore) -> None:
        raise NotImplementedError


@dataclass
class AddMarks(MarkCommand):
    content_hash: str
    marks: list[Annotation]
    image_path: str = ""
    _seq: int | None = None

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"add {TITLES[self.marks[0].kind].lower()}" if len(self.marks) == 1 else "add marks"

    def redo(self, store: AnnotationStore) -> None:
        store.put(self.content_hash, self.marks, image_path=self.image_path, seq=self._seq)
        self._seq = store.sequence_of(self.marks[0].uid)

    def undo(self, store: AnnotationStore) -> None:
        store.remove(m.uid for m in self.marks)


@dataclass
class RemoveMarks(MarkCommand):
    content_hash: str
    marks: list[Annotation]
    image_path: str = ""
    _seqs: dict[str, int | None] = field(default_factory=dict)

    @property
    def text(self) -> str:  # type: ignore[override]
        return f"delete {TITLES[self.marks[0].kind].lower()}" if len(self.marks) == 1 else "delete marks"

    def redo(self, store: AnnotationStore) -> None:
        self._seqs = {m.uid: store.sequence_of(m.uid) for m in self.marks}
        store.remove(m.uid for m in self.marks)

    def undo(self, store: AnnotationStore) -> None:
        for mark in self.marks:  # back in their old places in the list
            store.put(self.content_hash, [mark], image_path=self.image_path, seq=self._seqs.get(mark.uid))


@dataclass
class ReplaceMark(MarkCommand):
    """A moved (or re-worded) mark: the same uid with new points or text."""

    content_hash: str
    before: Annotation
    after: Annotation

    text = "move mark"

    def redo(self, store: AnnotationStore) -> None:
        store.put(self.content_hash, [self.after], seq=store.sequence_of(self.after.uid))

    def undo(self, store: AnnotationStore) -> None:
        store.put(self.content_hash, [self.before], seq=store.sequence_of(self.before.uid))


class MarkHistory:
    """Linear undo/redo over the store; listeners hear the command of every change."""

    def __init__(self, store: AnnotationStore, limit: int = 500) -> None:
        self.store = store
        self.limit = limit
        self._done: list[MarkCommand] = []
        self._undone: list[MarkCommand] = []
        self._listeners: list[Callable[[MarkCommand], None]] = []

    def add_listener(self, fn: Callable[[MarkCommand], None]) -> None:
        self._listeners.append(fn)

    def _tell(self, command: MarkCommand) -> None:
        for fn in list(self._listeners):
            fn(command)

    def push(self, command: MarkCommand) -> None:
        """Apply and record ``command``; a store error propagates and records nothing."""
        command.redo(self.store)
        self._done.append(command)
        del self._done[:-self.limit]
        self._undone.clear()
        self._tell(command)

    def can_undo(self) -> bool:
        return bool(self._done)

    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo_text(self) -> str | None:
        return self._done[-1].text if self._done else None

    def redo_text(self) -> str | None:
        return self._undone[-1].text if self._undone else None

    def undo(self) -> MarkCommand | None:
        if not self._done:
            return None
        command = self._done[-1]
        command.undo(self.store)
        self._undone.append(self._done.pop())
        self._tell(command)
        return command

    def redo(self) -> MarkCommand | None:
        if not self._undone:
            return None
        command = self._undone[-1]
        command.redo(self.store)
        self._done.append(self._undone.pop())
        self._tell(command)
        return command

"""Boxes of a workspace: the dataset's, the humans', and model boxes a human accepted.

* Dataset boxes are never changed. The first human box edit of an image copies
  them as human boxes (``origin`` names the dataset box); from then on the human
  set (human and accepted model boxes) is the image's answer.
* Every box has a stable ``uid`` (commands refer to it; a row id can be reused by
  SQLite after a delete) and a row ``version`` bumped by every change, so an undo
  or redo changes a box back only if nobody changed it since (:class:`EditConflict`
  otherwise: their work stays).
* An update writes only what it changes (a move never writes the finding back, a
  relabel never the geometry), in one transaction with its audit event.
* Boxes are clamped to the image's frame: NIH's 1024 × 1024 for NIH images, else the
  image's recorded size.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from cxrview.core import audit
from cxrview.core.findings import FINDING_BIT, NIH_BOX_FRAME
from cxrview.core.review_rules import follow_review_state
from cxrview.core.store import EditConflict, Store, WorkspaceError

BOXES_SCHEMA = """
CREATE TABLE IF NOT EXISTS boxes (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    image_id INTEGER NOT NULL REFERENCES images(id),
    finding TEXT NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('dataset', 'human', 'model')),
    author TEXT, created REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    origin TEXT,
    model TEXT,
    version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS boxes_image ON boxes(image_id);
"""

BOX_SOURCES = ("dataset", "human", "model")
HUMAN_SET = ("human", "model")  # a human's answer: drawn, copied or accepted model boxes
Rect = tuple[float, float, float, float]

BOX_COLUMNS = ("id, image_id, finding, x, y, w, h, source, author, created, deleted, origin, uid, model, "
               "version")


@dataclass(frozen=True)
class BoxRecord:
    id: int
    image_id: int
    finding: str
    x: float
    y: float
    w: float
    h: float
    source: str  # "dataset" | "human" | "model" (a model box a human accepted)
    author: str | None
    created: float
    deleted: bool
    origin: str | None  # uid of the dataset box a human copy was made from
    uid: str = ""
    model: str | None = None  # the model that drew an accepted box
    version: int = 0

    def rect(self) -> Rect:
        return (self.x, self.y, self.w, self.h)


def box_from_row(row: tuple[Any, ...]) -> BoxRecord:
    values = list(row)
    values[10] = bool(values[10])
    return BoxRecord(*values)


def _state(box: BoxRecord) -> dict[str, Any]:
    return {"finding": box.finding, "rect": list(box.rect()), "deleted": box.deleted}


def _frame(conn: sqlite3.Connection, image_id: int) -> tuple[float, float] | None:
    row = conn.execute("SELECT dataset_labelled, width, height FROM images WHERE id = ?",
                       (image_id,)).fetchone()
    if row is None:
        raise WorkspaceError(f"no image with id {image_id}")
    if row[0]:
        return (float(NIH_BOX_FRAME), float(NIH_BOX_FRAME))
    return (float(row[1]), float(row[2])) if row[1] and row[2] else None


def clamp(rect: Rect, frame: tuple[float, float] | None) -> Rect:
    """``rect`` cut to the frame (nothing outside the image is ever stored)."""
    x, y, w, h = (float(v) for v in rect)
    if any(v != v for v in (x, y, w, h)):  # NaN
        raise WorkspaceError("a box needs numeric coordinates")
    if frame is not None and (x < 0 or y < 0 or x + w > frame[0] or y + h > frame[1]):
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(frame[0], x + w), min(frame[1], y + h)
        x, y, w, h = x0, y0, x1 - x0, y1 - y0  # only a box that sticks out is changed (bit-exact otherwise)
    if w <= 0 or h <= 0:
        raise WorkspaceError("a box needs a positive width and height inside the image")
    return (x, y, w, h)


class BoxStore(Store):
    """The box half of :class:`~cxrview.core.workspace.Workspace`."""

    def boxes(self, image_id: int, *, source: str | tuple[str, ...] | None = None,
              include_deleted: bool = False) -> list[BoxRecord]:
        sql = f"SELECT {BOX_COLUMNS} FROM boxes WHERE image_id = ?"
        params: list[Any] = [image_id]
        if source is not None:
            sources = (source,) if isinstance(source, str) else source
            sql += f" AND source IN ({','.join('?' * len(sources))})"
            params += list(sources)
        if not include_deleted:
            sql += " AND deleted = 0"
        return [box_from_row(r) for r in self.fetchall(sql + " ORDER BY id", params)]

    def answer_boxes(self, image_id: int) -> list[BoxRecord]:
        """The boxes that count: the human set once a human edited this image's boxes, else the dataset's."""
        edited = self.execute("SELECT boxes_edited FROM images WHERE id = ?", (image_id,)).fetchone()
        return self.boxes(image_id, source=HUMAN_SET if edited and edited[0] else "dataset")

    def box(self, uid: str) -> BoxRecord:
        row = self.execute(f"SELECT {BOX_COLUMNS} FROM boxes WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no box {uid}")
        return box_from_row(row)

    def box_by_id(self, box_id: int) -> BoxRecord:
        row = self.execute(f"SELECT {BOX_COLUMNS} FROM boxes WHERE id = ?", (box_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no box with id {box_id}")
        return box_from_row(row)

    @staticmethod
    def _row(conn: sqlite3.Connection, uid: str) -> BoxRecord:
        row = conn.execute(f"SELECT {BOX_COLUMNS} FROM boxes WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no box {uid}")
        return box_from_row(row)

    @staticmethod
    def _check(box: BoxRecord, expect_version: int | None) -> None:
        if box.source == "dataset":
            raise WorkspaceError("dataset boxes are kept as they were; edit a human copy")
        if expect_version is not None and box.version != expect_version:
            raise EditConflict(f"this {box.finding} box was changed since by someone else; their change "
                               "is kept")

    def take_over_boxes(self, image_id: int, *, author: str, command: str | None = None, via: str = "do",
                        uids: dict[str, str] | None = None) -> list[str]:
        """First human box edit on an image: copy its dataset boxes as human boxes (their uids).
        ``uids`` (dataset box uid → copy uid) makes the copies again under the same names (redo)."""
        from cxrview.core.workspace import new_uid

        with self.transaction() as conn:
            edited = conn.execute("SELECT boxes_edited FROM images WHERE id = ?", (image_id,)).fetchone()
            if edited is None:
                raise WorkspaceError(f"no image with id {image_id}")
            if edited[0]:
                return []
            now = time.time()
            made = []
            for row in conn.execute("SELECT uid, finding, x, y, w, h FROM boxes WHERE image_id = ? AND "
                                    "source = 'dataset' AND deleted = 0 ORDER BY id", (image_id,)).fetchall():
                uid = (uids or {}).get(row[0]) or new_uid()
                conn.execute("INSERT INTO boxes(uid, image_id, finding, x, y, w, h, source, author, created, "
                             "origin) VALUES (?, ?, ?, ?, ?, ?, ?, 'human', ?, ?, ?)",
                             (uid, image_id, row[1], row[2], row[3], row[4], row[5], author, now, row[0]))
                audit.record(conn, author=author, image_id=image_id, action="box.takeover", target=uid,
                             before={"origin": row[0]},
                             after={"finding": row[1], "rect": list(row[2:6]), "deleted": False},
                             command=command, via=via, at=now)
                made.append(uid)
            conn.execute("UPDATE images SET boxes_edited = 1 WHERE id = ?", (image_id,))
            self._follow(conn, image_id, author, command, via)
            return made

    def undo_take_over(self, image_id: int, uids: list[str], *, author: str = "", command: str | None = None,
                       via: str = "undo") -> bool:
        """Back to the dataset's boxes, only if the image's human set is still exactly these untouched
        copies (anyone's later box work keeps the copies: they equal the dataset boxes anyway).
        Returns whether it went back."""
        with self.transaction() as conn:
            rows = conn.execute("SELECT uid, version, deleted FROM boxes WHERE image_id = ? AND source != "
                                "'dataset'", (image_id,)).fetchall()
            if {r[0] for r in rows} != set(uids) or any(r[1] != 0 or r[2] for r in rows):
                return False
            for uid in uids:
                box = self._row(conn, uid)
                conn.execute("DELETE FROM boxes WHERE uid = ?", (uid,))
                audit.record(conn, author=author or "unknown", image_id=image_id, action="box.remove",
                             target=uid, before=_state(box), command=command, via=via)
            conn.execute("UPDATE images SET boxes_edited = 0 WHERE id = ?", (image_id,))
            self._follow(conn, image_id, author, command, via)
            return True

    def add_box(self, image_id: int, finding: str, rect: Rect, *, author: str, source: str = "human",
                origin: str | None = None, uid: str | None = None, model: str | None = None,
                command: str | None = None, via: str = "do") -> str:
        """A new box (its uid; give the same ``uid`` again to redo an undone add)."""
        from cxrview.core.workspace import new_uid

        if finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        if source not in BOX_SOURCES:
            raise WorkspaceError(f"box source must be one of {', '.join(BOX_SOURCES)}")
        uid = uid or new_uid()
        with self.transaction() as conn:
            x, y, w, h = clamp(rect, _frame(conn, image_id))
            conn.execute("INSERT INTO boxes(uid, image_id, finding, x, y, w, h, source, author, created, "
                         "origin, model) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (uid, image_id, finding, x, y, w, h, source, author, time.time(), origin, model))
            if source != "dataset":
                conn.execute("UPDATE images SET boxes_edited = 1 WHERE id = ?", (image_id,))
                audit.record(conn, author=author, image_id=image_id, action="box.add", target=uid,
                             after={"finding": finding, "rect": [x, y, w, h], "deleted": False},
                             note=f"accepted from {model}" if source == "model" else None,
                             model=model, command=command, via=via)
                self._follow(conn, image_id, author, command, via)
            return uid

    def update_box(self, uid: str, *, rect: Rect | None = None, finding: str | None = None,
                   expect_version: int | None = None, set_version: int | None = None, author: str = "",
                   command: str | None = None, via: str = "do") -> int:
        """Move/resize (``rect``) and/or relabel (``finding``) a human box, writing only what changes.
        ``expect_version``: refuse (EditConflict) unless the box is still at it; ``set_version``: the
        version to leave (an undo puts back the one before its edit). Returns the box's version."""
        if finding is not None and finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        with self.transaction() as conn:
            box = self._row(conn, uid)
            self._check(box, expect_version)
            before: dict[str, Any] = {}
            after: dict[str, Any] = {}
            if rect is not None:
                x, y, w, h = clamp(rect, _frame(conn, box.image_id))
                conn.execute("UPDATE boxes SET x = ?, y = ?, w = ?, h = ? WHERE uid = ?", (x, y, w, h, uid))
                before["rect"], after["rect"] = list(box.rect()), [x, y, w, h]
            if finding is not None:
                conn.execute("UPDATE boxes SET finding = ? WHERE uid = ?", (finding, uid))
                before["finding"], after["finding"] = box.finding, finding
            version = box.version + 1 if set_version is None else set_version
            conn.execute("UPDATE boxes SET version = ? WHERE uid = ?", (version, uid))
            action = "box.move" if finding is None else "box.relabel" if rect is None else "box.edit"
            audit.record(conn, author=author or "unknown", image_id=box.image_id, action=action, target=uid,
                         before=before, after={**after, "finding": finding or box.finding},
                         command=command, via=via)
            return version

    def set_box_deleted(self, uid: str, deleted: bool, *, expect_version: int | None = None,
                        set_version: int | None = None, author: str = "", command: str | None = None,
                        via: str = "do") -> int:
        with self.transaction() as conn:
            box = self._row(conn, uid)
            self._check(box, expect_version)
            version = box.version + 1 if set_version is None else set_version
            conn.execute("UPDATE boxes SET deleted = ?, version = ? WHERE uid = ?",
                         (int(deleted), version, uid))
            audit.record(conn, author=author or "unknown", image_id=box.image_id,
                         action="box.delete" if deleted else "box.restore", target=uid,
                         before=_state(box), after={**_state(box), "deleted": deleted}, command=command,
                         via=via)
            return version

    def purge_box(self, uid: str, *, expect_version: int | None = None, author: str = "",
                  command: str | None = None, via: str = "undo") -> None:
        """Remove a human box entirely (undo of adding it), unless someone changed it since."""
        with self.transaction() as conn:
            row = conn.execute(f"SELECT {BOX_COLUMNS} FROM boxes WHERE uid = ?", (uid,)).fetchone()
            if row is None:
                return
            box = box_from_row(row)
            self._check(box, expect_version)
            conn.execute("DELETE FROM boxes WHERE uid = ?", (uid,))
            audit.record(conn, author=author or "unknown", image_id=box.image_id, action="box.remove",
                         target=uid, before=_state(box), command=command, via=via)

    @staticmethod
    def _follow(conn: sqlite3.Connection, image_id: int, author: str, command: str | None, via: str) -> None:
        follow_review_state(conn, image_id, author=author, command=command, via=via)

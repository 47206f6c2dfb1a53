"""The append-only audit log: every decision, who made it, when, before → after, and why.

Each change a workspace makes writes one row in ``audit`` *in the same transaction*
as the change itself, so the log and the decisions can never disagree (a killed
process loses both or neither). SQLite triggers refuse any UPDATE or DELETE of the
table: the log only grows.

A row: ``seq`` (commit order), ``at`` (time), ``author`` (the annotator's name),
``image_id`` and ``image`` (its file name, stable across merged workspaces),
``action`` (``label``, ``review``, ``note``, ``box.add``, ``box.move``,
``box.relabel``, ``box.delete``, ``box.restore``, ``box.remove``, ``box.takeover``,
``dataset``, ``merge``, ``unmerge``), ``target`` (the finding, or the box's id),
``before`` and ``after`` (JSON), ``reason``, ``note``, ``model`` (the model whose
opinion the panel showed when the decision was made), ``command`` (the edit's id)
and ``via``: ``do`` for an edit, ``undo`` / ``redo`` when an edit is taken back or
made again — an undo is its own event, never an erasure — and ``merge`` /
``adjudication`` / ``import`` for those paths.

:func:`replay_problems` rebuilds the labels, review states and boxes from the log
alone and lists where they differ from the tables (empty when they agree).
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrview.core.workspace import Workspace

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    author TEXT NOT NULL,
    image_id INTEGER,
    image TEXT,
    action TEXT NOT NULL,
    target TEXT,
    before TEXT,
    after TEXT,
    reason TEXT,
    note TEXT,
    model TEXT,
    command TEXT,
    via TEXT NOT NULL DEFAULT 'do'
);
CREATE INDEX IF NOT EXISTS audit_image ON audit(image_id, seq);
CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

VIAS = ("do", "undo", "redo", "merge", "adjudication", "import")


@dataclass(frozen=True)
class AuditEvent:
    seq: int
    at: float
    author: str
    image_id: int | None
    image: str | None
    action: str
    target: str | None
    before: Any
    after: Any
    reason: str | None
    note: str | None
    model: str | None
    command: str | None
    via: str

    def describe(self) -> str:
        """One line for the history list, e.g. "Effusion: present → absent (not visible)"."""
        what = _words(self.action, self.target, self.before, self.after)
        extra = [x for x in (self.reason, self.note) if x]
        if self.via in ("undo", "redo"):
            what = f"{self.via}: {what}"
        elif self.via not in ("do",):
            what = f"{what} [{self.via}]"
        return what + (f" ({'; '.join(extra)})" if extra else "")


def _value(data: Any) -> str:
    if isinstance(data, dict):
        if "value" in data:
            return str(data["value"] if data["value"] is not None else "—")
        if "state" in data:
            return str(data["state"])
        if "finding" in data and "rect" not in data:
            return str(data["finding"])
    return "—" if data is None else json.dumps(data)


def _words(action: str, target: str | None, before: Any, after: Any) -> str:
    if action == "label":
        return f"{target}: {_value(before)} → {_value(after)}"
    if action == "review":
        return f"review: {_value(before)} → {_value(after)}"
    if action == "note":
        old = (before or {}).get("note", "") if isinstance(before, dict) else ""
        new = (after or {}).get("note", "") if isinstance(after, dict) else ""
        return f"note: “{old}” → “{new}”"
    if action.startswith("box."):
        finding = (after or before or {}).get("finding", "") if isinstance(after or before, dict) else ""
        return f"{action.removeprefix('box.')} box {finding}".strip()
    return f"{action} {target or ''}".strip()


def record(conn: sqlite3.Connection, *, author: str, image_id: int | None, action: str,
           target: str | None = None, before: Any = None, after: Any = None, reason: str | None = None,
           note: str | None = None, model: str | None = None, command: str | None = None,
           via: str = "do", at: float | None = None) -> None:
    """Append one event (call inside the transaction that makes the change)."""
    image = None
    if image_id is not None:
        row = conn.execute("SELECT file FROM images WHERE id = ?", (image_id,)).fetchone()
        image = row[0] if row else None
    conn.execute("INSERT INTO audit(at, author, image_id, image, action, target, before, after, reason, "
                 "note, model, command, via) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (time.time() if at is None else at, author, image_id, image, action, target,
                  None if before is None else json.dumps(before),
                  None if after is None else json.dumps(after), reason, note, model, command, via))


COLUMNS = "seq, at, author, image_id, image, action, target, before, after, reason, note, model, command, via"


def _event(row: tuple[Any, ...]) -> AuditEvent:
    values = list(row)
    for i in (7, 8):
        values[i] = None if values[i] is None else json.loads(values[i])
    return AuditEvent(*values)


def history(ws: Workspace, image_id: int) -> list[AuditEvent]:
    """Every event of one image, oldest first."""
    return [_event(r) for r in ws.fetchall(f"SELECT {COLUMNS} FROM audit WHERE image_id = ? ORDER BY seq",
                                           (image_id,))]


def events(ws: Workspace, *, since: int = 0, limit: int | None = None) -> list[AuditEvent]:
    sql = f"SELECT {COLUMNS} FROM audit WHERE seq > ? ORDER BY seq"
    params: list[Any] = [since]
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    return [_event(r) for r in ws.fetchall(sql, params)]


def replay_problems(ws: Workspace) -> list[str]:
    """Rebuild decisions from the log alone and compare with the tables; [] when they agree.

    Labels: a ``label`` event's ``after.uid`` row exists unless a later event undid it (its
    ``before.uid`` is the row it replaced, which stays). Review: the last ``review`` / ``note``
    event's state and note. Boxes: the last geometry, finding and deletion per box id.
    """
    labels: dict[str, tuple[int, str, str]] = {}  # uid → (image, finding, value)
    review: dict[int, tuple[str, str]] = {}
    boxes: dict[str, dict[str, Any]] = {}
    for (_seq, _at, _author, image_id, _image, action, target, before_s, after_s, _reason, _note, _model,
         _command, via) in ws.execute(f"SELECT {COLUMNS} FROM audit ORDER BY seq"):
        before = json.loads(before_s) if before_s else None
        after = json.loads(after_s) if after_s else None
        if action == "label":
            if via == "undo":  # the undone row goes; the decision shown again is a row that stayed
                labels.pop((before or {}).get("uid") or "", None)
            elif after and after.get("uid") and image_id is not None:
                labels[after["uid"]] = (int(image_id), str(target), str(after["value"]))
        elif action in ("review", "note") and image_id is not None and after:
            review[int(image_id)] = (str(after.get("state")), str(after.get("note", "")))
        elif action.startswith("box.") and target:
            if action == "box.remove":
                boxes.pop(target, None)
            elif after:
                boxes.setdefault(target, {}).update(after)
    problems: list[str] = []
    stored = {uid: (image_id, finding, value) for uid, image_id, finding, value in
              ws.execute("SELECT uid, image_id, finding, value FROM labels")}
    for uid in sorted(set(stored) ^ set(labels)):
        where = "in the labels table only" if uid in stored else "in the audit log only"
        problems.append(f"label {uid}: {where}")
    for uid in set(stored) & set(labels):
        if stored[uid] != labels[uid]:
            problems.append(f"label {uid}: table {stored[uid]} vs log {labels[uid]}")
    for image_id, (state, note) in review.items():
        row = ws.execute("SELECT review_state, note FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None or (row[0], row[1]) != (state, note):
            problems.append(f"image {image_id}: review {row} vs log {(state, note)}")
    for uid, expected in boxes.items():
        row = ws.execute("SELECT finding, x, y, w, h, deleted FROM boxes WHERE uid = ?", (uid,)).fetchone()
        if row is None:
            problems.append(f"box {uid}: in the audit log only")
            continue
        actual = {"finding": row[0], "rect": [row[1], row[2], row[3], row[4]], "deleted": bool(row[5])}
        for key in ("finding", "rect", "deleted"):
            if key in expected and expected[key] != actual[key]:
                problems.append(f"box {uid}: {key} {actual[key]} vs log {expected[key]}")
    human = {uid for (uid,) in ws.execute("SELECT uid FROM boxes WHERE source != 'dataset'")}
    for uid in sorted(human - set(boxes)):
        problems.append(f"box {uid}: in the boxes table only")
    return problems

"""The workspace's tables (schema version 2) and the upgrade from version 1.

Version 2 names every human decision and box with a stable ``uid`` (row ids are
reused by SQLite after a delete, so an undone-then-redone edit could collide with
someone else's new row), adds row versions (``images.review_version``,
``boxes.version``) for optimistic checks, accepted model boxes (``source = 'model'``),
the audit log and the saved undo history. The upgrade runs in one transaction and
writes an ``import`` audit event for every decision that existed before the log did,
so the log and the decisions agree from the first day.
"""

from __future__ import annotations

import json
import sqlite3

SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,
    path TEXT NOT NULL,
    present INTEGER NOT NULL DEFAULT 1,
    patient_id INTEGER, follow_up INTEGER, age INTEGER, sex TEXT, view TEXT,
    width INTEGER, height INTEGER,
    dataset_labelled INTEGER NOT NULL DEFAULT 0,
    dataset_mask INTEGER NOT NULL DEFAULT 0,
    current_mask INTEGER NOT NULL DEFAULT 0,
    uncertain_mask INTEGER NOT NULL DEFAULT 0,
    human_mask INTEGER NOT NULL DEFAULT 0,
    review_state TEXT NOT NULL DEFAULT 'unreviewed',
    note TEXT NOT NULL DEFAULT '',
    reviewed_by TEXT, reviewed_at REAL,
    boxes_edited INTEGER NOT NULL DEFAULT 0,
    triage_score REAL, mislabel_score REAL,
    suspect_finding TEXT, suspect_label TEXT, suspect_probability REAL,
    model_disagreements INTEGER,
    scored_model TEXT,
    review_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS images_patient ON images(patient_id, follow_up);
CREATE INDEX IF NOT EXISTS images_state ON images(review_state);
CREATE INDEX IF NOT EXISTS images_triage ON images(triage_score);
CREATE INDEX IF NOT EXISTS images_mislabel ON images(mislabel_score);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    image_id INTEGER NOT NULL REFERENCES images(id),
    finding TEXT NOT NULL,
    value TEXT NOT NULL CHECK (value IN ('present', 'absent', 'uncertain')),
    author TEXT NOT NULL,
    reason TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id, finding, id);
CREATE TABLE IF NOT EXISTS predictions (
    image_id INTEGER NOT NULL REFERENCES images(id),
    model TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    out_of_sample INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (image_id, model)
);
CREATE TABLE IF NOT EXISTS undo_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('done', 'undone')),
    command TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS undo_history_author ON undo_history(author, seq);
"""

_V2_LABELS = """
CREATE TABLE labels_v2 (
    id INTEGER PRIMARY KEY,
    uid TEXT NOT NULL UNIQUE,
    image_id INTEGER NOT NULL REFERENCES images(id),
    finding TEXT NOT NULL,
    value TEXT NOT NULL CHECK (value IN ('present', 'absent', 'uncertain')),
    author TEXT NOT NULL,
    reason TEXT,
    created REAL NOT NULL
);
INSERT INTO labels_v2(id, uid, image_id, finding, value, author, reason, created)
    SELECT id, lower(hex(randomblob(16))), image_id, finding, value, author, reason, created FROM labels;
DROP TABLE labels;
ALTER TABLE labels_v2 RENAME TO labels;
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id, finding, id);
"""

_V2_BOXES = """
CREATE TABLE boxes_v2 (
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
INSERT INTO boxes_v2(id, uid, image_id, finding, x, y, w, h, source, author, created, deleted)
    SELECT id, lower(hex(randomblob(16))), image_id, finding, x, y, w, h, source, author, created, deleted
    FROM boxes;
UPDATE boxes_v2 SET origin = (SELECT d.uid FROM boxes_v2 d WHERE d.id =
    (SELECT o.origin_id FROM boxes o WHERE o.id = boxes_v2.id));
DROP TABLE boxes;
ALTER TABLE boxes_v2 RENAME TO boxes;
CREATE INDEX IF NOT EXISTS boxes_image ON boxes(image_id);
"""


def _run(conn: sqlite3.Connection, script: str) -> None:
    """``executescript`` would COMMIT the open transaction; run the statements one by one in it."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Upgrade a version-1 workspace in place (inside the caller's transaction)."""
    from cxrview.core import audit

    if version >= SCHEMA_VERSION:
        return
    conn.execute("ALTER TABLE images ADD COLUMN review_version INTEGER NOT NULL DEFAULT 0")
    _run(conn, _V2_LABELS)
    _run(conn, _V2_BOXES)
    _run(conn, audit.SCHEMA.split("CREATE TRIGGER")[0])  # the table now; triggers when the schema runs
    labels = conn.execute("SELECT image_id, finding, value, author, reason, created, uid FROM labels "
                          "ORDER BY id").fetchall()
    for image_id, finding, value, author, reason, created, uid in labels:
        audit.record(conn, author=author, image_id=image_id, action="label", target=finding,
                     after={"value": value, "uid": uid}, reason=reason, via="import", at=created)
    for uid, image_id, finding, x, y, w, h, deleted, author, created in conn.execute(
            "SELECT uid, image_id, finding, x, y, w, h, deleted, author, created FROM boxes "
            "WHERE source != 'dataset' ORDER BY id").fetchall():
        audit.record(conn, author=author or "unknown", image_id=image_id, action="box.add", target=uid,
                     after={"finding": finding, "rect": [x, y, w, h], "deleted": bool(deleted)}, via="import",
                     at=created)
    for image_id, state, note, by, at in conn.execute(
            "SELECT id, review_state, note, reviewed_by, reviewed_at FROM images "
            "WHERE review_state != 'unreviewed' OR note != ''").fetchall():
        audit.record(conn, author=by or "unknown", image_id=image_id, action="review",
                     after={"state": state, "note": note}, via="import", at=at)
    meta = "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"
    conn.execute(meta, ("schema_version", str(SCHEMA_VERSION)))
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('workspace_id', lower(hex(randomblob(16))))")
    conn.execute(meta, ("upgraded_from", json.dumps(version)))

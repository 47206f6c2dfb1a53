"""A review workspace: a set of images plus one SQLite database of everything people did.

The images are never modified. The database (WAL mode, ``synchronous=FULL``)
keeps, side by side, what the dataset said, what a model predicted and what a
human decided:

* ``images``: one row per image (file name, where it is, patient, view, …),
  its dataset labels as a bit mask over :data:`NIH_FINDINGS`, the *current*
  labels (human decision where there is one, else the dataset's) as masks kept
  in step with every edit, its review state and note, and the latest triage and
  mislabel scores.
* ``labels``: human decisions, one row each (who, when, value, reason). A
  correction is a new row; the dataset label is never overwritten. Undo removes
  exactly the row the edit added.
* ``boxes``: dataset boxes and human boxes (with the dataset box they started
  from). Once a human edits an image's boxes, its human boxes are its answer. A model's box a
  person accepted is a human box (the person decided it) that keeps where it came from
  (``accepted_from``: the model's identity), so it is never mistaken for one drawn by hand.
* ``predictions``: per image and model, the 14 probabilities and whether the
  model had trained on that image (mislabel scores trust only out-of-sample ones).

Every edit is one transaction: a process killed at any moment loses at most
the edit in flight, and the database stays consistent.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrview.core.findings import (
    ABSENT,
    FINDING_BIT,
    LABEL_VALUES,
    NIH_FINDINGS,
    PRESENT,
    REASON_CODES,
    REVIEW_STATES,
    UNCERTAIN,
    UNREVIEWED,
)

SCHEMA_VERSION = 1
DB_NAME = "cxrview.workspace.sqlite"

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
    scored_model TEXT
);
CREATE INDEX IF NOT EXISTS images_patient ON images(patient_id, follow_up);
CREATE INDEX IF NOT EXISTS images_state ON images(review_state);
CREATE INDEX IF NOT EXISTS images_triage ON images(triage_score);
CREATE INDEX IF NOT EXISTS images_mislabel ON images(mislabel_score);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    finding TEXT NOT NULL,
    value TEXT NOT NULL CHECK (value IN ('present', 'absent', 'uncertain')),
    author TEXT NOT NULL,
    reason TEXT,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_image ON labels(image_id, finding, id);
CREATE TABLE IF NOT EXISTS boxes (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id),
    finding TEXT NOT NULL,
    x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
    source TEXT NOT NULL CHECK (source IN ('dataset', 'human')),
    author TEXT, created REAL NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    origin_id INTEGER,
    accepted_from TEXT
);
CREATE INDEX IF NOT EXISTS boxes_image ON boxes(image_id);
CREATE TABLE IF NOT EXISTS predictions (
    image_id INTEGER NOT NULL REFERENCES images(id),
    model TEXT NOT NULL,
    probabilities TEXT NOT NULL,
    out_of_sample INTEGER,
    created REAL NOT NULL,
    PRIMARY KEY (image_id, model)
);
"""

IMAGE_COLUMNS = ("id, file, path, present, patient_id, follow_up, age, sex, view, width, height, "
                 "dataset_labelled, dataset_mask, current_mask, uncertain_mask, human_mask, review_state, "
                 "note, reviewed_by, reviewed_at, boxes_edited, triage_score, mislabel_score, "
                 "suspect_finding, suspect_label, suspect_probability, model_disagreements, scored_model")


class WorkspaceError(Exception):
    """A workspace that cannot be opened or an edit that makes no sense; the message says why."""


@dataclass(frozen=True)
class ImageRecord:
    id: int
    file: str
    path: str
    present: bool
    patient_id: int | None
    follow_up: int | None
    age: int | None
    sex: str | None
    view: str | None
    width: int | None
    height: int | None
    dataset_labelled: bool
    dataset_mask: int
    current_mask: int
    uncertain_mask: int
    human_mask: int
    review_state: str
    note: str
    reviewed_by: str | None
    reviewed_at: float | None
    boxes_edited: bool
    triage_score: float | None
    mislabel_score: float | None
    suspect_finding: str | None
    suspect_label: str | None
    suspect_probability: float | None
    model_disagreements: int | None  # findings where the model's decision differs from the label
    scored_model: str | None

    def dataset_value(self, finding: str) -> str | None:
        if not self.dataset_labelled:
            return None
        return PRESENT if self.dataset_mask & FINDING_BIT[finding] else ABSENT

    def current_value(self, finding: str) -> str | None:
        bit = FINDING_BIT[finding]
        if self.uncertain_mask & bit:
            return UNCERTAIN
        if self.current_mask & bit:
            return PRESENT
        if self.human_mask & bit or self.dataset_labelled:
            return ABSENT
        return None

    def changed_mask(self) -> int:
        """Findings where a human decision differs from the dataset label."""
        return self.human_mask & (self.current_mask ^ self.dataset_mask)

    def differs_from_dataset(self) -> bool:
        """Anything a human changed: a label, an uncertain mark, or the boxes."""
        return bool(self.changed_mask() or self.uncertain_mask or self.boxes_edited)

    def current_findings(self) -> list[str]:
        return [name for name in NIH_FINDINGS if self.current_mask & FINDING_BIT[name]]

    def suspicion(self) -> str | None:
        """Why this image is suspected mislabelled, e.g. "labelled Pneumothorax, model 0.03".

        None once the suspect finding's label is no longer the one that was scored (a correction
        since): the stored text would describe a label the image no longer has."""
        if self.suspect_finding is None or self.suspect_probability is None:
            return None
        finding = self.suspect_finding
        if finding in FINDING_BIT and self.current_value(finding) != self.suspect_label:
            return None
        if self.suspect_label == PRESENT:
            return f"labelled {self.suspect_finding}, model {self.suspect_probability:.2f}"
        return f"not labelled {self.suspect_finding}, model {self.suspect_probability:.2f}"


@dataclass(frozen=True)
class LabelRecord:
    id: int
    image_id: int
    finding: str
    value: str
    author: str
    reason: str | None
    created: float


@dataclass(frozen=True)
class BoxRecord:
    id: int
    image_id: int
    finding: str
    x: float
    y: float
    w: float
    h: float
    source: str
    author: str | None
    created: float
    deleted: bool
    origin_id: int | None
    accepted_from: str | None = None  # a model's box accepted by a person: that model's identity

    def rect(self) -> tuple[float, float, float, float]:
        return (self.x, self.y, self.w, self.h)


@dataclass(frozen=True)
class FindingState:
    """One finding of one image: the three opinions side by side, and the one that counts."""

    finding: str
    dataset: str | None
    human: LabelRecord | None
    probability: float | None
    current: str | None


def default_workspace_path(images_dir: str | os.PathLike[str], *, beside_images: bool = True) -> Path:
    """Next to the images when that folder is writable, else in the user data directory.

    ``beside_images=False``: always in the user data directory (what merely viewing a folder uses).

    ``$CXRVIEW_WORKSPACE_DIR`` puts every workspace in that folder instead (tests,
    portable installs): nothing is then written next to the images.
    """
    import hashlib

    folder = Path(images_dir).resolve()
    tag = f"{folder.name or 'root'}-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}.sqlite"
    override = os.environ.get("CXRVIEW_WORKSPACE_DIR")
    if override:
        return Path(override) / tag
    # os.access says yes to root even in a folder marked read-only (a shared data set): honour
    # the permission bits too, so viewing such a folder never writes into it.
    if beside_images and os.access(folder, os.W_OK) and folder.stat().st_mode & 0o222:
        return folder / DB_NAME
    from platformdirs import user_data_dir

    return Path(user_data_dir("cxrview")) / "workspaces" / tag


def resolve_workspace_path(path: str | os.PathLike[str]) -> Path:
    """A database file, or a folder holding one (``cxrview.workspace.sqlite``)."""
    p = Path(path)
    return p / DB_NAME if p.is_dir() else p


class Workspace:
    """The workspace database. One connection per object; open another object per thread."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False,
                 images_root: str | os.PathLike[str] | None = None) -> None:
        self.path = resolve_workspace_path(path)
        if not create and not self.path.is_file():
            raise WorkspaceError(f"{self.path}: no workspace here (create one with import-nih or by "
                                 "opening a folder)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"{self.path}: not a usable workspace database ({exc})") from exc
        self._lock = threading.RLock()
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(boxes)")}
        if "accepted_from" not in columns:  # workspaces made before accepted boxes kept their model
            with contextlib.suppress(sqlite3.OperationalError):  # read-only: reads still work
                self._conn.execute("ALTER TABLE boxes ADD COLUMN accepted_from TEXT")
        version = self.meta("schema_version")
        if version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(version) > SCHEMA_VERSION:
            raise WorkspaceError(f"{self.path}: made by a newer cxrview (schema {version})")
        if images_root is not None:
            self.set_meta("images_root", str(Path(images_root).resolve()))

    # -- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (BEGIN IMMEDIATE … COMMIT, ROLLBACK on any error)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def meta(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    @property
    def images_root(self) -> Path | None:
        root = self.meta("images_root")
        return Path(root) if root else None

    def integrity_ok(self) -> bool:
        return bool(self.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    # -- images ---------------------------------------------------------------------------
    def add_images(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Add image files (a folder workspace); files already known are skipped. Returns how many."""
        root = self.images_root
        rows = []
        for raw in paths:
            p = Path(raw).resolve()
            stored = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
            rows.append((p.name, stored))
        with self.transaction() as conn:
            before = conn.total_changes
            conn.executemany("INSERT OR IGNORE INTO images(file, path) VALUES (?, ?)", rows)
            return conn.total_changes - before

    def image_count(self, *, present_only: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM images" + (" WHERE present = 1" if present_only else "")
        return int(self.execute(sql).fetchone()[0])

    def image(self, image_id: int) -> ImageRecord:
        row = self.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no image with id {image_id}")
        return _image(row)

    def image_by_file(self, file: str) -> ImageRecord | None:
        sql = f"SELECT {IMAGE_COLUMNS} FROM images WHERE file = ?"
        row = self.execute(sql, (Path(file).name,)).fetchone()
        return _image(row) if row else None

    def images(self, ids: list[int]) -> list[ImageRecord]:
        """Records for ``ids`` in the given order (unknown ids skipped)."""
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = _image(row)
        return [found[i] for i in ids if i in found]

    def absolute_path(self, record: ImageRecord) -> Path:
        p = Path(record.path)
        if p.is_absolute() or self.images_root is None:
            return p
        return self.images_root / p

    def same_patient(self, image_id: int) -> list[ImageRecord]:
        """Every image of this image's patient (follow-up order), itself included."""
        record = self.image(image_id)
        if record.patient_id is None:
            return [record]
        rows = self.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE patient_id = ? "
                            "ORDER BY follow_up, file", (record.patient_id,)).fetchall()
        return [_image(r) for r in rows]

    # -- labels ---------------------------------------------------------------------------
    def findings(self, image_id: int) -> list[FindingState]:
        """Dataset, human and model opinion plus the current label for every finding."""
        record = self.image(image_id)
        humans = self._latest_human_labels(image_id)
        probs = self.latest_probabilities(image_id)
        return [FindingState(name, record.dataset_value(name), humans.get(name),
                             probs[i] if probs is not None else None, record.current_value(name))
                for i, name in enumerate(NIH_FINDINGS)]

    def _latest_human_labels(self, image_id: int) -> dict[str, LabelRecord]:
        return {r.finding: r for r in self.label_history(image_id)}  # later rows win

    def label_history(self, image_id: int) -> list[LabelRecord]:
        rows = self.execute("SELECT id, image_id, finding, value, author, reason, created FROM labels "
                            "WHERE image_id = ? ORDER BY id", (image_id,)).fetchall()
        return [LabelRecord(*row) for row in rows]

    def set_label(self, image_id: int, finding: str, value: str, *, author: str,
                  reason: str | None = None, record_id: int | None = None) -> LabelRecord:
        """Record a human decision (a new row). ``record_id`` re-creates an undone row (redo)."""
        if finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        if value not in LABEL_VALUES:
            raise WorkspaceError(f"label must be one of {', '.join(LABEL_VALUES)}, not {value!r}")
        if reason is not None and reason not in REASON_CODES:
            raise WorkspaceError(f"unknown reason {reason!r} (use {', '.join(REASON_CODES)})")
        now = time.time()
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO labels(id, image_id, finding, value, author, reason, created) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (record_id, image_id, finding, value, author, reason, now))
            self._refresh_masks(conn, image_id)
        return LabelRecord(int(cur.lastrowid or 0), image_id, finding, value, author, reason, now)

    def remove_label(self, record_id: int) -> None:
        """Undo a human decision: the row it added goes; earlier decisions (or the dataset) show again."""
        with self.transaction() as conn:
            row = conn.execute("SELECT image_id FROM labels WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return
            conn.execute("DELETE FROM labels WHERE id = ?", (record_id,))
            self._refresh_masks(conn, row[0])

    def _refresh_masks(self, conn: sqlite3.Connection, image_id: int) -> None:
        dataset_mask = conn.execute("SELECT dataset_mask FROM images WHERE id = ?", (image_id,)).fetchone()[0]
        latest: dict[str, str] = {}
        for finding, value in conn.execute("SELECT finding, value FROM labels WHERE image_id = ? ORDER BY id",
                                           (image_id,)):
            latest[finding] = value
        current, uncertain, human = dataset_mask, 0, 0
        for finding, value in latest.items():
            bit = FINDING_BIT[finding]
            human |= bit
            current &= ~bit
            if value == PRESENT:
                current |= bit
            elif value == UNCERTAIN:
                uncertain |= bit
        conn.execute("UPDATE images SET current_mask = ?, uncertain_mask = ?, human_mask = ? WHERE id = ?",
                     (current, uncertain, human, image_id))
        _follow_review_state(conn, image_id)

    # -- review state ---------------------------------------------------------------------
    def set_review(self, image_id: int, state: str, *, author: str, note: str | None = None
                   ) -> tuple[str, str, str | None, float | None]:
        """Set the review state (and note); returns the previous (state, note, by, at) for undo."""
        if state not in REVIEW_STATES:
            raise WorkspaceError(f"review state must be one of {', '.join(REVIEW_STATES)}")
        with self.transaction() as conn:
            old = conn.execute("SELECT review_state, note, reviewed_by, reviewed_at FROM images WHERE id = ?",
                               (image_id,)).fetchone()
            if old is None:
                raise WorkspaceError(f"no image with id {image_id}")
            at = None if state == UNREVIEWED else time.time()
            by = None if state == UNREVIEWED else author
            conn.execute("UPDATE images SET review_state = ?, note = ?, reviewed_by = ?, reviewed_at = ? "
                         "WHERE id = ?", (state, old[1] if note is None else note, by, at, image_id))
        return (old[0], old[1], old[2], old[3])

    def restore_review(self, image_id: int, previous: tuple[str, str, str | None, float | None]) -> None:
        state, note, by, at = previous
        with self.transaction() as conn:
            conn.execute("UPDATE images SET review_state = ?, note = ?, reviewed_by = ?, reviewed_at = ? "
                         "WHERE id = ?", (state, note, by, at, image_id))

    def review_progress(self) -> tuple[int, int]:
        """(reviewed, total) over images present on disk."""
        row = self.execute("SELECT SUM(review_state != 'unreviewed'), COUNT(*) FROM images "
                           "WHERE present = 1").fetchone()
        return int(row[0] or 0), int(row[1] or 0)

    def unreviewed_files(self, files: list[str]) -> set[str]:
        """Which of these file names (``ImageRecord.file``) are still unreviewed."""
        found: set[str] = set()
        for start in range(0, len(files), 900):  # SQLite's bound-parameter limit
            chunk = files[start:start + 900]
            marks = ",".join("?" * len(chunk))
            found.update(file for (file,) in self.execute(
                f"SELECT file FROM images WHERE review_state = 'unreviewed' AND file IN ({marks})", chunk))
        return found

    def reviewed_count(self, *, excluding_patients: set[int]) -> int:
        """Reviewed images present on disk whose patient is neither in ``excluding_patients`` nor
        reserved (NIH patient ID divisible by 5: never trained or tuned on)."""
        row = self.execute("SELECT COUNT(*) FROM images WHERE present = 1 AND review_state != 'unreviewed' "
                           "AND (patient_id IS NULL OR (patient_id NOT IN (SELECT value FROM json_each(?)) "
                           "AND patient_id % 5 != 0))", (json.dumps(sorted(excluding_patients)),)).fetchone()
        return int(row[0])

    def locked_patients(self) -> set[int]:
        """The locked evaluation patients fine-tuning chose for this workspace (empty before)."""
        stored = self.meta("locked_patients")
        return set(json.loads(stored)) if stored else set()

    def training_counts(self, *, excluding_patients: set[int]) -> dict[str, int]:
        """Reviewed images present on disk: all, trainable (:meth:`reviewed_count`), and those
        fine-tuning leaves out because their patient is locked for evaluation or reserved."""
        row = self.execute(
            "SELECT COUNT(*), SUM(patient_id IN (SELECT value FROM json_each(?))), "
            "SUM(patient_id % 5 = 0 AND patient_id NOT IN (SELECT value FROM json_each(?))) "
            "FROM images WHERE present = 1 AND review_state != 'unreviewed'",
            (json.dumps(sorted(excluding_patients)),) * 2).fetchone()
        return {"reviewed": int(row[0] or 0), "locked": int(row[1] or 0), "reserved": int(row[2] or 0),
                "trainable": self.reviewed_count(excluding_patients=excluding_patients)}

    def patient_image_counts(self) -> dict[int, int]:
        """Images present on disk per known patient."""
        rows = self.execute("SELECT patient_id, COUNT(*) FROM images WHERE present = 1 "
                            "AND patient_id IS NOT NULL GROUP BY patient_id")
        return {int(pid): int(n) for pid, n in rows}

    # -- boxes ----------------------------------------------------------------------------
    def boxes(self, image_id: int, *, source: str | None = None,
              include_deleted: bool = False) -> list[BoxRecord]:
        sql = ("SELECT id, image_id, finding, x, y, w, h, source, author, created, deleted, origin_id, "
               "accepted_from FROM boxes WHERE image_id = ?")
        params: list[Any] = [image_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        if not include_deleted:
            sql += " AND deleted = 0"
        return [_box(r) for r in self.execute(sql + " ORDER BY id", params).fetchall()]

    def answer_boxes(self, image_id: int) -> list[BoxRecord]:
        """The boxes that count: human ones once a human edited this image's boxes, else the dataset's."""
        edited = self.execute("SELECT boxes_edited FROM images WHERE id = ?", (image_id,)).fetchone()
        return self.boxes(image_id, source="human" if edited and edited[0] else "dataset")

    def take_over_boxes(self, image_id: int, *, author: str) -> list[int]:
        """First human box edit on an image: copy its dataset boxes as human boxes (ids returned)."""
        with self.transaction() as conn:
            edited = conn.execute("SELECT boxes_edited FROM images WHERE id = ?", (image_id,)).fetchone()
            if edited is None:
                raise WorkspaceError(f"no image with id {image_id}")
            if edited[0]:
                return []
            now = time.time()
            ids = []
            for row in conn.execute("SELECT id, finding, x, y, w, h FROM boxes WHERE image_id = ? AND "
                                    "source = 'dataset' AND deleted = 0 ORDER BY id", (image_id,)).fetchall():
                cur = conn.execute("INSERT INTO boxes(image_id, finding, x, y, w, h, source, author, "
                                   "created, origin_id) VALUES (?, ?, ?, ?, ?, ?, 'human', ?, ?, ?)",
                                   (image_id, row[1], row[2], row[3], row[4], row[5], author, now, row[0]))
                ids.append(int(cur.lastrowid or 0))
            conn.execute("UPDATE images SET boxes_edited = 1 WHERE id = ?", (image_id,))
            _follow_review_state(conn, image_id)
            return ids

    def undo_take_over(self, image_id: int, box_ids: list[int]) -> None:
        with self.transaction() as conn:
            conn.executemany("DELETE FROM boxes WHERE id = ? AND source = 'human'", [(i,) for i in box_ids])
            conn.execute("UPDATE images SET boxes_edited = 0 WHERE id = ?", (image_id,))
            _follow_review_state(conn, image_id)

    def add_box(self, image_id: int, finding: str, rect: tuple[float, float, float, float], *,
                author: str, source: str = "human", origin_id: int | None = None,
                box_id: int | None = None, accepted_from: str | None = None) -> int:
        if finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        x, y, w, h = (float(v) for v in rect)
        if w <= 0 or h <= 0:
            raise WorkspaceError("a box needs a positive width and height")
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO boxes(id, image_id, finding, x, y, w, h, source, author, "
                               "created, origin_id, accepted_from) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                               (box_id, image_id, finding, x, y, w, h, source, author, time.time(),
                                origin_id, accepted_from))
            if source == "human":
                conn.execute("UPDATE images SET boxes_edited = 1 WHERE id = ?", (image_id,))
                _follow_review_state(conn, image_id)
            return int(cur.lastrowid or 0)

    def box(self, box_id: int) -> BoxRecord:
        row = self.execute("SELECT id, image_id, finding, x, y, w, h, source, author, created, deleted, "
                           "origin_id, accepted_from FROM boxes WHERE id = ?", (box_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no box with id {box_id}")
        return _box(row)

    def update_box(self, box_id: int, *, rect: tuple[float, float, float, float] | None = None,
                   finding: str | None = None) -> None:
        """Move/resize or relabel a human box (dataset boxes are never changed)."""
        current = self.box(box_id)
        if current.source != "human":
            raise WorkspaceError("dataset boxes are kept as they were; edit a human copy")
        if finding is not None and finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        x, y, w, h = rect if rect is not None else current.rect()
        if w <= 0 or h <= 0:
            raise WorkspaceError("a box needs a positive width and height")
        with self.transaction() as conn:
            conn.execute("UPDATE boxes SET x = ?, y = ?, w = ?, h = ?, finding = ? WHERE id = ?",
                         (x, y, w, h, finding or current.finding, box_id))

    def set_box_deleted(self, box_id: int, deleted: bool) -> None:
        if self.box(box_id).source != "human":
            raise WorkspaceError("dataset boxes are kept as they were; edit a human copy")
        with self.transaction() as conn:
            conn.execute("UPDATE boxes SET deleted = ? WHERE id = ?", (int(deleted), box_id))

    def purge_box(self, box_id: int) -> None:
        """Remove a human box row entirely (undo of adding it)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM boxes WHERE id = ? AND source = 'human'", (box_id,))

    # -- predictions ----------------------------------------------------------------------
    def store_predictions(self, model: str, rows: dict[int, list[float]],
                          out_of_sample: dict[int, bool | None] | None = None) -> None:
        """Per image the 14 probabilities (NIH order) from ``model`` (its identity string)."""
        now = time.time()
        oos = out_of_sample or {}
        with self.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO predictions(image_id, model, probabilities, out_of_sample, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [(image_id, model, json.dumps([round(float(p), 6) for p in probs]),
                  None if oos.get(image_id) is None else int(bool(oos[image_id])), now)
                 for image_id, probs in rows.items()])

    def latest_probabilities(self, image_id: int, model: str | None = None) -> list[float] | None:
        sql = "SELECT probabilities FROM predictions WHERE image_id = ?"
        params: list[Any] = [image_id]
        if model is not None:
            sql += " AND model = ?"
            params.append(model)
        row = self.execute(sql + " ORDER BY created DESC LIMIT 1", params).fetchone()
        return json.loads(row[0]) if row else None

    def predictions_for(self, model: str, image_ids: list[int] | None = None
                        ) -> dict[int, tuple[list[float], bool | None]]:
        """``model``'s stored (probabilities, out-of-sample) per image: every image's, or these ids'."""
        sql = "SELECT image_id, probabilities, out_of_sample FROM predictions WHERE model = ?"
        if image_ids is None:
            chunks: list[list[int]] = [[]]
        else:
            chunks = [image_ids[i:i + 900] for i in range(0, len(image_ids), 900)]
        out: dict[int, tuple[list[float], bool | None]] = {}
        for chunk in chunks:
            params: list[Any] = [model, *chunk]
            where = f" AND image_id IN ({','.join('?' * len(chunk))})" if image_ids is not None else ""
            for image_id, probs, oos in self.execute(sql + where, params):
                out[int(image_id)] = (json.loads(probs), None if oos is None else bool(oos))
        return out

    def store_scores(self, model: str, scores: dict[int, dict[str, Any]]) -> None:
        """Triage and mislabel scores per image (see :mod:`cxrview.core.mislabel`)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE images SET triage_score = ?, mislabel_score = ?, suspect_finding = ?, "
                "suspect_label = ?, suspect_probability = ?, model_disagreements = ?, scored_model = ? "
                "WHERE id = ?",
                [(s.get("triage"), s.get("mislabel"), s.get("finding"), s.get("label"), s.get("probability"),
                  s.get("disagreements"), model, image_id) for image_id, s in scores.items()])


NOT_TRAINED = {
    "locked": "locked evaluation set: corrections here check the model, fine-tuning does not train on them",
    "reserved": "reserved acceptance patient (NIH ID divisible by 5): fine-tuning never trains on it",
}


def not_trained_reason(record: ImageRecord, locked: set[int]) -> str | None:
    """Why fine-tuning will not learn from this image's labels (a key of :data:`NOT_TRAINED`)."""
    if record.patient_id is None:
        return None
    if record.patient_id in locked:
        return "locked"
    return "reserved" if record.patient_id % 5 == 0 else None


def _follow_review_state(conn: sqlite3.Connection, image_id: int) -> None:
    """A reviewed image edited later says what it now is: "corrected" when anything differs from the
    dataset (``ImageRecord.differs_from_dataset``), "confirmed" when the edit took every change
    back. Unreviewed and flagged images keep their state (an edit is not a review)."""
    conn.execute("UPDATE images SET review_state = CASE WHEN (human_mask & ((current_mask | dataset_mask) "
                 "- (current_mask & dataset_mask))) "
                 "!= 0 OR uncertain_mask != 0 OR boxes_edited != 0 THEN 'corrected' ELSE 'confirmed' END "
                 "WHERE id = ? AND review_state IN ('confirmed', 'corrected')", (image_id,))


def _image(row: tuple[Any, ...]) -> ImageRecord:
    values = list(row)
    for i in (3, 11, 20):  # present, dataset_labelled, boxes_edited
        values[i] = bool(values[i])
    return ImageRecord(*values)


def _box(row: tuple[Any, ...]) -> BoxRecord:
    values = list(row)
    values[10] = bool(values[10])
    return BoxRecord(*values)

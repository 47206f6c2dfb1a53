"""A review workspace: a set of images plus one SQLite database of everything people did.

The images are never modified. The database (WAL mode, ``synchronous=FULL``)
keeps, side by side, what the dataset said, what a model predicted and what a
human decided:

* ``images``: one row per image (file name, where it is, patient, view, …),
  its dataset labels as a bit mask over :data:`NIH_FINDINGS`, the *current*
  labels (human decision where there is one, else the dataset's) as masks kept
  in step with every edit, its review state and note (with a row version for
  optimistic checks), and the latest triage and mislabel scores.
* ``labels``: human decisions, one row each (who, when, value, reason), named by a
  stable ``uid``. A correction is a new row; the dataset label is never overwritten.
  Undo removes exactly the row the edit added; redo adds it again under the same uid.
* ``boxes``: dataset boxes, human boxes and accepted model boxes (``workspace_boxes``).
* ``predictions``: per image and model, the 14 probabilities and whether the
  model had trained on that image (mislabel scores trust only out-of-sample ones).
* ``audit``: the append-only log of every decision (:mod:`cxrview.core.audit`),
  written in the same transaction as the decision.
* ``undo_history``: each annotator's undo/redo stack, so it survives a restart.

Every edit is one transaction: a process killed at any moment loses at most
the edit in flight, and the database stays consistent. SQLite errors reach callers
as :class:`WorkspaceError` subclasses that say what happened (:mod:`cxrview.core.store`);
a file that is not a workspace is refused untouched; a read-only one opens read-only.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrview.core import audit
from cxrview.core.findings import (
    ABSENT,
    CONFIRMED,
    CORRECTED,
    FINDING_BIT,
    LABEL_VALUES,
    NIH_FINDINGS,
    PRESENT,
    REASON_CODES,
    REVIEW_STATES,
    UNCERTAIN,
    UNREVIEWED,
)
from cxrview.core.review_rules import follow_review_state, image_differs
from cxrview.core.store import (
    Connection,
    EditConflict,
    StoreError,
    StoreReadOnly,
    WorkspaceError,
    inspect,
    writable,
)
from cxrview.core.workspace_boxes import BOXES_SCHEMA, BoxRecord, BoxStore, box_from_row
from cxrview.core.workspace_schema import SCHEMA, SCHEMA_VERSION, migrate

__all__ = ["DB_NAME", "IMAGE_COLUMNS", "BoxRecord", "EditConflict", "FindingState", "ImageRecord",
           "LabelRecord", "ReviewChange", "StoreError", "Workspace", "WorkspaceError", "box_from_row",
           "default_workspace_path", "new_uid", "resolve_workspace_path"]

DB_NAME = "cxrview.workspace.sqlite"
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another writer's transaction (CLI, workers)

IMAGE_COLUMNS = ("id, file, path, present, patient_id, follow_up, age, sex, view, width, height, "
                 "dataset_labelled, dataset_mask, current_mask, uncertain_mask, human_mask, review_state, "
                 "note, reviewed_by, reviewed_at, boxes_edited, triage_score, mislabel_score, "
                 "suspect_finding, suspect_label, suspect_probability, model_disagreements, scored_model, "
                 "review_version")


def new_uid() -> str:
    """A stable id for a decision or a box: never reused, unlike SQLite row ids."""
    return uuid.uuid4().hex


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
    review_version: int = 0  # bumped by every review/note decision (optimistic checks for undo)

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
        """Why this image is suspected mislabelled, e.g. "labelled Pneumothorax, model 0.03"."""
        if self.suspect_finding is None or self.suspect_probability is None:
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
    uid: str = ""


LABEL_COLUMNS = "id, image_id, finding, value, author, reason, created, uid"


@dataclass(frozen=True)
class FindingState:
    """One finding of one image: the three opinions side by side, and the one that counts."""

    finding: str
    dataset: str | None
    human: LabelRecord | None
    probability: float | None
    current: str | None


@dataclass(frozen=True)
class ReviewChange:
    """What :meth:`Workspace.set_review` replaced, and the row version it left (for undo's check)."""

    previous: tuple[str, str, str | None, float | None]  # state, note, by, at
    version: int


def default_workspace_path(images_dir: str | os.PathLike[str]) -> Path:
    """Where the review workspace of a folder of images lives: in the user data directory,
    never beside the images (viewing a folder must leave it byte-for-byte as it was, and shared
    or read-only media just work). ``$CXRVIEW_WORKSPACE_DIR`` puts every workspace in that folder
    instead (tests, portable installs)."""
    folder = Path(images_dir).resolve()
    tag = f"{folder.name or 'root'}-{hashlib.sha256(str(folder).encode()).hexdigest()[:12]}.sqlite"
    override = os.environ.get("CXRVIEW_WORKSPACE_DIR")
    if override:
        return Path(override) / tag
    from platformdirs import user_data_dir

    return Path(user_data_dir("cxrview")) / "workspaces" / tag


def resolve_workspace_path(path: str | os.PathLike[str]) -> Path:
    """A database file, or a folder holding one (``cxrview.workspace.sqlite``)."""
    p = Path(path)
    return p / DB_NAME if p.is_dir() else p


REQUIRED_TABLES = {"meta", "images", "labels", "boxes"}


class Workspace(BoxStore):
    """The workspace database. One connection per object; open another object per thread.

    ``read_only``: None decides from the file and its folder (a workspace that cannot be
    written opens read-only); True forces it. ``timeout``: seconds a write waits for another
    program's transaction before :class:`~cxrview.core.store.StoreBusy` (the GUI waits less).
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False,
                 images_root: str | os.PathLike[str] | None = None, read_only: bool | None = None,
                 timeout: float = BUSY_TIMEOUT_S) -> None:
        self.path = resolve_workspace_path(path)
        exists = self.path.is_file()
        if not create and not exists:
            raise WorkspaceError(f"{self.path}: no workspace here (create one with import-nih or by "
                                 "starting a review)")
        kind = inspect(self.path, REQUIRED_TABLES) if exists else "empty"
        if kind == "corrupt":
            raise WorkspaceError(f"{self.path}: not a usable workspace database (not SQLite, or damaged)")
        if kind == "foreign":
            raise WorkspaceError(f"{self.path}: an SQLite database of another program, not a cxrview "
                                 "workspace; it was left untouched")
        if kind == "empty" and not create:
            raise WorkspaceError(f"{self.path}: an empty file, not a cxrview workspace (it was left "
                                 "untouched)")
        if create and not exists:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WorkspaceError(f"{self.path.parent}: cannot create the workspace folder "
                                     f"({exc.strerror or exc})") from exc
        if read_only is None:
            read_only = exists and not (writable(self.path) and writable(self.path.parent))
        if read_only and kind != "workspace":
            raise StoreReadOnly(f"{self.path}: cannot create a workspace here (read-only)")
        self.read_only = read_only
        self._db = Connection(self.path, read_only=read_only, timeout=timeout)
        try:
            self._prepare(kind, images_root)
        except BaseException:
            self._db.close()
            raise

    def _prepare(self, kind: str, images_root: str | os.PathLike[str] | None) -> None:
        version = None if kind == "empty" else self.meta("schema_version")
        if version is not None and int(version) > SCHEMA_VERSION:
            raise WorkspaceError(f"{self.path}: made by a newer cxrview (schema {version})")
        if self.read_only:
            if version is not None and int(version) < SCHEMA_VERSION:
                raise WorkspaceError(f"{self.path}: made by an older cxrview and read-only here; open a "
                                     "writable copy once to upgrade it")
            return
        if version is not None and int(version) < SCHEMA_VERSION:
            with self.transaction() as conn:
                migrate(conn, int(version))
        self._db.executescript(SCHEMA + BOXES_SCHEMA + audit.SCHEMA)
        if version is None:
            with self.transaction() as conn:
                conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('workspace_id', ?)",
                             (new_uid(),))
        if images_root is not None:
            self.set_meta("images_root", str(Path(images_root).resolve()))

    # -- plumbing -----------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def data_version(self) -> int:
        """Changes when another program commits to this workspace (cheap to poll)."""
        return self._db.data_version()

    @property
    def workspace_id(self) -> str:
        return self.meta("workspace_id") or ""

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
            return int(conn.total_changes - before)

    def set_image_size(self, image_id: int, width: int, height: int) -> None:
        """Record the pixel size of an image the workspace did not know it for (boxes are kept in it)."""
        if self.read_only:
            return
        with self.transaction() as conn:
            conn.execute("UPDATE images SET width = ?, height = ? WHERE id = ? AND width IS NULL",
                         (int(width), int(height), image_id))

    def image_count(self, *, present_only: bool = False) -> int:
        sql = "SELECT COUNT(*) FROM images" + (" WHERE present = 1" if present_only else "")
        return int(self.execute(sql).fetchone()[0])

    def image(self, image_id: int) -> ImageRecord:
        row = self.execute(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no image with id {image_id}")
        return image_from_row(row)

    def image_by_file(self, file: str) -> ImageRecord | None:
        sql = f"SELECT {IMAGE_COLUMNS} FROM images WHERE file = ?"
        row = self.execute(sql, (Path(file).name,)).fetchone()
        return image_from_row(row) if row else None

    def images(self, ids: list[int]) -> list[ImageRecord]:
        """Records for ``ids`` in the given order (unknown ids skipped)."""
        found: dict[int, ImageRecord] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.fetchall(f"SELECT {IMAGE_COLUMNS} FROM images WHERE id IN ({marks})", chunk):
                found[row[0]] = image_from_row(row)
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
        rows = self.fetchall(f"SELECT {IMAGE_COLUMNS} FROM images WHERE patient_id = ? "
                             "ORDER BY follow_up, file", (record.patient_id,))
        return [image_from_row(r) for r in rows]

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
        rows = self.fetchall(f"SELECT {LABEL_COLUMNS} FROM labels WHERE image_id = ? ORDER BY id",
                             (image_id,))
        return [LabelRecord(*row) for row in rows]

    def set_label(self, image_id: int, finding: str, value: str, *, author: str,
                  reason: str | None = None, uid: str | None = None, note: str | None = None,
                  command: str | None = None, via: str = "do") -> LabelRecord:
        """Record a human decision (a new row named ``uid``: give the same uid again to redo it)."""
        if finding not in FINDING_BIT:
            raise WorkspaceError(f"unknown finding {finding!r}")
        if value not in LABEL_VALUES:
            raise WorkspaceError(f"label must be one of {', '.join(LABEL_VALUES)}, not {value!r}")
        if reason is not None and reason not in REASON_CODES:
            raise WorkspaceError(f"unknown reason {reason!r} (use {', '.join(REASON_CODES)})")
        uid = uid or new_uid()
        now = time.time()
        with self.transaction() as conn:
            before = self._label_state(conn, image_id, finding)
            try:
                cur = conn.execute("INSERT INTO labels(uid, image_id, finding, value, author, reason, "
                                   "created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   (uid, image_id, finding, value, author, reason, now))
            except sqlite3.IntegrityError as exc:
                if "FOREIGN KEY" in str(exc):
                    raise WorkspaceError(f"no image with id {image_id}") from exc
                raise WorkspaceError(f"the decision {uid} is already recorded") from exc
            self._refresh_masks(conn, image_id, author=author, command=command, via=via)
            audit.record(conn, author=author, image_id=image_id, action="label", target=finding,
                         before=before, after={"value": value, "uid": uid}, reason=reason, note=note,
                         model=self._shown_model(conn, image_id), command=command, via=via, at=now)
        return LabelRecord(int(cur.lastrowid or 0), image_id, finding, value, author, reason, now, uid)

    def remove_label(self, uid: str, *, author: str = "", command: str | None = None,
                     via: str = "undo") -> bool:
        """Undo a human decision: its row goes; earlier decisions (or the dataset) show again.
        Returns False when the row is not there (nothing to undo)."""
        with self.transaction() as conn:
            row = conn.execute("SELECT image_id, finding, value, reason FROM labels WHERE uid = ?",
                               (uid,)).fetchone()
            if row is None:
                return False
            image_id, finding, value, reason = row
            conn.execute("DELETE FROM labels WHERE uid = ?", (uid,))
            self._refresh_masks(conn, image_id, author=author, command=command, via=via)
            audit.record(conn, author=author or "unknown", image_id=image_id, action="label",
                         target=finding, before={"value": value, "uid": uid},
                         after=self._label_state(conn, image_id, finding), reason=reason,
                         model=self._shown_model(conn, image_id), command=command, via=via)
        return True

    @staticmethod
    def _label_state(conn: sqlite3.Connection, image_id: int, finding: str) -> dict[str, Any]:
        """The finding's current value and the human row deciding it (None: the dataset's)."""
        row = conn.execute("SELECT value, uid FROM labels WHERE image_id = ? AND finding = ? "
                           "ORDER BY id DESC LIMIT 1", (image_id, finding)).fetchone()
        if row is not None:
            return {"value": row[0], "uid": row[1]}
        image = conn.execute("SELECT dataset_labelled, dataset_mask FROM images WHERE id = ?",
                             (image_id,)).fetchone()
        if image is None or not image[0]:
            return {"value": None, "uid": None}
        return {"value": PRESENT if image[1] & FINDING_BIT[finding] else ABSENT, "uid": None}

    @staticmethod
    def _shown_model(conn: sqlite3.Connection, image_id: int) -> str | None:
        """The model whose opinion the review panel shows for the image (its latest prediction)."""
        row = conn.execute("SELECT model FROM predictions WHERE image_id = ? ORDER BY created DESC LIMIT 1",
                           (image_id,)).fetchone()
        return row[0] if row else None

    def _refresh_masks(self, conn: sqlite3.Connection, image_id: int, *, author: str = "",
                       command: str | None = None, via: str = "do") -> None:
        """Current-label masks from the decisions, and the review state following them: a reviewed
        image is "corrected" while it differs from the dataset and "confirmed" when it agrees again."""
        row = conn.execute("SELECT dataset_mask FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise WorkspaceError(f"no image with id {image_id}")
        latest: dict[str, str] = {}
        for finding, value in conn.execute("SELECT finding, value FROM labels WHERE image_id = ? ORDER BY id",
                                           (image_id,)):
            latest[finding] = value
        current, uncertain, human = row[0], 0, 0
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
        follow_review_state(conn, image_id, author=author, command=command, via=via)

    # -- review state ---------------------------------------------------------------------
    def set_review(self, image_id: int, state: str, *, author: str, note: str | None = None,
                   expect_version: int | None = None, set_version: int | None = None,
                   command: str | None = None, via: str = "do") -> ReviewChange:
        """Set the review state (and note). A reviewed state is "corrected" when the image differs
        from the dataset, else "confirmed". ``expect_version``: refuse (EditConflict) unless the
        row is still at that version (redo must not overwrite someone else's later decision);
        ``set_version``: the version to leave (a redo puts back the one its first doing left)."""
        if state not in REVIEW_STATES:
            raise WorkspaceError(f"review state must be one of {', '.join(REVIEW_STATES)}")
        with self.transaction() as conn:
            old = conn.execute("SELECT review_state, note, reviewed_by, reviewed_at, review_version, "
                               "reviewed_by FROM images WHERE id = ?", (image_id,)).fetchone()
            if old is None:
                raise WorkspaceError(f"no image with id {image_id}")
            if expect_version is not None and old[4] != expect_version:
                raise EditConflict(f"the review of this image was changed since by {old[5] or 'someone'}; "
                                   "their decision is kept")
            if state in (CONFIRMED, CORRECTED):
                state = CORRECTED if image_differs(conn, image_id) else CONFIRMED
            new_note = old[1] if note is None else note
            at = None if state == UNREVIEWED else time.time()
            by = None if state == UNREVIEWED else author
            version = int(old[4]) + 1 if set_version is None else set_version
            conn.execute("UPDATE images SET review_state = ?, note = ?, reviewed_by = ?, reviewed_at = ?, "
                         "review_version = ? WHERE id = ?", (state, new_note, by, at, version, image_id))
            action = "review" if state != old[0] or note is None else "note"
            audit.record(conn, author=author, image_id=image_id, action=action,
                         before={"state": old[0], "note": old[1]}, after={"state": state, "note": new_note},
                         note=new_note if action == "note" else None, model=self._shown_model(conn, image_id),
                         command=command, via=via)
        return ReviewChange((old[0], old[1], old[2], old[3]), version)

    def restore_review(self, image_id: int, previous: tuple[str, str, str | None, float | None], *,
                       expect_version: int | None = None, restore_version: int | None = None,
                       author: str = "", command: str | None = None, via: str = "undo") -> int:
        """Put back what :meth:`set_review` replaced, and the row version it had (so an earlier undo of
        the same annotator still matches); EditConflict when someone decided since (``expect_version``
        no longer matches). Returns the row version now."""
        state, note, by, at = previous
        with self.transaction() as conn:
            old = conn.execute("SELECT review_state, note, review_version, reviewed_by FROM images "
                               "WHERE id = ?", (image_id,)).fetchone()
            if old is None:
                raise WorkspaceError(f"no image with id {image_id}")
            if expect_version is not None and old[2] != expect_version:
                raise EditConflict(f"the review of this image was changed since by {old[3] or 'someone'}; "
                                   "their decision is kept")
            version = int(old[2]) + 1 if restore_version is None else restore_version
            conn.execute("UPDATE images SET review_state = ?, note = ?, reviewed_by = ?, reviewed_at = ?, "
                         "review_version = ? WHERE id = ?", (state, note, by, at, version, image_id))
            action = "review" if state != old[0] else "note"
            audit.record(conn, author=author or "unknown", image_id=image_id, action=action,
                         before={"state": old[0], "note": old[1]}, after={"state": state, "note": note},
                         command=command, via=via)
        return version

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
            found.update(file for (file,) in self.fetchall(
                f"SELECT file FROM images WHERE review_state = 'unreviewed' AND file IN ({marks})", chunk))
        return found

    def reviewed_count(self, *, excluding_patients: set[int]) -> int:
        """Reviewed images present on disk whose patient is not in ``excluding_patients`` (the locked
        evaluation set): the images a fine-tune on corrections trains on. A reviewed image of a
        reserved NIH patient counts: the user's own corrections are never left out silently."""
        row = self.execute("SELECT COUNT(*) FROM images WHERE present = 1 AND review_state != 'unreviewed' "
                           "AND (patient_id IS NULL OR patient_id NOT IN (SELECT value FROM json_each(?)))",
                           (json.dumps(sorted(excluding_patients)),)).fetchone()
        return int(row[0])

    def patient_image_counts(self) -> dict[int, int]:
        """Images present on disk per known patient."""
        rows = self.fetchall("SELECT patient_id, COUNT(*) FROM images WHERE present = 1 "
                             "AND patient_id IS NOT NULL GROUP BY patient_id")
        return {int(pid): int(n) for pid, n in rows}

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
            for image_id, probs, oos in self.fetchall(sql + where, params):
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

    # -- undo history ---------------------------------------------------------------------
    def history_rows(self, author: str) -> list[tuple[int, str, str]]:
        """(seq, "done" | "undone", command JSON) of an annotator's saved undo stack, oldest first."""
        return [(int(s), str(st), str(c)) for s, st, c in self.fetchall(
            "SELECT seq, state, command FROM undo_history WHERE author = ? ORDER BY seq", (author,))]


def image_from_row(row: tuple[Any, ...]) -> ImageRecord:
    values = list(row)
    for i in (3, 11, 20):  # present, dataset_labelled, boxes_edited
        values[i] = bool(values[i])
    return ImageRecord(*values)


_image = image_from_row  # the worklist's name for it

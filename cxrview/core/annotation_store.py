"""The per-user store of reading marks (measurements, ROIs, arrows, notes), keyed by image.

One SQLite database in the user data directory (``$CXRVIEW_ANNOTATIONS_DIR`` overrides it),
never next to the images: reading a CD or a colleague's share must leave it untouched, and
the marks follow the reader, not the folder. Rows are keyed by the image's **content hash**
(decoded pixels, ADR 0003), so a renamed, moved or re-anonymised copy keeps its marks.

Every change is one transaction (WAL, ``synchronous=FULL``): a crash loses at most the
mark being drawn, and a failed write leaves the previous state intact and raises
:class:`AnnotationStoreError` with one line to show.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from cxrview.core.measure import Annotation

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS annotations (
    uid TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    points TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    author TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    seq INTEGER NOT NULL,
    image_path TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS annotations_by_image ON annotations(content_hash, seq);
"""


class AnnotationStoreError(Exception):
    """The store could not be opened or written; the message is one line for the reader."""


def default_store_path() -> Path:
    """``$CXRVIEW_ANNOTATIONS_DIR/annotations.sqlite``, else in the user data directory."""
    override = os.environ.get("CXRVIEW_ANNOTATIONS_DIR")
    if override:
        return Path(override) / "annotations.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("cxrview")) / "annotations.sqlite"


class AnnotationStore:
    """Reading marks per content hash; safe to use from one thread at a time (the GUI's)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._transaction() as conn:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))
        except (sqlite3.Error, OSError) as exc:
            raise AnnotationStoreError(f"cannot open the measurements store {self.path}: {exc}") from exc

    def _transaction(self) -> _Transaction:
        return _Transaction(self._conn, self._lock)

    def close(self) -> None:
        self._conn.close()

    # -- reading -----------------------------------------------------------------------------
    def annotations(self, content_hash: str) -> list[Annotation]:
        """The image's marks in the order they were made."""
        rows = self._conn.execute(
            "SELECT kind, points, text, uid, author, created FROM annotations WHERE content_hash = ? "
            "ORDER BY seq", (content_hash,)).fetchall()
        out = []
        for kind, points, text, uid, author, created in rows:
            try:
                out.append(Annotation(kind, tuple(tuple(p) for p in json.loads(points)), text, uid,
                                      author, created))
            except (ValueError, TypeError):
                continue  # a row another version wrote: skipped rather than fatal
        return out

    def count(self, content_hash: str | None = None) -> int:
        if content_hash is None:
            return int(self._conn.execute("SELECT COUNT(*) FROM annotations").fetchone()[0])
        return int(self._conn.execute("SELECT COUNT(*) FROM annotations WHERE content_hash = ?",
                                      (content_hash,)).fetchone()[0])

    # -- writing (each call one transaction) ---------------------------------------------------
    def put(self, content_hash: str, annotations: Iterable[Annotation], *, image_path: str = "",
            seq: int | None = None) -> None:
        """Insert (or replace, by uid) marks of one image."""
        with self._transaction() as conn:
            next_seq = seq if seq is not None else int(conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM annotations").fetchone()[0])
            for offset, a in enumerate(annotations):
                conn.execute(
                    "INSERT OR REPLACE INTO annotations(uid, content_hash, kind, points, text, author, "
                    "created, seq, image_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (a.uid, content_hash, a.kind, json.dumps([list(p) for p in a.points]), a.text, a.author,
                     a.created, next_seq + offset, image_path))

    def sequence_of(self, uid: str) -> int | None:
        row = self._conn.execute("SELECT seq FROM annotations WHERE uid = ?", (uid,)).fetchone()
        return int(row[0]) if row else None

    def remove(self, uids: Iterable[str]) -> None:
        with self._transaction() as conn:
            conn.executemany("DELETE FROM annotations WHERE uid = ?", [(u,) for u in uids])


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``; a failure rolls back and raises one readable line."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            raise AnnotationStoreError(f"the measurements store is busy or unwritable: {exc}") from exc
        return self._conn

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> None:
        try:
            if kind is None:
                self._conn.execute("COMMIT")
            else:
                self._conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise AnnotationStoreError(f"the measurement was not saved: {error}") from error
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise AnnotationStoreError(f"the measurement was not saved: {exc}") from exc

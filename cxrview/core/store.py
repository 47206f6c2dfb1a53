"""The SQLite plumbing under a workspace: opening safely, transactions, and errors in words.

* **Opening.** An existing file is first inspected through a read-only connection:
  a database that is not a cxrview workspace (another program's SQLite file) is
  refused *untouched* — nothing is created in it, not even WAL mode. A workspace
  whose file or folder cannot be written (read-only media, a shared data set) is
  opened read-only (``immutable`` when its folder is read-only, so SQLite needs no
  ``-wal``/``-shm`` files there); reading and exporting work, edits are refused
  with :class:`StoreReadOnly`.
* **Transactions** nest: the outermost ``BEGIN IMMEDIATE … COMMIT`` holds every
  inner one, so a command made of several steps (copy the dataset boxes, then move
  one) commits or vanishes as one. A failed COMMIT or an error SQLite already rolled
  back (a full disk does that) never hides the original error behind "cannot
  rollback".
* **Errors** from SQLite become :class:`WorkspaceError` subclasses whose message
  says what happened in words: :class:`StoreBusy` (locked by another program),
  :class:`StoreFull` (disk full), :class:`StoreReadOnly`, :class:`StoreCorrupt`,
  or :class:`StoreError`. :func:`transient` tells which of them a retry can cure:
  the GUI keeps such an edit and retries it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote


class WorkspaceError(Exception):
    """A workspace that cannot be opened or an edit that makes no sense; the message says why."""


class StoreError(WorkspaceError):
    """The database refused or failed an operation (the message says which and why)."""


class StoreBusy(StoreError):
    """Another program holds the write lock (another cxrview window, a running command)."""


class StoreFull(StoreError):
    """The disk (or the database's size limit) is full."""


class StoreReadOnly(StoreError):
    """The workspace is read-only (read-only media, permissions, or opened read-only)."""


class StoreCorrupt(StoreError):
    """The file is damaged or is not a database."""


class EditConflict(WorkspaceError):
    """Someone else changed what an undo/redo would change back: it is not done, their work stays."""


def transient(exc: BaseException) -> bool:
    """Could trying the same edit again later succeed (lock released, space freed, media writable)?"""
    return isinstance(exc, (StoreBusy, StoreFull, StoreReadOnly)) or (
        isinstance(exc, StoreError) and not isinstance(exc, StoreCorrupt))


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """One sentence for a SQLite error on ``path``."""
    name = str(getattr(exc, "sqlite_errorname", "") or "")
    text = str(exc)
    low = text.lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in low or "busy" in low:
        return StoreBusy(f"{path.name} is locked by another program (another cxrview window or a "
                         "running command)")
    if name.startswith("SQLITE_FULL") or "full" in low:
        return StoreFull(f"the disk holding {path} is full")
    if name.startswith("SQLITE_READONLY") or "readonly" in low or "read-only" in low:
        return StoreReadOnly(f"{path} is read-only")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")) or "malformed" in low or "not a database" in low:
        return StoreCorrupt(f"{path} is damaged ({text}); restore it from a backup or export what "
                            "can still be read")
    if name.startswith(("SQLITE_IOERR", "SQLITE_CANTOPEN")) or "i/o" in low or "unable to open" in low:
        return StoreError(f"cannot read or write {path} (disk input/output error: {text})")
    return StoreError(f"{path}: database error ({text})")


def writable(path: Path) -> bool:
    """Can we write ``path``? ``os.access`` answers yes to root even for a file or folder marked
    read-only (a shared data set, a mounted snapshot), so the permission bits count too."""
    try:
        return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def _uri(path: Path, **params: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"file:{quote(str(path.resolve()))}" + (f"?{query}" if query else "")


def read_only_connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection that cannot write ``path``; ``immutable`` when its folder is read-only (SQLite
    could not make the WAL index there, and nobody can be writing it)."""
    params = {"mode": "ro"} if writable(path.parent) else {"immutable": "1"}
    return sqlite3.connect(_uri(path, **params), uri=True, timeout=timeout, isolation_level=None,
                           check_same_thread=False)


def inspect(path: Path, required_tables: set[str]) -> str:
    """What ``path`` holds, looked at without writing: "workspace", "empty" (no tables: a new or
    zero-length file), "foreign" (another program's database) or "corrupt" (not SQLite at all)."""
    try:
        conn = read_only_connect(path)
    except sqlite3.Error:
        return "corrupt"
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            return "empty"
        if not required_tables <= tables:
            return "foreign"
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return "workspace" if row is not None else "foreign"
    except sqlite3.Error:
        return "corrupt"
    finally:
        conn.close()


class Connection:
    """One SQLite connection with nested transactions and errors in words (thread-safe via a lock)."""

    def __init__(self, path: Path, *, read_only: bool, timeout: float) -> None:
        self.path = path
        self.read_only = read_only
        try:
            if read_only:
                self._conn = read_only_connect(path, timeout=timeout)
            else:
                self._conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                                             check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise store_error(exc, path) from exc
        self._lock = threading.RLock()
        self._depth = 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work; inside another transaction it joins that one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            if self.read_only:
                raise StoreReadOnly(f"{self.path} is read-only (opened read-only: the file or its folder "
                                    "cannot be written)")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc
            self._depth = 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite rolls some failures back itself (a full disk): a ROLLBACK then would fail with
                # "no transaction is active" and hide the real reason.
                if self._conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise store_error(exc, self.path) from exc
                raise
            finally:
                self._depth = 0

    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    def fetchall(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        """``execute(...).fetchall()`` with errors raised while reading rows mapped too."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    def iterate(self, sql: str, params: tuple[Any, ...] | list[Any] = (), *, batch: int = 2000
                ) -> Iterator[Any]:
        """Rows of a large query a batch at a time (bounded memory), errors mapped."""
        try:
            with self._lock:
                cursor = self._conn.execute(sql, params)
            while True:
                with self._lock:
                    rows = cursor.fetchmany(batch)
                if not rows:
                    return
                yield from rows
        except sqlite3.Error as exc:
            raise store_error(exc, self.path) from exc

    def executescript(self, script: str) -> None:
        with self._lock:
            try:
                self._conn.executescript(script)
            except sqlite3.Error as exc:
                raise store_error(exc, self.path) from exc

    def data_version(self) -> int:
        """Changes when *another* connection commits (``PRAGMA data_version``): cheap polling."""
        return int(self.execute("PRAGMA data_version").fetchone()[0])


class Store:
    """What every part of a workspace reads and writes through: ``_db`` and its plumbing."""

    path: Path
    _db: Connection

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One atomic unit of work (nested ones join it; ROLLBACK on any error)."""
        return self._db.transaction()

    def execute(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, params)

    def fetchall(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[Any]:
        return self._db.fetchall(sql, params)

    def iterate(self, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> Iterator[Any]:
        """A large query's rows in batches (bounded memory)."""
        return self._db.iterate(sql, params)

    def meta(self, key: str) -> str | None:
        row = self.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

"""Prediction results cache: SQLite keyed by image content and exact model identity.

Re-opening a folder must not re-run the models: the JSON of each prediction
(not the CAM arrays, which are recomputed on demand) is stored under the
image's content hash plus each model's name, version and weights sha256, so a
retrained or fine-tuned bundle never serves stale results, and a renamed or
re-tagged file still hits (ADR 0003).

Robustness over cleverness: WAL mode so the GUI and a ``cxrview predict`` run
can read while another writes; one short transaction per write; a connection
per call (no thread affinity to worry about). A corrupted database file is
moved aside and recreated with a logged warning; a locked or unwritable one
just means "no cache" for that call. A cache must never crash a prediction.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrview.inference.card import ModelCard

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1  # bump when the stored JSON changes meaning: old rows then simply miss
DB_NAME = "predictions.sqlite3"
BUSY_TIMEOUT_S = 5.0


def model_identity(card: ModelCard | None) -> str:
    """``name@version#sha`` (sha truncated): changes whenever the weights do."""
    if card is None:
        return "-"
    return f"{card.name}@{card.version}#{(card.weights_sha256 or 'nosha')[:16]}"


@dataclass(frozen=True)
class CacheKey:
    image_hash: str
    classifier: str
    segmenter: str

    @classmethod
    def for_models(cls, image_hash: str, classifier: ModelCard, segmenter: ModelCard | None) -> CacheKey:
        return cls(image_hash, model_identity(classifier), model_identity(segmenter))

    def as_string(self) -> str:
        return f"v{SCHEMA_VERSION}|{self.image_hash}|{self.classifier}|{self.segmenter}"


def default_cache_path() -> Path:
    """``$CXRVIEW_CACHE_DIR`` (tests, portable installs) or the user cache directory."""
    override = os.environ.get("CXRVIEW_CACHE_DIR")
    if override:
        return Path(override) / DB_NAME
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("cxrview")) / DB_NAME


class ResultCache:
    """``get(key) -> dict | None`` and ``put(key, data)``; failures are logged, never raised."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._ready = False

    # -- connection handling -------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            if not self._ready:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, image_hash TEXT, "
                             "classifier TEXT, segmenter TEXT, json TEXT NOT NULL, created REAL)")
                self._ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def _recreate(self, exc: Exception) -> None:
        """Move a corrupted database aside (kept for inspection) and start empty."""
        log.warning("prediction cache %s is corrupted (%s); starting a new one", self.path, exc)
        self._ready = False
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            old = Path(f"{self.path}{suffix}")
            if old.exists():
                try:
                    os.replace(old, old.with_name(f"{old.name}.corrupt-{stamp}"))
                except OSError:
                    with contextlib.suppress(OSError):
                        old.unlink()

    def _run(self, what: str, action: Any, default: Any) -> Any:
        """Run ``action(conn)``; recreate once on corruption; any other failure → ``default``."""
        for attempt in range(2):
            try:
                with self._connection() as conn:
                    return action(conn)
            except sqlite3.DatabaseError as exc:
                corrupt = not isinstance(exc, sqlite3.OperationalError) or "malformed" in str(exc)
                if corrupt and attempt == 0:
                    self._recreate(exc)
                    continue
                log.warning("prediction cache %s: %s failed (%s)", self.path, what, exc)
                return default
            except OSError as exc:
                log.warning("prediction cache %s unavailable (%s)", self.path, exc)
                return default
        return default

    # -- API -------------------------------------------------------------------
    def get(self, key: CacheKey) -> dict[str, Any] | None:
        def action(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute("SELECT json FROM results WHERE key = ?", (key.as_string(),)).fetchone()
            if row is None:
                return None
            try:
                data = json.loads(row[0])
            except ValueError:
                return None  # a half-garbled row is a miss, not an error
            return data if isinstance(data, dict) else None

        return self._run("read", action, None)

    def put(self, key: CacheKey, data: dict[str, Any]) -> bool:
        """Store one result in its own transaction; True when written."""
        text = json.dumps(data)

        def action(conn: sqlite3.Connection) -> bool:
            with conn:  # BEGIN … COMMIT (rollback on error)
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                             (key.as_string(), key.image_hash, key.classifier, key.segmenter, text,
                              time.time()))
            return True

        return bool(self._run("write", action, False))

    def __len__(self) -> int:
        return int(self._run("count", lambda c: c.execute("SELECT COUNT(*) FROM results").fetchone()[0], 0))

"""Prediction results cache: SQLite keyed by everything that changes a prediction.

Re-opening a folder must not re-run the models: the JSON of each prediction
(not the CAM arrays, which are recomputed on demand) is stored under

* the hash of the **model input** (the default rendering after Modality LUT,
  VOI and MONOCHROME1 inversion — not the stored pixels: a MONOCHROME1
  relabelling of the same pixels is a different film to the models),
* the **header fields the input check reads** (Modality, Body Part, View
  Position, Patient's Age, Photometric Interpretation, Presentation LUT Shape),
* each model's identity: name, version, weights sha256 and a digest of the
  card's decision-making parts (thresholds, calibration, evidence, OOD
  statistics: a recalibrated card keeps the weights but changes the calls),
* the predictor's options and a schema version.

So a retrained, fine-tuned or recalibrated bundle never serves stale results,
a re-tagged film is checked again, and a renamed file still hits (ADR 0003).

Robustness over cleverness: WAL mode so the GUI and a ``cxrview predict`` run
can read while another writes; one short transaction per write; a connection
per call (no thread affinity to worry about). A corrupted database file is
moved aside and recreated with a logged warning; a locked or unwritable one
just means "no cache" for that call. A cache must never crash a prediction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from cxrview.inference.card import ModelCard

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SCHEMA_VERSION = 2  # bump when the stored JSON changes meaning: old rows then simply miss
DB_NAME = "predictions.sqlite3"
BUSY_TIMEOUT_S = 5.0


def model_identity(card: ModelCard | None) -> str:
    """``name@version#sha+card`` (truncated digests): changes whenever the weights or the
    card's decisions (thresholds, calibration, validated findings, OOD statistics) do."""
    if card is None:
        return "-"
    return f"{card.name}@{card.version}#{(card.weights_sha256 or 'nosha')[:16]}+{card.decision_digest()}"


def header_digest(header: dict[str, str | None]) -> str:
    """Short digest of the header values the input check reads (``validity.header_fields``)."""
    text = json.dumps({k: (v or "").strip().upper() for k, v in sorted(header.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CacheKey:
    image_hash: str  # hash of the model input (``core.model_input_hash``)
    header: str  # ``header_digest`` of the fields the input check reads
    classifier: str
    segmenter: str
    options: str = ""

    @classmethod
    def for_models(cls, image_hash: str, header: dict[str, str | None], classifier: ModelCard,
                   segmenter: ModelCard | None, *, options: str = "") -> CacheKey:
        return cls(image_hash, header_digest(header), model_identity(classifier),
                   model_identity(segmenter), options)

    def as_string(self) -> str:
        return (f"v{SCHEMA_VERSION}|{self.image_hash}|{self.header}|{self.classifier}|"
                f"{self.segmenter}|{self.options}")


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

    def _run(self, what: str, action: Callable[[sqlite3.Connection], _T], default: _T) -> _T:
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

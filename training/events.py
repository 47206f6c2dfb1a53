"""The JSON-lines progress protocol on stdout, and human-readable lines on stderr.

Each stdout line is one JSON object with at least ``event`` and ``time`` (Unix
seconds). Events: ``start``, ``phase``, ``epoch``, ``step``, ``metric``,
``checkpoint``, ``done``, ``error``. Under torchrun only rank 0 writes, so a
reader sees one stream whatever the process count.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import IO, Any


def _plain(value: Any) -> Any:
    """numpy/torch scalars and non-finite floats → JSON-safe Python values."""
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class EventLog:
    def __init__(self, *, stdout: IO[str] | None = None, stderr: IO[str] | None = None,
                 rank: int = 0, quiet: bool = False) -> None:
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.enabled = rank == 0
        self.quiet = quiet

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, "time": round(time.time(), 3), **_plain(fields)}
        self.stdout.write(json.dumps(record) + "\n")
        self.stdout.flush()

    def say(self, message: str) -> None:
        if self.enabled and not self.quiet:
            self.stderr.write(message + "\n")
            self.stderr.flush()

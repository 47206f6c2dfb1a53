""""Show AI output anyway", per image: the reader's choice for a film the input check withheld.

Remembered per image (the hash of what the model saw), never globally, in the settings, so
reopening the image or restarting the app keeps it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings

SHOWN_ANYWAY_KEY = "ai/shown_anyway"
SHOWN_ANYWAY_MAX = 500


def prediction_key(data: dict[str, Any]) -> str:
    """The per-image key of a prediction: the hash of what the model saw, else of the pixels."""
    return str(data.get("input_hash") or data.get("content_hash") or "")


class ShownAnyway:
    """Images whose withheld AI output the reader asked to see, most recent last (bounded).

    A one-element list comes back from INI settings as a plain string, hence the normalising.
    """

    def __init__(self, qs: QSettings, *, limit: int = SHOWN_ANYWAY_MAX) -> None:
        self.qs = qs
        self.limit = limit

    def keys(self) -> list[str]:
        value = self.qs.value(SHOWN_ANYWAY_KEY, [])
        if not value:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            return []
        return [str(v) for v in value if v]

    def __contains__(self, key: object) -> bool:
        return bool(key) and key in self.keys()

    def add(self, key: str) -> None:
        keys = [k for k in self.keys() if k != key] + [key]
        self.qs.setValue(SHOWN_ANYWAY_KEY, keys[-self.limit:])

    def remove(self, key: str) -> None:
        keys = self.keys()
        if key in keys:
            self.qs.setValue(SHOWN_ANYWAY_KEY, [k for k in keys if k != key])

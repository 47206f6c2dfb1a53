"""Typed access to the persisted settings (QSettings, org/app "cxrview").

One place knows the keys and their types: QSettings returns strings for everything on
some back-ends (INI), and a one-element list may come back as a plain string.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT = 10


def as_bool(value: object, default: bool) -> bool:
    """QSettings values as bool: INI back-ends hand booleans back as strings."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class AppSettings:
    """Settings the viewer persists between sessions."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self.qs = settings if settings is not None else QSettings()

    # -- recent files -----------------------------------------------------------------
    def recent_files(self) -> list[str]:
        value = self.qs.value("recent/files", [])
        if value is None:
            return []
        if isinstance(value, str):
            value = [value] if value else []
        if not isinstance(value, (list, tuple)):
            return []  # an unreadable entry is no recent files, not a crash
        return [str(v) for v in value][:MAX_RECENT]

    def add_recent(self, path: str) -> list[str]:
        files = [p for p in self.recent_files() if p != path]
        files.insert(0, path)
        files = files[:MAX_RECENT]
        self.qs.setValue("recent/files", files)
        return files

    def clear_recent(self) -> None:
        self.qs.setValue("recent/files", [])

    # -- folders / theme ----------------------------------------------------------------
    def last_folder(self) -> str:
        return str(self.qs.value("paths/last_folder", "") or "")

    def set_last_folder(self, folder: str) -> None:
        self.qs.setValue("paths/last_folder", folder)

    def theme(self) -> str:
        value = str(self.qs.value("ui/theme", "dark") or "dark")
        return value if value in ("dark", "light") else "dark"

    def set_theme(self, theme: str) -> None:
        self.qs.setValue("ui/theme", theme)

    # -- window layout ------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        value = self.qs.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    def window_state(self) -> QByteArray | None:
        value = self.qs.value("window/state")
        return value if isinstance(value, QByteArray) else None

    def save_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self.qs.setValue("window/geometry", geometry)
        self.qs.setValue("window/state", state)

    def dock_visible(self, name: str, default: bool = True) -> bool:
        return as_bool(self.qs.value(f"docks/{name}"), default)

    def set_dock_visible(self, name: str, visible: bool) -> None:
        self.qs.setValue(f"docks/{name}", visible)

    def sync(self) -> None:
        self.qs.sync()

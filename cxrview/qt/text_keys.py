"""Keys typed into a text field belong to that field, never to a window shortcut.

The review actions use bare keys (digits, U, N, B, A, Return, Delete) as window-wide shortcuts.
Qt lets a line edit claim the printable keys it understands, but not Return, Enter, Delete or
Escape: those reach the shortcut map first, so Return in the note field (or the worklist's file
filter) would confirm the image on screen. :func:`keep_keys` claims every key pressed without
Ctrl, Alt or Meta for the field (``ShortcutOverride`` accepted), so the field receives it as an
ordinary key press; shortcuts with Ctrl/Alt (undo, Alt+1…4) still work while typing.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QWidget

_COMMAND_MODIFIERS = (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                      | Qt.KeyboardModifier.MetaModifier)


class _TextKeys(QObject):
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # Qt override
        if event.type() == QEvent.Type.ShortcutOverride and isinstance(event, QKeyEvent) \
                and not (event.modifiers() & _COMMAND_MODIFIERS):
            event.accept()  # the field gets the key press; no shortcut fires
            return True
        return False


def keep_keys(*fields: QWidget) -> None:
    """Make plain keys typed into these fields (line edits, text boxes) reach only the field."""
    for field in fields:
        guard = _TextKeys(field)  # parented: lives as long as the field
        field.installEventFilter(guard)

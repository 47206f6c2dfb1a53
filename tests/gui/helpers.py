"""Event synthesis helpers: direct QEvents are deterministic on the offscreen platform."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget


def send_mouse(widget: QWidget, kind: QEvent.Type, pos: QPointF | QPoint,
               button: Qt.MouseButton, buttons: Qt.MouseButton | None = None) -> None:
    pos = QPointF(pos)
    if buttons is None:
        buttons = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseButtonRelease else button
    event = QMouseEvent(kind, pos, QPointF(widget.mapToGlobal(pos)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(widget: QWidget, button: Qt.MouseButton, start: QPointF | QPoint,
         end: QPointF | QPoint, steps: int = 5) -> None:
    """Press at ``start``, move in ``steps`` to ``end``, release."""
    start, end = QPointF(start), QPointF(end)
    send_mouse(widget, QEvent.Type.MouseButtonPress, start, button)
    for i in range(1, steps + 1):
        p = start + (end - start) * (i / steps)
        send_mouse(widget, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button)
    send_mouse(widget, QEvent.Type.MouseButtonRelease, end, button)


def wheel(widget: QWidget, pos: QPointF | QPoint, notches: float = 1.0) -> None:
    pos = QPointF(pos)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos)), QPoint(0, 0),
                        QPoint(0, round(120 * notches)), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)

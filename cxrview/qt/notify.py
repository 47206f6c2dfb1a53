"""How the GUI's parts tell the reader something without blocking the reading.

Errors go to a dismissible red strip above the image and to the status bar; everything
else (progress, hints, results) to the status bar only. Controllers receive a
:class:`Notifier` instead of the window, so what they may do to it is exactly this.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QStatusBar, QToolButton, QWidget

ERROR_MS = 15000  # errors stay long enough to be read after looking back from the image
STATUS_MS = 8000


class ErrorBanner(QFrame):
    """A dismissible red strip above the image: errors must be seen but must not block."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("error_banner")
        self.setStyleSheet("#error_banner { background: #7a1f1f; }"
                           "#error_banner QLabel { color: white; }")
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 4, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.hide()

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class Notifier:
    """Non-blocking messages: :meth:`error` (banner + status bar) and :meth:`status`."""

    def __init__(self, banner: ErrorBanner, status_bar: QStatusBar) -> None:
        self._banner = banner
        self._status_bar = status_bar

    def error(self, message: str) -> None:
        self._banner.show_message(message)
        self._status_bar.showMessage(message, ERROR_MS)

    def status(self, message: str, timeout_ms: int = STATUS_MS) -> None:
        """A status-bar message; ``timeout_ms=0`` keeps it until the next one."""
        self._status_bar.showMessage(message, timeout_ms)

"""The application icon and the About dialog (its text comes from the Qt-free :mod:`cxrview.about`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from cxrview import about

ICON_NAME = "cxrview"
ICON_SIZES = (16, 32, 48, 64, 128, 256)


def icons_dir() -> Path | None:
    """``cxrview/resources/icons`` inside the package when it carries its resources, else the
    checkout's ``resources/icons``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "resources" / "icons", package.parent / "resources" / "icons"):
        if (candidate / f"{ICON_NAME}.svg").is_file():
            return candidate
    return None


def app_icon() -> QIcon:
    """The application icon: the rendered PNG sizes (crisp at 16 px) and the SVG for the rest."""
    icon = QIcon()
    folder = icons_dir()
    if folder is None:
        return icon
    for size in ICON_SIZES:
        png = folder / f"{ICON_NAME}-{size}.png"
        if png.is_file():
            icon.addFile(str(png), QSize(size, size))
    icon.addFile(str(folder / f"{ICON_NAME}.svg"))
    return icon


class AboutDialog(QDialog):
    """Help › About: version, intended use, the active models and every licence that applies."""

    def __init__(self, info: about.About, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("about_dialog")
        self.setWindowTitle(f"About {about.APP_NAME}")
        self.info = info
        logo = QLabel(self)
        logo.setObjectName("about_logo")
        logo.setPixmap(app_icon().pixmap(QSize(64, 64)))
        logo.setAlignment(Qt.AlignmentFlag.AlignTop)
        self.browser = QTextBrowser(self)
        self.browser.setObjectName("about_text")
        self.browser.setOpenExternalLinks(False)  # offline: nothing to open
        self.browser.setHtml(about.about_html(info))
        row = QHBoxLayout()
        row.addWidget(logo)
        row.addWidget(self.browser, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        buttons.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(buttons)
        self.resize(720, 640)

    def plain_text(self) -> str:
        return self.browser.toPlainText()

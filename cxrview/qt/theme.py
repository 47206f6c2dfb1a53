"""Dark (default) and light themes: Fusion style plus an explicit palette.

A reading room is dark; a bright UI around a radiograph changes perceived contrast, so
the dark theme is the default. The palette is explicit rather than the platform's so
screenshots and user reports look the same on every OS.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("dark", "light")


def dark_palette() -> QPalette:
    p = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 48), QColor(220, 220, 220)
    disabled = QColor(120, 120, 120)
    accent = QColor(42, 130, 218)
    roles = {
        QPalette.ColorRole.Window: window,
        QPalette.ColorRole.WindowText: text,
        QPalette.ColorRole.Base: base,
        QPalette.ColorRole.AlternateBase: QColor(40, 40, 42),
        QPalette.ColorRole.ToolTipBase: QColor(60, 60, 60),
        QPalette.ColorRole.ToolTipText: text,
        QPalette.ColorRole.PlaceholderText: disabled,
        QPalette.ColorRole.Text: text,
        QPalette.ColorRole.Button: window,
        QPalette.ColorRole.ButtonText: text,
        QPalette.ColorRole.BrightText: QColor(255, 80, 80),
        QPalette.ColorRole.Link: accent,
        QPalette.ColorRole.Highlight: accent,
        QPalette.ColorRole.HighlightedText: QColor(255, 255, 255),
        QPalette.ColorRole.Light: QColor(70, 70, 70),
        QPalette.ColorRole.Midlight: QColor(60, 60, 60),
        QPalette.ColorRole.Mid: QColor(50, 50, 50),
        QPalette.ColorRole.Dark: QColor(20, 20, 20),
        QPalette.ColorRole.Shadow: QColor(0, 0, 0),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText,
                 QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, disabled)
    return p


def apply_theme(app: QApplication, theme: str) -> str:
    """Apply "dark" or "light" (anything else means dark); returns the applied name."""
    theme = theme if theme in THEMES else "dark"
    app.setStyle("Fusion")
    if theme == "dark":
        app.setPalette(dark_palette())
    else:
        style = app.style()
        app.setPalette(style.standardPalette())
    app.setProperty("cxrview_theme", theme)
    return theme


def current_theme(app: QApplication) -> str:
    value = app.property("cxrview_theme")
    return value if value in THEMES else "dark"

"""The application icon (SVG + rendered PNGs, on the window and in the .desktop entry) and Help › About."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSize
from PySide6.QtGui import QImage

from cxrview.qt.identity import ICON_SIZES, AboutDialog, app_icon, icons_dir
from tests.conftest import REPO_ROOT


def test_icon_svg_and_every_png_size_exist_and_match_their_size() -> None:
    folder = icons_dir()
    assert folder is not None and (folder / "cxrview.svg").read_text().lstrip().startswith("<?xml")
    for size in ICON_SIZES:
        image = QImage(str(folder / f"cxrview-{size}.png"))
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel()
        # legible: the 16 px icon has both the dark film and the light lungs in it
        greys = {QImage.pixelColor(image, x, y).lightness() for x in range(size) for y in range(size)
                 if QImage.pixelColor(image, x, y).alpha() == 255}
        assert min(greys) < 60 and max(greys) > 200


def test_the_pngs_are_what_the_script_renders_from_the_svg(tmp_path: Path) -> None:
    """packaging/render_icons.py regenerates them: rendered again, they differ by at most rounding."""
    result = subprocess.run([sys.executable, str(REPO_ROOT / "packaging" / "render_icons.py"), str(tmp_path)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    for size in ICON_SIZES:
        fresh = QImage(str(tmp_path / f"cxrview-{size}.png"))
        shipped = QImage(str(icons_dir() / f"cxrview-{size}.png"))
        assert fresh.size() == shipped.size()
        worst = max(abs(fresh.pixelColor(x, y).lightness() - shipped.pixelColor(x, y).lightness())
                    for x in range(size) for y in range(0, size, max(1, size // 32)))
        assert worst <= 2, f"{size} px: the committed PNG is stale (re-run packaging/render_icons.py)"


def test_window_and_application_have_the_icon(window) -> None:
    from PySide6.QtGui import QGuiApplication

    assert not window.windowIcon().isNull()
    sizes = {(s.width(), s.height()) for s in window.windowIcon().availableSizes()}
    assert {(16, 16), (32, 32), (256, 256)} <= sizes
    assert not app_icon().pixmap(QSize(16, 16)).isNull()
    from cxrview.qt.app import ensure_app

    ensure_app()
    assert not QGuiApplication.windowIcon().isNull()


def test_desktop_entry_names_the_icon_and_the_installer_installs_it(tmp_path: Path) -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # type: ignore[assignment,method-assign]
    entry.read(REPO_ROOT / "packaging" / "cxrview.desktop")
    desktop = entry["Desktop Entry"]
    assert desktop["Icon"] == "cxrview" and desktop["Exec"].startswith("cxrview")
    result = subprocess.run(["sh", str(REPO_ROOT / "packaging" / "install-desktop.sh"), str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "applications" / "cxrview.desktop").is_file()
    assert (tmp_path / "icons/hicolor/scalable/apps/cxrview.svg").is_file()
    for size in ICON_SIZES:
        assert (tmp_path / f"icons/hicolor/{size}x{size}/apps/{desktop['Icon']}.png").is_file()


@pytest.mark.slow
def test_help_about_shows_version_models_use_and_licences(window, qtbot) -> None:
    from cxrview import __version__

    action = window.findChild(type(window.menuBar().actions()[0]), "action_about")
    assert action is not None
    action.trigger()
    qtbot.waitUntil(lambda: window.findChild(AboutDialog, "about_dialog") is not None, timeout=20000)
    dialog = window.findChild(AboutDialog, "about_dialog")
    text = dialog.plain_text()
    assert f"cxrview {__version__}" in text
    assert "Research and second reading; not a certified medical device." in text
    assert "Apache-2.0" in text
    for model in dialog.info.models:  # the models this window predicts with, from their cards
        assert model.problem is None and f"{model.name} {model.version}" in text
    assert {m.task for m in dialog.info.models} == {"classifier", "segmenter"}
    for words in ("NIH ChestX-ray14", "CC0", "JSRT", "research and education", "Wingspan", "MIT",
                  "RSNA", "COVID-19 Radiography Database"):
        assert words in text, words
    for package in ("pydicom", "imagecodecs", "PySide6", "numpy"):
        assert package in text, package
    assert "LGPL-3.0-only" in text and "pylibjpeg-libjpeg" not in text
    dialog.close()

"""Render resources/icons/cxrview.svg to the PNG sizes desktops ask for (16…256 px).

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/render_icons.py [OUT_DIR]

OUT_DIR defaults to resources/icons (beside the SVG); the tests render into a temporary one to
prove the committed PNGs are what the SVG gives.

Uses Qt's own SVG renderer (QSvgRenderer), so the PNGs look exactly as the SVG does in the app.
Re-run after editing the SVG and commit the PNGs with it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SOURCE = ICONS / "cxrview.svg"
SIZES = (16, 32, 48, 64, 128, 256)


def render(size: int, out: Path = ICONS) -> Path:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise SystemExit(f"{SOURCE}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    target = out / f"cxrview-{size}.png"
    if not image.save(str(target), "PNG"):
        raise SystemExit(f"could not write {target}")
    return target


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else ICONS
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    for size in SIZES:
        print(render(size, out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Painting what is written over a film (corner text, orientation markers, LOSSY badge).

What to write comes from :mod:`cxrview.core.overlay_text`; this module only draws it, on the
canvas (``drawForeground``) and on exported views alike, in device pixels with a dark halo
so it stays readable on bone and on air.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPen

TEXT_COLOR = QColor(235, 235, 235)
MARKER_COLOR = QColor(255, 215, 90)
BADGE_COLOR = QColor(230, 60, 60)


@dataclass
class HudContent:
    corners: dict[str, list[str]] = field(default_factory=dict)
    markers: dict[str, str] = field(default_factory=dict)  # edge → patient direction
    badge: str | None = None


def _font(pixels: int, bold: bool = False) -> QFont:
    font = QFont()
    font.setPixelSize(pixels)
    font.setBold(bold)
    return font


def _outlined(painter: QPainter, at: QPointF, text: str, font: QFont, color: QColor) -> None:
    path = QPainterPath()
    path.addText(at, font, text)
    painter.setPen(QPen(QColor(0, 0, 0, 200), 3.0))
    painter.drawPath(path)
    painter.fillPath(path, QBrush(color))


def paint_hud(painter: QPainter, rect: QRectF, content: HudContent, *, scale: float = 1.0) -> None:
    """Draw ``content`` inside ``rect`` (device pixels); ``scale`` enlarges it for exports."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    font = _font(round(12 * scale))
    metrics = QFontMetricsF(font)
    line_h = metrics.height()
    margin = 6 * scale
    for corner, lines in content.corners.items():
        top = corner.startswith("top")
        left = corner.endswith("left")
        bottom_first = rect.bottom() - margin - (len(lines) - 1) * line_h
        y0 = rect.top() + margin + metrics.ascent() if top else bottom_first
        if not top:
            y0 -= metrics.descent()
        if corner == "top_left" and content.badge:
            y0 += line_h * 1.6  # the badge sits above the top-left text
        for i, line in enumerate(lines):
            width = metrics.horizontalAdvance(line)
            x = rect.left() + margin if left else rect.right() - margin - width
            _outlined(painter, QPointF(x, y0 + i * line_h), line, font, TEXT_COLOR)
    if content.markers:
        marker_font = _font(round(18 * scale), bold=True)
        mm = QFontMetricsF(marker_font)
        for edge, text in content.markers.items():
            w = mm.horizontalAdvance(text)
            if edge == "left":
                at = QPointF(rect.left() + margin, rect.center().y() + mm.ascent() / 2)
            elif edge == "right":
                at = QPointF(rect.right() - margin - w, rect.center().y() + mm.ascent() / 2)
            elif edge == "top":
                at = QPointF(rect.center().x() - w / 2, rect.top() + margin + mm.ascent())
            else:
                at = QPointF(rect.center().x() - w / 2, rect.bottom() - margin - mm.descent())
            _outlined(painter, at, text, marker_font, MARKER_COLOR)
    if content.badge:
        badge_font = _font(round(12 * scale), bold=True)
        bm = QFontMetricsF(badge_font)
        box = QRectF(rect.left() + margin, rect.top() + margin,
                     bm.horizontalAdvance(content.badge) + 10 * scale, bm.height() + 4 * scale)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BADGE_COLOR)
        painter.drawRoundedRect(box, 3 * scale, 3 * scale)
        painter.setPen(QColor(255, 255, 255))
        painter.setFont(badge_font)
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, content.badge)
    painter.restore()

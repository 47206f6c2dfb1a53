"""Export what the reader sees: the current view(s) as PNG, and a one-page findings report as PDF.

The PNG is the film at full resolution as displayed (window, inversion, rotation / flips),
with the overlays and reading marks when asked, and the corner text — anonymised by default:
identifying fields are left out unless the reader asks for them. The report is
:class:`cxrview.core.report.ReportContent`'s HTML printed by Qt (``QTextDocument`` onto a
``QPdfWriter``), with the key image(s) rendered the same way.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QMarginsF, QObject, QRectF, QSizeF, Qt, QUrl
from PySide6.QtGui import QImage, QPageLayout, QPageSize, QPainter, QPdfWriter, QTextDocument, QTransform
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from cxrview.core.measure import TITLES
from cxrview.core.report import ReportContent
from cxrview.qt.actions import ActionSet, ActionSpec
from cxrview.qt.notify import Notifier
from cxrview.qt.viewer.canvas import ImageCanvas
from cxrview.qt.viewer.hud import paint_hud
from cxrview.qt.viewer.image_item import pixels_to_qimage

HUD_REFERENCE_WIDTH = 900.0  # px: corner text is sized as on a viewport this wide


def render_view(canvas: ImageCanvas, *, overlays: bool = True, text: bool = True,
                anonymised: bool = True) -> QImage:
    """The canvas' film at one device pixel per image pixel, as displayed (a null image when empty)."""
    image, pixels = canvas.image(), canvas.display_pixels()
    if image is None or pixels is None:
        return QImage()
    transform = canvas.item_transform()
    bounds = transform.mapRect(QRectF(0, 0, image.width, image.height))
    out = QImage(round(bounds.width()), round(bounds.height()), QImage.Format.Format_RGB32)
    out.fill(0)
    painter = QPainter(out)
    try:
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.setTransform(transform)
        painter.drawImage(0, 0, pixels_to_qimage(pixels))
        if overlays:
            rect = QRectF(0, 0, image.width, image.height)
            for layer in canvas.layers():
                if layer.isVisible():
                    painter.save()
                    painter.setOpacity(layer.opacity())
                    layer.paint_overlay(painter, rect)
                    painter.restore()
        painter.setTransform(QTransform())
        content = canvas.hud_content(anonymised=anonymised, corners=text)
        if not text:
            content.corners = {}
        paint_hud(painter, QRectF(out.rect()), content, scale=max(out.width() / HUD_REFERENCE_WIDTH, 1.0))
    finally:
        painter.end()
    return out


def write_report_pdf(path: str | Path, html: str, images: Mapping[str, QImage]) -> int:
    """Print ``html`` (its ``<img src=NAME>`` from ``images``) to an A4 PDF; the page count."""
    writer = QPdfWriter(str(path))
    writer.setPageLayout(QPageLayout(QPageSize(QPageSize.PageSizeId.A4), QPageLayout.Orientation.Portrait,
                                     QMarginsF(15, 15, 15, 15), QPageLayout.Unit.Millimeter))
    writer.setResolution(150)
    writer.setTitle("cxrview findings report")
    doc = _document(html, images)
    doc.print_(writer)
    return doc.pageCount()


def render_report_page(html: str, images: Mapping[str, QImage], *, width: int = 1240) -> QImage:
    """The report's first page as an image (A4 proportions), for previews and screenshots."""
    doc = _document(html, images)
    height = round(width * 297 / 210)
    doc.setPageSize(QSizeF(width - 120, height - 120))
    page = QImage(width, height, QImage.Format.Format_RGB32)
    page.fill(0xFFFFFFFF)
    painter = QPainter(page)
    try:
        painter.translate(60, 60)
        doc.drawContents(painter, QRectF(0, 0, width - 120, height - 120))
    finally:
        painter.end()
    return page


def _document(html: str, images: Mapping[str, QImage]) -> QTextDocument:
    doc = QTextDocument()
    for name, picture in images.items():
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), picture)
    doc.setHtml(html)
    return doc


def key_image(picture: QImage, max_side: int = 1000) -> QImage:
    if max(picture.width(), picture.height()) <= max_side:
        return picture
    return picture.scaled(max_side, max_side, Qt.AspectRatioMode.KeepAspectRatio,
                          Qt.TransformationMode.SmoothTransformation)


class ReportDialog(QDialog):
    """The reader's impression and the anonymisation choice before writing the PDF."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Findings Report")
        layout = QVBoxLayout(self)
        self.impression = QPlainTextEdit(self)
        self.impression.setPlaceholderText("Impression (free text)")
        layout.addWidget(self.impression)
        self.anonymised = QCheckBox("Anonymised (pseudonym instead of name and ID)", self)
        self.anonymised.setChecked(True)
        layout.addWidget(self.anonymised)
        choice = QDialogButtonBox.StandardButton
        buttons = QDialogButtonBox(choice.Ok | choice.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class ExportController(QObject):
    """File › Export View as PNG and Findings Report; the work is in the two methods below."""

    def __init__(self, main: ImageCanvas, canvases: Callable[[], Sequence[ImageCanvas]],
                 notifier: Notifier, *, shown: Callable[[], Mapping[str, Any] | None],
                 dialog_parent: QWidget | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.main = main  # the current film's viewport
        self.canvases = canvases  # the visible viewports in layout order
        self.notifier = notifier
        self.shown = shown
        self.dialog_parent = dialog_parent
        self.actions = ActionSet(self, [
            ActionSpec("export_png", "Export View as &PNG…", "tools.export", self.export_png_dialog,
                       keys=("Ctrl+Shift+E",), tip="Anonymised corner text; overlays and marks as shown"),
            ActionSpec("export_report", "Findings &Report (PDF)…", "tools.export", self.export_report_dialog,
                       keys=("Ctrl+Shift+P",)),
        ])

    def _main(self) -> ImageCanvas | None:
        return self.main if self.main.image() is not None else None

    def export_png(self, path: str | Path, *, overlays: bool = True, text: bool = True,
                   anonymised: bool = True) -> QImage | None:
        """The current view (several viewports side by side, as laid out) written to ``path``."""
        pictures = [render_view(c, overlays=overlays, text=text, anonymised=anonymised)
                    for c in self.canvases() if c.image() is not None]
        if not pictures:
            self.notifier.error("Nothing to export: no image is shown.")
            return None
        out = pictures[0] if len(pictures) == 1 else _side_by_side(pictures)
        target = Path(path) if str(path).lower().endswith(".png") else Path(f"{path}.png")
        # The format comes from the suffix (the stubs' bytes format argument fails at run time).
        if not out.save(str(target)):
            self.notifier.error(f"Cannot write {target}")
            return None
        self.notifier.status(f"View exported to {target}")
        return out

    def report_html(self, *, impression: str = "", anonymised: bool = True) -> tuple[str, dict[str, QImage]]:
        main = self._main()
        if main is None or main.image() is None:
            return "", {}
        image = main.image()
        assert image is not None
        pictures = {f"key{i}.png": key_image(render_view(c, anonymised=True))
                    for i, c in enumerate(self.canvases()) if c.image() is not None}
        layer = main.marks_layer()
        marks = []
        for mark in layer.annotations():
            measured = layer.measured(mark)
            marks.append((TITLES[mark.kind], mark.text if mark.kind in ("arrow", "text") else
                          (measured.label if measured else "")))
        content = ReportContent(image, anonymised=anonymised, shown=self.shown(), measurements=marks,
                                impression=impression, key_images=list(pictures),
                                generated=_dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
        return content.html(), pictures

    def export_report(self, path: str | Path, *, impression: str = "", anonymised: bool = True) -> int:
        html, pictures = self.report_html(impression=impression, anonymised=anonymised)
        if not html:
            self.notifier.error("Nothing to report: no image is shown.")
            return 0
        pages = write_report_pdf(path, html, pictures)
        self.notifier.status(f"Report written to {path} ({pages} page{'s' * (pages != 1)})")
        return pages

    def export_png_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Export View", "view.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    def export_report_dialog(self) -> None:
        dialog = ReportDialog(self.dialog_parent)
        if not dialog.exec():
            return
        path, _ = QFileDialog.getSaveFileName(self.dialog_parent, "Findings Report", "report.pdf",
                                              "PDF (*.pdf)")
        if path:
            self.export_report(path, impression=dialog.impression.toPlainText(),
                               anonymised=dialog.anonymised.isChecked())


def _side_by_side(pictures: list[QImage]) -> QImage:
    height = max(p.height() for p in pictures)
    out = QImage(sum(p.width() for p in pictures), height, QImage.Format.Format_RGB32)
    out.fill(0)
    painter = QPainter(out)
    try:
        x = 0
        for picture in pictures:
            painter.drawImage(x, (height - picture.height()) // 2, picture)
            x += picture.width()
    finally:
        painter.end()
    return out

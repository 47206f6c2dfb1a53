"""Export: the current view as PNG (full resolution, as displayed, anonymised text by default)
and a one-page findings report as PDF; the files' contents are checked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PySide6.QtGui import QImage

from cxrview.core.report import RESEARCH_STATEMENT, ReportContent
from cxrview.qt.export_view import render_report_page
from tests.unit.dicom_factory import make_dicom

LOAD_TIMEOUT = 15000
SHOWN = {"withheld": False, "forced": False, "findings": {
    "Effusion": {"validated": True, "positive": True, "probability": 0.81, "sensitivity": 0.8,
                 "sensitivity_ci": [0.7, 0.88], "specificity": 0.9, "specificity_ci": [0.87, 0.93]},
    "Hernia": {"validated": False, "positive": False, "probability": 0.3}}}


def _open(qtbot, window, path: Path) -> None:
    with qtbot.waitSignal(window.image_shown, timeout=LOAD_TIMEOUT):
        window.open_paths([str(path)])


def _film(tmp_path: Path) -> Path:
    pixels = np.tile(np.linspace(0, 4000, 320).astype(np.uint16), (240, 1))
    return make_dicom(tmp_path / "f.dcm", pixels, bits_stored=12, PatientName="Doe^Jane",
                      PatientID="SECRET-42", StudyDate="20240301", ViewPosition="PA", PixelSpacing=[0.2, 0.2])


def test_png_of_the_view_is_full_resolution_turned_and_anonymised(qtbot, window, tmp_path: Path) -> None:
    _open(qtbot, window, _film(tmp_path))
    c = window.canvas
    c.add_measurement((20.0, 20.0), (220.0, 20.0))
    out = tmp_path / "view.png"
    plain = window.exports.export_png(tmp_path / "plain.png", overlays=False, text=False)
    assert plain is not None
    saved = QImage(str(tmp_path / "plain.png"))
    assert (saved.width(), saved.height()) == (320, 240)
    grey = np.array([saved.pixelColor(x, 120).red() for x in (0, 160, 319)])
    assert list(grey) == [int(c.display_pixels()[120, x]) for x in (0, 160, 319)]  # as displayed
    window.actions_["rotate_cw"].trigger()
    assert window.exports.export_png(out) is not None
    turned = QImage(str(out))
    assert (turned.width(), turned.height()) == (240, 320)
    # The mark was drawn: the yellow line sits where the rotation puts image row 20 (column 219).
    assert turned.pixelColor(219, 120).red() > 200 and turned.pixelColor(219, 120).blue() < 100
    html, _ = window.exports.report_html(anonymised=True)
    assert "SECRET-42" not in html and "Doe" not in html
    html, _ = window.exports.report_html(anonymised=False)
    assert "SECRET-42" in html


def test_pdf_report_is_one_page_with_findings_measurements_and_statement(qtbot, window,
                                                                         tmp_path: Path) -> None:
    _open(qtbot, window, _film(tmp_path))
    window.canvas.add_measurement((20.0, 20.0), (220.0, 20.0))
    window.ai.shown = SHOWN
    pdf = tmp_path / "report.pdf"
    pages = window.exports.export_report(pdf, impression="Small right effusion <b>?</b>")
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and pages == 1
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    html, pictures = window.exports.report_html(impression="Small right effusion <b>?</b>")
    assert "Effusion" in html and "81.0%" in html and "80% (95% CI 70%–88%)" in html
    assert "Not validated (never called positive): Hernia" in html
    assert "40.0 mm" in html and "&lt;b&gt;?&lt;/b&gt;" in html and RESEARCH_STATEMENT in html
    assert [(p.width(), p.height()) for p in pictures.values()] == [(320, 240)]
    page = render_report_page(html, pictures, width=620)
    assert page.width() == 620 and page.height() == round(620 * 297 / 210)


def test_withheld_film_says_so_in_the_report(tmp_path: Path) -> None:
    from cxrview.core import load_image

    image = load_image(_film(tmp_path))
    html = ReportContent(image, shown={"withheld": True, "forced": False, "findings": {},
                                       "validity": {"reasons": ["lateral view"]}}).html()
    assert "AI output withheld: lateral view." in html and "Patient " in html and "SECRET" not in html

"""AI output that tells the truth at a glance (issue #11, GUI part).

Synthetic predictions in the new ``Prediction.to_dict()`` schema drive the findings dock
and the AI controller directly (no model runs): not-validated findings are never shown
positive, the order and the evidence in tooltips, the disclaimer, and the withheld
banner with its per-image "Show AI output anyway".
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QLabel

from cxrview.qt.ai.shown_anyway import SHOWN_ANYWAY_KEY, ShownAnyway
from cxrview.qt.ai.tasks import AIResult
from cxrview.qt.docks.findings_dock import (
    DISCLAIMER,
    FORCED_TITLE,
    NOT_VALIDATED_HEADER,
    WITHHELD_TITLE,
    FindingsDock,
)

LAYERS = ("heatmap", "boxes", "contours", "ctr")
REASONS = ["lateral view: frontal chest radiographs only", "image looks inverted (bright lungs)"]


def finding(p: float, *, validated: bool = True, positive: bool | None = None, n_pos: int = 40,
            threshold: float = 0.5) -> dict[str, Any]:
    if validated:
        return {"probability": p, "validated": True,
                "positive": p >= threshold if positive is None else positive, "threshold": threshold,
                "sensitivity": 0.78, "specificity": 0.9, "sensitivity_ci": [0.7, 0.85],
                "specificity_ci": [0.87, 0.93], "auroc": 0.88, "auroc_ci": [0.84, 0.91],
                "n_positives": n_pos, "note": ""}
    return {"probability": p, "validated": False, "positive": bool(positive), "threshold": None,
            "sensitivity": None, "specificity": None, "sensitivity_ci": None, "specificity_ci": None,
            "auroc": None, "auroc_ci": None, "n_positives": n_pos,
            "note": f"not validated: {n_pos} positives on validation (needs 15)"}


def default_findings() -> dict[str, dict[str, Any]]:
    return {
        "Atelectasis": finding(0.30),
        "Cardiomegaly": finding(0.65),
        "Effusion": finding(0.81),
        "Infiltration": finding(0.42),
        # A dict that says positive for a not-validated finding: the GUI must not believe it.
        "Hernia": finding(0.95, validated=False, positive=True, n_pos=3),
        "Mass": finding(0.20, validated=False, n_pos=8),
        "Pneumonia": finding(0.05, validated=False, n_pos=1),
    }


def fake_prediction(*, input_hash: str = "in-aaaa", content_hash: str = "px1-test", withheld: bool = False,
                    reasons: list[str] | None = None, warnings: list[str] | None = None,
                    findings: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    reasons = list(REASONS if reasons is None and withheld else reasons or [])
    square = [[60, 60], [120, 60], [120, 140], [60, 140]]
    return {
        "path": "fake.png", "content_hash": content_hash, "input_hash": input_hash, "image_size": [256, 256],
        "model": {"name": "fake-classifier", "version": "2", "identity": "fake@2",
                  "segmenter": {"name": "fake-seg", "version": "1"}, "device": "cpu"},
        "findings": default_findings() if findings is None else findings,
        "boxes": [{"finding": "Effusion", "x": 20, "y": 30, "w": 60, "h": 50, "score": 0.8, "heat": 0.7},
                  {"finding": "Hernia", "x": 100, "y": 150, "w": 40, "h": 30, "score": 0.9, "heat": 0.9}],
        "ctr": {"value": 0.61, "heart": [80, 180, 160], "thorax": [30, 230, 160], "flag": "cardiomegaly?"},
        "masks": {"heart": [square], "left_lung": [[[130, 40], [220, 40], [220, 200], [130, 200]]]},
        "thorax": [[20, 20], [236, 20], [236, 236], [20, 236]],
        "validity": {"ok": not withheld, "warnings": reasons + list(warnings or []), "scores": {},
                     "withheld": withheld, "reasons": reasons},
        "withheld": withheld,
        "timing_ms": {},
    }


def _heatmaps(*names: str) -> dict[str, np.ndarray]:
    return {n: np.full((16, 16, 4), 200, dtype=np.uint8) for n in names}


# -- the dock alone ----------------------------------------------------------------------------

@pytest.fixture
def dock(qtbot):
    d = FindingsDock()
    qtbot.addWidget(d)
    d.resize(340, 700)
    d.show()
    qtbot.waitExposed(d)
    return d


def test_order_and_not_validated_never_positive(dock):
    dock.set_prediction(fake_prediction())
    # validated positives by probability, validated below the operating point, then not validated
    assert dock.finding_names() == ["Effusion", "Cardiomegaly", "Infiltration", "Atelectasis",
                                    "Hernia", "Mass", "Pneumonia"]
    hernia = dock.row("Hernia")
    assert hernia is not None and not hernia.positive and not hernia.validated
    assert not hernia.is_bold()
    assert hernia.bar.threshold is None and hernia.bar.muted  # no operating-point marker
    assert hernia.note is not None and hernia.note.text() == "not validated: 3 positives"
    assert dock.row("Pneumonia").note.text() == "not validated: 1 positive"
    for label in (hernia.name_label, hernia.pct, hernia.note):  # greyed through the palette
        assert label.foregroundRole() == QPalette.ColorRole.PlaceholderText
    effusion = dock.row("Effusion")
    assert effusion.positive and effusion.is_bold() and effusion.bar.threshold == 0.5
    assert not dock.row("Infiltration").is_bold()
    assert dock.row("Infiltration").foregroundRole() != QPalette.ColorRole.PlaceholderText
    # the header sits between the validated rows and the others, and cannot be selected
    header_rows = [i for i in range(dock.list.count())
                   if isinstance(dock.list.itemWidget(dock.list.item(i)), QLabel)]
    assert len(header_rows) == 1 and header_rows[0] == 4
    header = dock.list.item(4)
    assert dock.list.itemWidget(header).text() == NOT_VALIDATED_HEADER
    assert not header.flags()
    assert dock.summary.text() == "2 findings above the operating point"
    # no validation positives at all: the note says why
    no_evidence = {**finding(0.5, validated=False, n_pos=0),
                   "note": "not validated: the model card records no validation evidence"}
    dock.set_prediction(fake_prediction(findings={"Edema": no_evidence}))
    assert dock.row("Edema").note.text() == no_evidence["note"]


def test_summary_counts_only_validated_positives(dock):
    findings = {"Effusion": finding(0.3), "Hernia": finding(0.99, validated=False, positive=True)}
    dock.set_prediction(fake_prediction(findings=findings))
    assert dock.summary.text() == "No validated finding above its operating point"
    dock.set_prediction(fake_prediction(findings={"Effusion": finding(0.9), "Mass": finding(0.1)}))
    assert dock.summary.text() == "1 finding above the operating point"


def test_tooltips_carry_the_evidence(dock):
    dock.set_prediction(fake_prediction())
    tip = dock.row("Effusion").toolTip()
    for text in ("Probability 81.0% (calibrated)", "Operating point 50.0%",
                 "Sensitivity 78% (95% CI 70%–85%)", "Specificity 90% (95% CI 87%–93%)",
                 "AUROC 0.88 (95% CI 0.84–0.91)", "Validation positives: 40"):
        assert text in tip, (text, tip)
    item = next(dock.list.item(i) for i in range(dock.list.count())
                if dock.list.item(i).data(Qt.ItemDataRole.UserRole) == "Effusion")
    assert item.toolTip() == tip  # also where the list view looks for it
    hernia = dock.row("Hernia").toolTip()
    assert "not validated: 3 positives on validation (needs 15)" in hernia
    assert "Sensitivity" not in hernia and "Operating point" not in hernia


def test_disclaimer_visible_in_every_state(dock):
    disclaimer = dock.findChild(QLabel, "ai_disclaimer")
    assert disclaimer is not None and disclaimer.text() == DISCLAIMER

    def visible() -> bool:
        return disclaimer.isVisible() and disclaimer.height() >= disclaimer.heightForWidth(disclaimer.width())

    dock.clear("Loading model…")
    assert visible()
    dock.clear()
    dock.set_message("AI findings unavailable: BundleError: broken", error=True)
    assert visible()
    dock.set_prediction(fake_prediction(withheld=True))
    assert visible()
    dock.set_prediction(fake_prediction())
    assert visible()
    dock.scroll.verticalScrollBar().setValue(dock.scroll.verticalScrollBar().maximum())
    assert visible()  # outside the scrolled part


def _fits(label: QLabel) -> bool:
    """Visible, and as tall as its word-wrapped text needs at its width."""
    return (label.isVisible() and label.width() > 0
            and label.height() >= label.heightForWidth(label.width()))


@pytest.fixture
def docked(qtbot):
    """The dock in a short main window, narrow: where long warnings used to be cut off."""
    from PySide6.QtWidgets import QMainWindow, QWidget

    host = QMainWindow()
    qtbot.addWidget(host)
    host.setCentralWidget(QWidget())
    d = FindingsDock(host)
    host.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, d)
    host.resize(800, 260)
    host.show()
    qtbot.waitExposed(host)
    host.resizeDocks([d], [200], Qt.Orientation.Horizontal)
    yield d  # (the fixture's frame keeps the host alive)


def test_badge_and_banner_text_fully_visible_when_narrow(qtbot, docked):
    dock = docked
    long_warnings = ["one lung much smaller than the other: contours and CTR unreliable",
                     "exposure far outside the training data (very dark film); probabilities may be off",
                     "collimation cuts the costophrenic angles on both sides"]
    reasons = ["lateral view: the model reads frontal chest radiographs only, and this one is "
               "a lateral projection", "body part looks like a knee, not a chest"]
    dock.set_prediction(fake_prediction(withheld=True, reasons=reasons, warnings=long_warnings))
    qtbot.wait(20)
    assert dock.width() <= 210 and dock.height() <= 260, dock.size()
    banner = dock.findChild(QLabel, "ai_withheld_title").parentWidget()
    assert banner.objectName() == "ai_withheld_banner" and banner.isVisible()
    assert dock.banner.title.text() == WITHHELD_TITLE
    button = dock.banner.show_button  # the button is not clipped either
    assert button.isVisible() and button.height() >= button.minimumSizeHint().height()
    assert dock.badge.isHidden()  # cautions are about output that is not shown while withheld
    labels = [dock.banner.title, dock.banner.reasons]
    for label in labels:
        assert _fits(label), (label.objectName(), label.size(), label.heightForWidth(label.width()))
    for label in labels:  # and not cut off on the right either
        assert label.width() <= dock.scroll.viewport().width(), label.objectName()
    from cxrview.inference.gate import presented

    dock.set_prediction(presented(fake_prediction(withheld=True, reasons=reasons, warnings=long_warnings),
                                  force=True))
    qtbot.wait(20)
    assert dock.badge.isVisible() and all(w in dock.badge.text() for w in long_warnings)
    for label in (dock.banner.title, dock.banner.reasons, dock.badge):
        assert _fits(label), (label.objectName(), label.size(), label.heightForWidth(label.width()))
        assert label.width() <= dock.scroll.viewport().width(), label.objectName()
    assert dock.banner.title.text().startswith("Shown on request")
    assert dock.banner.reasons.text() == "\n".join(reasons)  # one per line
    for r in reasons:
        assert r not in dock.badge.text()  # already in the banner
    # the content is taller than the dock: it scrolls instead of squeezing the text
    assert dock.scroll.widget().height() > dock.scroll.viewport().height()

    # not withheld, validity warnings only: the badge alone, fully visible
    dock.set_prediction(fake_prediction(warnings=long_warnings))
    qtbot.wait(20)
    assert dock.banner.isHidden()
    assert _fits(dock.badge)


def test_rows_fit_a_narrow_dock(qtbot, dock):
    dock.set_prediction(fake_prediction())  # laid out wide first, then the reader narrows the dock
    qtbot.wait(20)
    dock.resize(250, 330)
    qtbot.waitUntil(lambda: dock.rows()[0].width() < dock.list.viewport().width() + 1, timeout=2000)
    viewport = dock.list.viewport()
    for row in dock.rows():
        assert row.geometry().right() < viewport.width(), row.name  # the % is never cut off
        assert row.pct.geometry().right() <= row.width()
    assert dock.disclaimer.isVisible()


def test_withheld_dock_shows_no_rows(dock):
    dock.set_prediction(fake_prediction(withheld=True))  # a raw dict: the dock gates it itself
    assert dock.finding_names() == [] and dock.list.count() == 0
    assert dock.summary.isHidden() and dock.ctr_label.isHidden()
    assert dock.banner.show_button.isVisible() and dock.banner.hide_button.isHidden()


# -- the controller in a window ----------------------------------------------------------------

def _open_image(qtbot, win, path: Path) -> str:
    with qtbot.waitSignal(win.image_shown, timeout=10000):
        win.open_paths([str(path)])
    return win.canvas.image().content_hash


def _deliver(win, data: dict[str, Any], heatmaps: dict[str, np.ndarray] | None = None) -> AIResult:
    result = AIResult(SimpleNamespace(content_hash=data["content_hash"], path=data["path"]), data,
                      dict(heatmaps or {}))
    win.ai._on_predicted(result)
    return result


def _withheld(h: str, key: str) -> dict[str, Any]:
    return fake_prediction(withheld=True, content_hash=h, input_hash=key)


def _layers_empty(win) -> bool:
    return not any(win.ai.layers[name].has_content() for name in LAYERS)


def _nih_images(nih_dir: Path, n: int) -> list[Path]:
    return sorted(nih_dir.glob("*.png"))[:n]


def test_withheld_then_shown_anyway_per_image(qtbot, window, nih_dir):
    win = window
    first, second = _nih_images(nih_dir, 2)
    h1 = _open_image(qtbot, win, first)
    dock = win.findings_dock
    _deliver(win, fake_prediction(withheld=True, content_hash=h1, input_hash="in-first"),
             _heatmaps("Effusion", "Cardiomegaly"))
    banner = dock.findChild(type(dock.banner), "ai_withheld_banner")
    assert banner is dock.banner and banner.isVisible()
    assert dock.banner.title.text() == WITHHELD_TITLE
    assert dock.banner.reasons.text().splitlines() == REASONS
    assert dock.finding_names() == []
    assert _layers_empty(win)
    assert win.ai.output_withheld()
    win.ai.show_heatmap("Effusion")  # a click on a finding (e.g. from the review panel) shows nothing
    assert _layers_empty(win)
    assert dock.findChild(QLabel, "ai_disclaimer").isVisible()

    with qtbot.waitSignal(win.ai.shown_anyway_changed) as changed:
        qtbot.mouseClick(dock.banner.show_button, Qt.MouseButton.LeftButton)
    assert changed.args == ["in-first", True]
    assert dock.finding_names()[:2] == ["Effusion", "Cardiomegaly"]
    assert all(win.ai.layers[name].has_content() for name in LAYERS)
    assert win.ai.layers["heatmap"].finding == "Effusion"
    assert dock.banner.isVisible() and dock.banner.title.text() == FORCED_TITLE
    assert dock.banner.reasons.text().splitlines() == REASONS
    assert dock.banner.hide_button.isVisible() and dock.banner.show_button.isHidden()
    assert win.ai.shown is not None and win.ai.shown["forced"]

    # the same image predicted again: still shown
    _deliver(win, _withheld(h1, "in-first"), _heatmaps("Effusion"))
    assert dock.finding_names() and not _layers_empty(win)

    # another withheld image starts hidden
    h2 = _open_image(qtbot, win, second)
    _deliver(win, _withheld(h2, "in-second"), _heatmaps("Effusion"))
    assert dock.finding_names() == [] and _layers_empty(win)
    assert dock.banner.title.text() == WITHHELD_TITLE

    # back to the first: remembered
    _open_image(qtbot, win, first)
    _deliver(win, _withheld(h1, "in-first"), _heatmaps("Effusion"))
    assert dock.finding_names() and all(win.ai.layers[name].has_content() for name in LAYERS)

    # hide again: withheld, forgotten
    qtbot.mouseClick(dock.banner.hide_button, Qt.MouseButton.LeftButton)
    assert dock.finding_names() == [] and _layers_empty(win)
    assert "in-first" not in ShownAnyway(win.settings.qs).keys()
    _deliver(win, fake_prediction(withheld=True, content_hash=h1, input_hash="in-first"))
    assert dock.finding_names() == []


def test_shown_anyway_survives_a_new_window(qtbot, window, nih_dir):
    from cxrview.qt.main_window import MainWindow

    path = _nih_images(nih_dir, 1)[0]
    h = _open_image(qtbot, window, path)
    _deliver(window, fake_prediction(withheld=True, content_hash=h, input_hash="in-kept"))
    window.ai.show_anyway()
    assert window.findings_dock.finding_names()
    window.close()

    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    try:
        assert "in-kept" in ShownAnyway(again.settings.qs).keys()
        h = _open_image(qtbot, again, path)
        _deliver(again, fake_prediction(withheld=True, content_hash=h, input_hash="in-kept"))
        assert again.findings_dock.finding_names() and not again.ai.output_withheld()
        assert again.findings_dock.banner.title.text() == FORCED_TITLE
        # never globally: the same pixels under another input hash stay hidden
        _deliver(again, fake_prediction(withheld=True, content_hash=h, input_hash="in-other"))
        assert again.findings_dock.finding_names() == [] and _layers_empty(again)
    finally:
        again.close()


def test_top_heatmap_only_for_a_validated_positive(qtbot, window, nih_dir):
    h = _open_image(qtbot, window, _nih_images(nih_dir, 1)[0])
    # Hernia (not validated) has the highest probability and says positive: it must not be picked
    _deliver(window, fake_prediction(content_hash=h), _heatmaps("Hernia", "Effusion"))
    assert window.ai.layers["heatmap"].finding == "Effusion"
    assert window.findings_dock.banner.isHidden()
    assert all(window.ai.layers[name].has_content() for name in LAYERS)
    # nothing validated above its operating point: no heatmap chosen for the reader
    findings = {"Effusion": finding(0.2), "Hernia": finding(0.97, validated=False, positive=True)}
    _deliver(window, fake_prediction(content_hash=h, findings=findings), _heatmaps("Hernia", "Effusion"))
    assert not window.ai.layers["heatmap"].has_content()


def test_cam_on_demand_gets_the_thorax(qtbot, window, nih_dir):
    calls = []

    class FakePredictor:
        def cam(self, image, finding, *, thorax=None):
            calls.append((finding, thorax))
            return np.ones((8, 8), dtype=np.float32)

    h = _open_image(qtbot, window, _nih_images(nih_dir, 1)[0])
    data = fake_prediction(content_hash=h)
    _deliver(window, data, _heatmaps("Effusion"))
    window.ai.predictor = FakePredictor()
    try:
        window.findings_dock.select_finding("Atelectasis")
        qtbot.waitUntil(lambda: window.ai.layers["heatmap"].finding == "Atelectasis", timeout=5000)
        assert calls == [("Atelectasis", data["thorax"])]
    finally:
        window.ai.predictor = None


def test_stale_result_is_dropped(qtbot, window, nih_dir):
    _open_image(qtbot, window, _nih_images(nih_dir, 1)[0])
    _deliver(window, fake_prediction(content_hash="px1-someone-else"))
    assert window.ai.result is None and window.findings_dock.finding_names() == []


def test_shown_anyway_list_is_bounded(isolated_settings):
    from PySide6.QtCore import QSettings

    shown = ShownAnyway(QSettings(), limit=5)
    assert shown.keys() == []
    shown.add("a")
    assert shown.keys() == ["a"] and "a" in shown  # one element survives the INI round trip
    for k in "bcdefg":
        shown.add(k)
    assert shown.keys() == list("cdefg")
    shown.add("d")  # seen again: most recent
    assert shown.keys() == list("cefgd")
    shown.remove("e")
    assert shown.keys() == list("cfgd") and "e" not in shown and "" not in shown
    assert QSettings().value(SHOWN_ANYWAY_KEY) is not None


# -- Model › Models…: the evidence behind a bundle ----------------------------------------------

def _card(tmp_path: Path, name: str, evidence: dict[str, Any] | None) -> Path:
    import json

    folder = tmp_path / name
    folder.mkdir()
    card: dict[str, Any] = {"name": name, "version": "1", "labels": ["Effusion", "Hernia"]}
    if evidence is not None:
        card["evidence"] = evidence
    (folder / "card.json").write_text(json.dumps(card))
    return folder


EVIDENCE = {
    "split": "val", "n_images": 341, "n_normals": 166,
    "rule": {"specificity_floor": 0.9, "min_positives": 15},
    "per_label": {
        "Effusion": {"validated": True, "reason": None, "n_pos": 42, "n_neg": 299, "auroc": 0.884,
                     "auroc_ci": [0.84, 0.91], "threshold": 0.41, "sensitivity": 0.78,
                     "sensitivity_ci": [0.7, 0.85], "specificity": 0.9, "specificity_ci": [0.87, 0.93],
                     "specificity_floor": 0.9},
        "Hernia": {"validated": False, "reason": "3 positives on validation (needs 15)", "n_pos": 3,
                   "n_neg": 338, "auroc": None, "auroc_ci": None, "threshold": None, "sensitivity": None,
                   "sensitivity_ci": None, "specificity": None, "specificity_ci": None,
                   "specificity_floor": 0.9}},
    "positives_per_normal": 0.12,
    "calibration": {"method": "platt", "ece_raw": 0.081, "ece": 0.023},
}


def test_models_dialog_shows_the_card_evidence(qtbot, tmp_path):
    from cxrview.qt.finetune.models_dialog import ModelsDialog
    from cxrview.qt.model_evidence import NO_EVIDENCE

    def version(vid: str, path: Path, active: bool) -> SimpleNamespace:
        return SimpleNamespace(id=vid, path=path, active=active, read_only=True, comparison=None,
                               created="2026-01-01T00:00:00", parent=None, log_path=None)

    versions = [version("shipped:classifier", _card(tmp_path, "new", EVIDENCE), True),
                version("old", _card(tmp_path, "old", None), False),
                version("gone", tmp_path / "missing", False)]
    controller = SimpleNamespace(registry=lambda: SimpleNamespace(versions=lambda task: versions))
    dialog = ModelsDialog(controller)
    qtbot.addWidget(dialog)
    dialog.select_id("shipped:classifier")
    text = dialog.details.toPlainText()
    assert "split val, 341 images (166 with no finding)" in text
    assert "validated with ≥ 15 positives; operating point at specificity ≥ 0.90" in text
    assert "calibration: platt (ECE 0.081 raw → 0.023)" in text
    assert "films with no finding: 0.12 positive findings per image on average" in text
    effusion = next(line for line in text.splitlines() if line.startswith("Effusion"))
    for part in ("yes", "42", "299", "0.88 [0.84, 0.91]", "0.78 [0.70, 0.85]", "0.90 [0.87, 0.93]", "0.41"):
        assert part in effusion, (part, effusion)
    hernia = next(line for line in text.splitlines() if line.startswith("Hernia"))
    assert " no " in hernia and "3 positives on validation (needs 15)" in hernia and "0.41" not in hernia
    assert "1 of 2 findings validated" in text
    dialog.select_id("old")
    assert NO_EVIDENCE in dialog.details.toPlainText()
    dialog.select_id("gone")
    assert "card unreadable" in dialog.details.toPlainText()

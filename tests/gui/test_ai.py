"""AI findings in the viewer, with the real shipped bundles (skipped when absent)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer

from cxrview.inference.shipped import shipped_bundle

pytestmark = pytest.mark.skipif(not (shipped_bundle("classifier") / "card.json").is_file(),
                                reason="shipped classifier bundle missing")

PREDICT_TIMEOUT_MS = 30000


@pytest.fixture
def ai_window(window):
    window.ai.set_device("cpu")
    window.ai.set_enabled(True)
    return window


def _images(nih_dir: Path, n: int) -> list[str]:
    return [str(p) for p in sorted(nih_dir.glob("*.png"))[:n]]


def _open_and_wait(qtbot, win, paths: list[str]):
    with qtbot.waitSignal(win.ai.prediction_ready, timeout=PREDICT_TIMEOUT_MS) as blocker:
        win.open_paths(paths)
    return blocker.args[0]


class _Probe:
    """Records the largest gap between 10 ms timer ticks (event-loop stalls)."""

    def __init__(self) -> None:
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._tick)
        self.last: float | None = None
        self.worst = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.worst = max(self.worst, (now - self.last) * 1000.0)
        self.last = now

    def start(self) -> None:
        self.last = None
        self.worst = 0.0
        self.timer.start()

    def stop(self) -> float:
        self.timer.stop()
        return self.worst


def test_findings_dock_and_layers(qtbot, ai_window, nih_dir):
    win = ai_window
    path = _images(nih_dir, 1)[0]
    result = _open_and_wait(qtbot, win, [path])
    assert result.prediction.content_hash == win.canvas.image().content_hash
    dock = win.findings_dock
    names = dock.finding_names()
    assert len(names) == 14
    findings = result.data["findings"]
    positives = [n for n in names if findings[n]["positive"]]
    assert names[:len(positives)] == positives  # positives first
    assert "Device: cpu" in dock.model_label.text()
    assert result.data["model"]["name"] in dock.model_label.text()
    assert dock.ctr_label.text().startswith("CTR")
    summary = dock.summary.text()
    assert "operating point" in summary
    assert dock.badge.isHidden() == result.data["validity"]["ok"]

    layers = win.ai.layers
    for name in ("heatmap", "boxes", "contours", "ctr"):
        assert win.canvas.layer(name) is layers[name]
    assert layers["contours"].has_content()
    assert layers["ctr"].has_content()
    if positives:
        assert layers["heatmap"].has_content()
        assert layers["boxes"].has_content()
        # clicking another positive finding swaps the heatmap
        other = positives[-1]
        dock.select_finding(other)
        assert layers["heatmap"].finding == other
        assert all(b["finding"] == other for b in layers["boxes"].visible_boxes())
    # a negative finding's map is computed on demand
    negatives = [n for n in names if not findings[n]["positive"]]
    if negatives:
        dock.select_finding(negatives[0])
        qtbot.waitUntil(lambda: layers["heatmap"].finding == negatives[0], timeout=10000)

    # overlays render without errors and toggle (persisted)
    win.canvas.viewport().repaint()
    assert not any(layer._paint_failed for layer in layers.values())
    win.ai.overlay_actions["boxes"].setChecked(False)
    assert not layers["boxes"].isVisible()
    assert win.settings.qs.value("overlays/boxes") in (False, "false")
    dock.opacity.setValue(20)
    assert layers["heatmap"].opacity() == pytest.approx(0.2)

    # device menu: unavailable devices disabled
    from cxrview.inference.bundle import available_devices

    avail = available_devices()
    for name, action in win.ai.device_actions.items():
        assert action.isEnabled() == (name == "auto" or name in avail)


@pytest.mark.perf
def test_event_loop_not_blocked_while_predicting(qtbot, ai_window, nih_dir, app_heap):
    win = ai_window
    paths = _images(nih_dir, 2)
    probe = _Probe()
    probe.start()
    _open_and_wait(qtbot, win, paths)  # includes building the predictor (cached after)
    first = probe.stop()
    probe.start()
    with qtbot.waitSignal(win.ai.prediction_ready, timeout=PREDICT_TIMEOUT_MS):
        win.next_image()
    worst = probe.stop()
    print(f"event-loop worst gap: model load {first:.1f} ms, warm predict {worst:.1f} ms")
    assert worst < 50.0, f"event loop blocked {worst:.0f} ms while predicting"
    # The first run imports torch and builds the networks on a worker thread; C-level
    # parts of that (shared-library loading, module init) hold the GIL for a few hundred
    # ms at a time (~250-350 ms measured on 2 cores), which no in-process thread can
    # avoid. Only guard against a multi-second freeze there.
    assert first < 1500.0, f"event loop blocked {first:.0f} ms while loading the model"


def test_paging_delivers_only_last_prediction(qtbot, ai_window, nih_dir):
    win = ai_window
    paths = _images(nih_dir, 5)
    _open_and_wait(qtbot, win, paths[:1])  # warm predictor
    win.open_paths(paths)
    delivered = []
    win.ai.prediction_ready.connect(lambda r: delivered.append(r.prediction.path))
    for _ in range(4):
        win.next_image()
        qtbot.wait(5)
    qtbot.waitUntil(lambda: bool(delivered), timeout=PREDICT_TIMEOUT_MS)
    qtbot.wait(300)
    assert win.shown_path() == paths[-1]
    assert delivered[-1] == paths[-1]
    assert all(p == paths[-1] for p in delivered), delivered


def test_bogus_bundle_shows_error_and_viewer_works(qtbot, ai_window, nih_dir, tmp_path):
    win = ai_window
    bogus = tmp_path / "no_such_bundle"
    win.ai.set_bundles(bogus, None)
    paths = _images(nih_dir, 2)
    with qtbot.waitSignal(win.ai.prediction_failed, timeout=PREDICT_TIMEOUT_MS) as blocker:
        win.open_paths(paths)
    assert "unavailable" in blocker.args[0]
    assert "unavailable" in win.findings_dock.message_text()
    assert win.findings_dock.finding_names() == []
    with qtbot.waitSignal(win.image_shown, timeout=5000):
        win.next_image()
    assert win.shown_path() == paths[1]
    assert "unavailable" in win.findings_dock.message_text()


def test_broken_bundle_files(qtbot, ai_window, nih_dir, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "card.json").write_text("{not json")
    ai_window.ai.set_bundles(broken, None)
    with qtbot.waitSignal(ai_window.ai.prediction_failed, timeout=PREDICT_TIMEOUT_MS):
        ai_window.open_paths(_images(nih_dir, 1))
    assert ai_window.canvas.image() is not None


def _fake_prediction(positive: bool, ok: bool) -> dict:
    """A ``Prediction.to_dict()`` in the validated-findings schema (see tests/gui/test_ai_trust.py)."""
    names = [f"Finding{i}" for i in range(14)]

    def finding(i: int) -> dict:
        validated = i < 10  # the last four: too few validation positives
        p = 0.9 if positive and i == 3 else 0.01
        return {"probability": p, "validated": validated, "positive": validated and p >= 0.5,
                "threshold": 0.5 if validated else None, "sensitivity": 0.8 if validated else None,
                "specificity": 0.9 if validated else None,
                "sensitivity_ci": [0.7, 0.9] if validated else None,
                "specificity_ci": [0.85, 0.94] if validated else None,
                "auroc": 0.85, "auroc_ci": [0.8, 0.9], "n_positives": 40 if validated else 5,
                "note": "" if validated else "not validated: 5 positives on validation (needs 15)"}

    warnings = [] if ok else ["image looks inverted"]
    return {"path": "x.png", "content_hash": "px1-x", "input_hash": "in-x", "image_size": [256, 256],
            "model": {"name": "m", "version": "1", "identity": "m@1", "segmenter": None, "device": "cpu"},
            "findings": {n: finding(i) for i, n in enumerate(names)},
            "boxes": [], "masks": {}, "thorax": None,
            "ctr": {"value": 0.61, "heart": [1, 2, 3], "thorax": [0, 4, 3], "flag": "cardiomegaly?"},
            "validity": {"ok": ok, "warnings": warnings, "scores": {}, "withheld": False, "reasons": []},
            "withheld": False, "timing_ms": {}}


def test_dock_summary_badge_and_ctr_flag(qtbot):
    from cxrview.qt.docks.findings_dock import FindingsDock

    dock = FindingsDock()
    qtbot.addWidget(dock)
    dock.set_prediction(_fake_prediction(positive=False, ok=False))
    assert dock.summary.text() == "No validated finding above its operating point"
    assert not dock.badge.isHidden() and "image looks inverted" in dock.badge.text()
    assert dock.banner.isHidden()  # a warning, not withheld
    assert "0.61" in dock.ctr_label.text() and "cardiomegaly?" in dock.ctr_label.text()
    dock.set_prediction(_fake_prediction(positive=True, ok=True))
    assert dock.badge.isHidden()
    assert dock.finding_names()[0] == "Finding3"
    assert dock.finding_names()[-4:] == ["Finding10", "Finding11", "Finding12", "Finding13"]
    assert dock.summary.text() == "1 finding above the operating point"


def test_window_creation_does_not_import_torch():
    import subprocess
    import sys

    code = ("import os; os.environ['QT_QPA_PLATFORM']='offscreen';"
            "from PySide6.QtWidgets import QApplication; app = QApplication([]);"
            "from cxrview.qt.main_window import MainWindow; w = MainWindow();"
            "import sys; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr


def test_preload_builds_the_predictor_without_an_image(qtbot, ai_window):
    win = ai_window
    with qtbot.waitSignal(win.ai.predictor_ready, timeout=PREDICT_TIMEOUT_MS):
        win.ai.preload()
    assert win.ai.predictor is not None
    win.ai.preload()  # already loaded: nothing to do
    assert win.runner.current("predictor") is None or win.runner.current("predictor").is_done()

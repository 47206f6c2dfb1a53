"""Model › Score All Files: background batch scoring, triage sort, cache, cancel, and the
workspace rows it records (the same as `cxrview score`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxrview.core.nih_import import import_nih
from cxrview.core.worklist import WorklistQuery, query_images
from cxrview.core.workspace import Workspace
from cxrview.inference.shipped import shipped_bundle
from tests.conftest import SHARED_DATA
from tests.gui.test_ai import _Probe

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"

pytestmark = pytest.mark.skipif(not (shipped_bundle("classifier") / "card.json").is_file(),
                                reason="shipped classifier bundle missing")


@pytest.fixture
def scored_window(window, nih_dir):
    window.ai.set_device("cpu")
    paths = [str(p) for p in sorted(nih_dir.glob("*.png"))[:6]]
    window.open_paths(paths)
    return window, paths


def _warm_models(window) -> None:
    """Import torch and load the networks before timing: that one-off cost is measured in
    test_ai (shared-library loading holds the GIL); here we time scoring itself."""
    from cxrview.inference.predict import Predictor

    predictor = Predictor(window.ai.classifier, window.ai.segmenter, device="cpu")
    assert predictor.card is not None and predictor.segmenter_card is not None


def test_batch_scoring_streams_scores_sorts_and_caches(qtbot, scored_window):
    win, paths = scored_window
    _warm_models(win)
    items = []
    win.batch.item_scored.connect(items.append)
    with qtbot.waitSignal(win.batch.finished, timeout=120000) as first:
        win.batch.action.trigger()
        assert win.batch.progress.isVisible()
    summary = first.args[0]
    assert summary is not None and summary.scored == len(paths) and summary.failed == 0
    assert [i.path for i in items] == paths  # streamed one by one, in list order
    assert not win.batch.progress.isVisible()
    scores = {p: win.file_dock.score(p) for p in paths}
    withheld = {i.path for i in items if i.withheld is not None}
    # a withheld film (input check) gets no triage score, every other film one in [0, 1]
    assert all((scores[p] is None) == (p in withheld) for p in paths)
    assert all(0.0 <= s <= 1.0 for s in scores.values() if s is not None)
    assert len(withheld) < len(paths) / 2, withheld

    # triage order: highest score first (unscored last); the shown image stays selected, not reloaded
    shown = win.file_dock.paths()[win.file_dock.current_row()]
    win.file_dock.set_sort_mode("triage")
    ordered = win.file_dock.paths()
    ranked = [scores[p] for p in ordered if scores[p] is not None]
    assert ranked == sorted(ranked, reverse=True) and all(scores[p] is None for p in ordered[len(ranked):])
    assert win.file_dock.paths()[win.file_dock.current_row()] == shown
    assert win.settings.qs.value("files/sort") == "triage"
    win.file_dock.set_sort_mode("file")
    assert win.file_dock.paths() == paths

    # a second run is answered from the results cache
    with qtbot.waitSignal(win.batch.finished, timeout=60000) as second:
        win.batch.action.trigger()
    assert second.args[0].cached == len(paths)

    # opening a scored image shows its findings from the cache
    win.ai.set_enabled(True)
    with qtbot.waitSignal(win.ai.prediction_ready, timeout=30000) as shown_result:
        win.file_dock.set_current_row(3)
    assert shown_result.args[0].prediction.cached


@pytest.mark.perf
def test_batch_scoring_keeps_the_event_loop_responsive(qtbot, scored_window, app_heap):
    win, _paths = scored_window
    _warm_models(win)
    probe = _Probe()
    with qtbot.waitSignal(win.batch.finished, timeout=120000):
        win.batch.action.trigger()
        probe.start()
    worst = probe.stop()
    print(f"worst event-loop gap while batch scoring: {worst:.1f} ms")
    assert worst < 50.0, f"event loop blocked {worst:.0f} ms during batch scoring"


def test_batch_scoring_cancel_and_unreadable_file(qtbot, window, nih_dir, tmp_path):
    window.ai.set_device("cpu")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = [str(bad), *(str(p) for p in sorted(nih_dir.glob("*.png"))[:8])]
    window.open_paths(paths)
    items = []
    window.batch.item_scored.connect(items.append)
    with qtbot.waitSignal(window.batch.finished, timeout=60000) as done:
        window.batch.action.trigger()
        qtbot.waitUntil(lambda: len(items) >= 2, timeout=60000)
        window.batch.cancel_action.trigger()
    assert done.args[0] is None  # cancelled
    assert items[0].score is None and "broken.png" in items[0].path and items[0].error
    assert len(items) < len(paths)
    assert "cancelled" in window.statusBar().currentMessage()
    assert window.file_dock.score(str(bad)) is None


def _recorded_rows(path: Path) -> dict[int, dict]:
    """Per image with a stored prediction: the prediction row and the scores on its image row."""
    with Workspace(path) as ws:
        rows = {}
        for model in {m for (m,) in ws.execute("SELECT DISTINCT model FROM predictions")}:
            for image_id, (probs, oos) in ws.predictions_for(model).items():
                record = ws.image(image_id)
                rows[image_id] = {"model": model, "probabilities": probs, "out_of_sample": oos,
                                  "triage": record.triage_score, "mislabel": record.mislabel_score,
                                  "suspect": (record.suspect_finding, record.suspect_label),
                                  "suspect_probability": record.suspect_probability,
                                  "disagreements": record.model_disagreements,
                                  "scored_model": record.scored_model}
        return rows


@pytest.mark.slow
def test_score_all_files_and_cxrview_score_store_the_same_rows(qtbot, window, nih_dir, tmp_path, capsys,
                                                                monkeypatch):
    """Score All Files in an open workspace records what `cxrview score` records for the same images:
    predictions, out-of-sample flags, triage and mislabel scores; withheld films neither."""
    from cxrview.cli import main
    from cxrview.inference.card import ModelCard

    # A few films, one of them out of the shipped model's training and validation patients (so a
    # mislabel score is compared too), in a folder of their own: `cxrview score` scores them all.
    split = ModelCard.read(shipped_bundle("classifier")).training.get("split_patients") or {}
    seen = set(split.get("train", [])) | set(split.get("val", []))
    films = sorted(nih_dir.glob("*.png"))
    unseen = next(f for f in films if f"nih:{int(f.name.split('_')[0])}" not in seen)
    images = tmp_path / "images"
    images.mkdir()
    for film in {*films[:2], unseen}:
        shutil.copy(film, images / film.name)
    n = len(list(images.iterdir()))
    gui_ws, cli_ws = tmp_path / "gui.sqlite", tmp_path / "cli.sqlite"
    with Workspace(gui_ws, create=True, images_root=images) as ws:
        import_nih(ws, DATA_ENTRY, images)
        paths = [str(ws.absolute_path(r)) for r in query_images(ws, WorklistQuery(sort="file"))]
        ws.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert len(paths) == n
    shutil.copy(gui_ws, cli_ws)

    window.ai.set_device("cpu")
    assert window.review.open_workspace(gui_ws)
    window.open_paths(paths)
    with qtbot.waitSignal(window.batch.finished, timeout=180000) as done:
        window.batch.action.trigger()
    summary = done.args[0]
    assert summary is not None and summary.scored == n and summary.recorded > 0

    monkeypatch.setenv("CXRVIEW_CACHE_DIR", str(tmp_path / "cli-cache"))  # predicted afresh, not read back
    capsys.readouterr()
    assert main(["score", str(cli_ws), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["scored"] == summary.recorded

    gui, cli = _recorded_rows(gui_ws), _recorded_rows(cli_ws)
    assert gui.keys() == cli.keys() and len(gui) == summary.recorded
    assert any(row["triage"] is not None for row in gui.values())
    assert any(row["mislabel"] is not None for row in gui.values())  # an out-of-sample film is among them
    for image_id, row in gui.items():
        other = cli[image_id]
        for key in ("model", "out_of_sample", "suspect", "disagreements", "scored_model"):
            assert row[key] == other[key], (image_id, key)
        assert row["probabilities"] == pytest.approx(other["probabilities"], abs=1e-5)
        for key in ("triage", "mislabel", "suspect_probability"):
            assert (row[key] is None) == (other[key] is None), (image_id, key)
            if row[key] is not None:
                assert row[key] == pytest.approx(other[key], abs=1e-4), (image_id, key)

"""`cxrview import-nih`, `score` and `worklist` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxrview.inference.shipped import shipped_bundle
from tests.conftest import REPO_ROOT, SHARED_DATA

DATA_ENTRY = SHARED_DATA / "nih" / "Data_Entry_2017_v2020.csv.gz"
BBOX = SHARED_DATA / "nih" / "BBox_List_2017.csv.gz"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "cxrview", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=300)


@pytest.mark.skipif(not (shipped_bundle("classifier") / "card.json").is_file(), reason="no shipped model")
@pytest.mark.slow
def test_import_score_worklist(nih_dir: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws.sqlite"
    done = _cli("import-nih", "--images", str(nih_dir), "--data-entry", str(DATA_ENTRY), "--bbox", str(BBOX),
                "--workspace", str(ws))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] == 112120 and summary["present"] == len(list(nih_dir.glob("*.png")))

    done = _cli("score", str(ws), "--device", "cpu", "--limit", "12")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scored"] == 12
    assert "stored 12 predictions" in done.stderr

    done = _cli("worklist", str(ws), "--sort", "triage", "--limit", "5", "--json")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 5
    scores = [r["score"] for r in rows]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    for row in rows:
        assert row["image"].endswith(".png")
        for suspect in row["suspected"]:
            assert {"finding", "label", "probability"} <= set(suspect)

    done = _cli("worklist", str(ws), "--filter", "finding=Effusion", "--filter", "state=unreviewed",
                "--json", "--limit", "100")
    assert done.returncode == 0
    assert all("Effusion" in json.loads(line)["labels"] for line in done.stdout.splitlines())

    done = _cli("worklist", str(ws), "--filter", "colour=blue")
    assert done.returncode == 2 and "unknown filter" in done.stderr
    done = _cli("worklist", str(tmp_path / "nope.sqlite"))
    assert done.returncode == 2 and "no workspace" in done.stderr


@pytest.mark.slow
def test_out_of_fold_predictions_feed_mislabel_scores(nih_dir: Path, tmp_path: Path) -> None:
    """`python -m training oof` predicts every image with a model that did not train on its patient;
    `cxrview score --predictions` stores them as out-of-sample and ranks mislabels from them."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    out = tmp_path / "oof"
    done = subprocess.run([sys.executable, "-m", "training", "oof", "--folds", "2", "--arch", "small-cnn",
                           "--size", "32", "--epochs", "1", "--batch-size", "8", "--nih-images", str(nih_dir),
                           "--data-entry", str(DATA_ENTRY), "--out", str(out), "--seed", "3"],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "oof_predictions.jsonl").read_text().splitlines()]
    names = [r["image"] for r in rows]
    assert len(names) == len(set(names)) and len(names) > 20  # every non-reserved image once
    for k in (0, 1):
        split = json.loads((out / f"fold{k}" / "split.json").read_text())
        held = {r["patient"] for r in rows if r["fold"] == k}
        assert held and not held & set(split["train"] + split["val"])  # never trained on its patients
    ws = tmp_path / "ws.sqlite"
    assert _cli("import-nih", "--images", str(nih_dir), "--data-entry", str(DATA_ENTRY),
                "--workspace", str(ws)).returncode == 0
    done = _cli("score", str(ws), "--predictions", str(out / "oof_predictions.jsonl"))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scored"] == len(rows)
    listed = [json.loads(line) for line in _cli("worklist", str(ws), "--sort", "mislabel", "--json",
                                                "--limit", "3").stdout.splitlines()]
    assert all(row["score"] is not None and row["suspected"] for row in listed)

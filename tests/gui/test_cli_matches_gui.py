"""`cxrview predict --json` and `cxrview render --overlay` give what the viewer shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrview.inference.shipped import shipped_bundle
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.skipif(not (shipped_bundle("classifier") / "card.json").is_file(),
                                reason="shipped classifier bundle missing")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", OMP_NUM_THREADS="2")
    return subprocess.run([sys.executable, "-m", "cxrview", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=240)


def _without_volatile(data: dict) -> dict:
    return {k: v for k, v in data.items() if k not in ("path", "cached", "timings")}


@pytest.mark.slow
def test_predict_and_render_match_the_viewer(qtbot, window, nih_dir, tmp_path):
    from cxrview.qt.overlays import paint_layers

    image_path = str(sorted(nih_dir.glob("*.png"))[0])
    window.ai.set_device("cpu")
    window.ai.set_enabled(True)
    with qtbot.waitSignal(window.ai.prediction_ready, timeout=60000) as blocker:
        window.open_paths([image_path])
    gui = window.ai.shown  # what the viewer shows (gate.presented), as the CLI prints it
    assert gui is not None and gui["content_hash"] == blocker.args[0].data["content_hash"]

    done = _cli("predict", image_path, "--json", "--device", "cpu", "--no-cache")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout.splitlines()[0])
    assert _without_volatile(cli).keys() == _without_volatile(gui).keys()
    for name, finding in gui["findings"].items():
        assert cli["findings"][name]["positive"] == finding["positive"]
        assert cli["findings"][name]["probability"] == pytest.approx(finding["probability"], abs=1e-5)
    assert json.dumps(_without_volatile(cli)["boxes"]) == json.dumps(gui["boxes"])
    for key in ("ctr", "masks", "validity", "model"):
        assert cli[key] == gui[key], key

    # the same overlays, drawn by the CLI, equal the viewer's layers painted on its image
    out = tmp_path / "overlay.png"
    done = _cli("render", image_path, "-o", str(out), "--overlay", "masks", "--overlay", "ctr",
                "--device", "cpu")
    assert done.returncode == 0, done.stderr
    rendered = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    layers = window.ai.layers
    expected = paint_layers(window.canvas.displayed_pixels(), [layers["contours"], layers["ctr"]])
    assert rendered.shape == expected.shape
    assert np.array_equal(rendered, expected)
    assert (rendered[..., 0] != rendered[..., 2]).any()  # colour was drawn on the grey film


def test_render_rejects_unknown_overlay(nih_dir, tmp_path):
    image_path = str(sorted(nih_dir.glob("*.png"))[0])
    done = _cli("render", image_path, "-o", str(tmp_path / "x.png"), "--overlay", "sparkles")
    assert done.returncode == 2 and "unknown overlay" in done.stderr
    assert not (tmp_path / "x.png").exists()
    assert Path(REPO_ROOT).is_dir()

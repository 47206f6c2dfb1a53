"""``cxrview --version`` and ``cxrview --self-test``: OK/FAIL per part, JSON, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cxrview import __version__
from cxrview.cli import main, selftest
from cxrview.core import syntax_samples
from cxrview.core.syntax_samples import JPEG_BASELINE, SYNTAXES, SampleSyntax
from tests.conftest import REPO_ROOT


def test_version_names_the_version_and_the_active_models(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXRVIEW_REGISTRY_DIR", str(tmp_path / "registry"))
    assert main(["--version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"cxrview {__version__}"
    cards = {task: json.loads((REPO_ROOT / "resources/models" / task / "card.json").read_text())
             for task in ("classifier", "segmenter")}
    assert lines[1:] == [f"{task}: {card['name']} {card['version']}" for task, card in cards.items()]
    assert main(["version", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == __version__ and data["licence"] == "Apache-2.0"
    assert [m["version"] for m in data["models"]] == [c["version"] for c in cards.values()]


def test_version_imports_neither_qt_nor_torch() -> None:
    code = ("import contextlib, io, sys\nfrom cxrview.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--version']) == 0\n"
            "print(' '.join(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert "torch" not in loaded and not any(m.startswith(("PySide6", "shiboken6")) for m in loaded)


def test_every_supported_syntax_is_a_part_and_decodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--self-test", "--no-predict", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["version"] == __version__
    assert [p["part"] for p in report["parts"]] == [f"decode {s.name}" for s in SYNTAXES]
    for syntax, part in zip(SYNTAXES, report["parts"], strict=True):
        assert part["ok"] and part["detail"].startswith(syntax.uid), part
    expected = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.5",
                "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}
    assert expected <= {s.uid for s in SYNTAXES}  # the syntaxes issue 16 names


def test_wrong_pixels_are_a_fail_and_exit_1(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    lossy_as_exact = SampleSyntax(JPEG_BASELINE, "JPEG claimed exact", 8, 0, syntax_samples._jpeg8(level=20))
    monkeypatch.setattr(syntax_samples, "SYNTAXES", (SYNTAXES[0], lossy_as_exact))
    assert main(["--self-test", "--no-predict"]) == selftest.EXIT_SELF_TEST_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("OK   decode Explicit VR Little Endian")
    assert out[2].startswith("FAIL decode JPEG claimed exact: ") and "off by up to" in out[2]
    assert out[-1] == "1 of 2 parts OK, 1 FAILED"


def test_a_broken_model_is_a_fail_line_not_a_traceback(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import cxrview.about

    monkeypatch.setattr(syntax_samples, "SYNTAXES", SYNTAXES[:1])
    monkeypatch.setattr(cxrview.about, "active_bundles",
                        lambda: {"classifier": tmp_path / "nothing", "segmenter": tmp_path / "nothing"})
    assert main(["--self-test"]) == selftest.EXIT_SELF_TEST_FAILED
    out = capsys.readouterr().out
    assert "FAIL predict on a generated phantom: " in out and "Traceback" not in out


def test_the_phantom_looks_like_a_chest_film() -> None:
    film = syntax_samples.chest_phantom(256)
    assert film.shape == (256, 256) and film.dtype.name == "uint8"
    lungs = film[100:140, 60:90].mean(), film[100:140, 166:196].mean()
    assert max(lungs) < film[100:140, 120:136].mean() - 60  # dark lungs either side of a bright spine


@pytest.mark.slow
def test_self_test_from_the_command_line_with_the_shipped_models(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "CXRVIEW_REGISTRY_DIR": str(tmp_path / "reg"),
           "CXRVIEW_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-m", "cxrview", "--self-test", "--json"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["parts"]) == len(SYNTAXES) + 1
    predict = report["parts"][-1]
    assert predict["part"] == "predict on a generated phantom" and predict["ok"]
    labels = json.loads((REPO_ROOT / "resources/models/classifier/card.json").read_text())["labels"]
    assert f"{len(labels)} findings" in predict["detail"] and "left_lung" in predict["detail"]

"""`cxrview info` and `cxrview render` on real files, and their error contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrview.cli import main
from cxrview.core import load_image, render_display
from tests.conftest import REPO_ROOT

REQUIRED_KEYS = {"width", "height", "bits_stored", "photometric", "transfer_syntax", "modality",
                 "view_position", "spacing_mm", "spacing_source", "presets"}


def _info_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_for_every_dicom(dicom_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted(dicom_dir.glob("*.dcm")):
        info = _info_json(path, capsys)
        assert REQUIRED_KEYS <= set(info), path
        assert info["transfer_syntax"].startswith("1.2.840.10008.1.2")
        assert all(len(cw) == 2 and cw[1] > 0 for cw in info["presets"].values())
        assert {"lung", "mediastinum", "bone", "full range"} <= set(info["presets"])
        assert info["spacing_mm"] is None or all(v > 0 for v in info["spacing_mm"])


def test_info_spacing_and_windows(dicom_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _info_json(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm", capsys)
    assert (info["width"], info["height"], info["bits_stored"]) == (1841, 1955, 15)
    assert info["photometric"] == "MONOCHROME1" and info["modality"] == "CR"
    assert info["view_position"] == "PA"
    assert info["spacing_mm"] is None and info["spacing_source"] == "unknown"  # 0/0 in the file
    assert info["presets"]["file"] == [15000.0, 30000.0]
    info = _info_json(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm", capsys)
    assert info["spacing_mm"] == [0.168, 0.168] and info["spacing_source"] == "PixelSpacing"


def test_info_png_has_null_transfer_syntax(nih_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = _info_json(nih_dir / "00000001_000.png", capsys)
    assert info["transfer_syntax"] is None and info["photometric"] == "MONOCHROME2"
    assert info["display_range"] == [0, 255]


def test_info_text_mentions_spacing_source(dicom_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")]) == 0
    out = capsys.readouterr().out
    assert "0.168 × 0.168 mm (source: PixelSpacing)" in out and "lung" in out


@pytest.mark.parametrize("name", ["chest_cr_mono1_15bit_jpeg2000_lossy.dcm",
                                  "chest_cr_mono1_10bit_acrnema_no_header.dcm",
                                  "hip_cr_12bit_jpeg_extended.dcm"])
def test_render_matches_the_viewer_pipeline(dicom_dir: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / "out.png"
    assert main(["render", str(dicom_dir / name), "-o", str(out)]) == 0
    written = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    image = load_image(dicom_dir / name)
    assert written.dtype == np.uint8 and written.shape == (image.height, image.width)
    assert np.array_equal(written, render_display(image))


def test_render_preset_window_and_invert(dicom_dir: Path, tmp_path: Path) -> None:
    path = dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm"
    image = load_image(path)
    assert main(["render", str(path), "-o", str(tmp_path / "lung.png"), "--preset", "lung"]) == 0
    lung = cv2.imread(str(tmp_path / "lung.png"), cv2.IMREAD_GRAYSCALE)
    assert np.array_equal(lung, render_display(image, image.presets["lung"]))
    assert main(["render", str(path), "-o", str(tmp_path / "w.png"), "--window", "100,50",
                 "--invert"]) == 0
    inverted = cv2.imread(str(tmp_path / "w.png"), cv2.IMREAD_GRAYSCALE)
    from cxrview.core import Window
    assert np.array_equal(inverted, 255 - render_display(image, Window(100.0, 50.0)))


def test_unknown_preset_is_a_clean_error(dicom_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["render", str(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm"), "-o",
                 str(tmp_path / "x.png"), "--preset", "abdomen"])
    assert code == 2 and "abdomen" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["info", "render"])
def test_unreadable_file_one_line_exit_2(tmp_path: Path, command: str) -> None:
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"\x00" * 10 + b"definitely not DICOM" * 20)
    args = [sys.executable, "-m", "cxrview", command, str(bad)]
    if command == "render":
        args += ["-o", str(tmp_path / "o.png")]
    result = subprocess.run(args, capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "o.png").exists()

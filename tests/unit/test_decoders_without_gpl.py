"""Every transfer syntax decodes, to the same pixels, without the GPLv3 pylibjpeg-libjpeg (ADR 0012).

The decoding happens in a child process in which pylibjpeg-libjpeg is hidden as though never
installed (``tests/unit/hidden_gpl.py``); this process decodes the same files with everything
installed, so "the same pixels as before" is checked byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxrview.core.loader import load_image
from cxrview.core.syntax_samples import (
    DEFLATED_LE,
    EXPLICIT_LE,
    HTJ2K_LOSSLESS,
    IMPLICIT_LE,
    J2K_LOSSLESS,
    J2K_LOSSY,
    JPEG_BASELINE,
    RLE,
    SYNTAXES,
    SampleSyntax,
    decode_error,
    write_sample,
)
from tests.conftest import REPO_ROOT


def _decode_hidden(paths: list[Path], *, also_imagecodecs: bool = False) -> dict[str, dict[str, Any]]:
    extra = ["--also-hide", "imagecodecs"] if also_imagecodecs else []
    result = subprocess.run([sys.executable, "-m", "tests.unit.hidden_gpl", *extra, *map(str, paths)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {Path(row["path"]).name: row for row in rows}


def _digest(path: Path) -> str:
    return hashlib.sha256(np.ascontiguousarray(load_image(path).stored).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    folder = tmp_path_factory.mktemp("syntaxes")
    return {syntax.uid: write_sample(folder, syntax) for syntax in SYNTAXES}


@pytest.fixture(scope="module")
def hidden_results(samples: dict[str, tuple[Path, np.ndarray]]) -> dict[str, dict[str, Any]]:
    return _decode_hidden([path for path, _ in samples.values()])


def test_the_child_really_cannot_see_the_gpl_decoder() -> None:
    code = ("import tests.unit.hidden_gpl as h, importlib.metadata as md; h.hide()\n"
            "try:\n import libjpeg\nexcept ModuleNotFoundError: pass\nelse: raise SystemExit('imported')\n"
            "try:\n md.distribution('pylibjpeg-libjpeg')\nexcept md.PackageNotFoundError: pass\n"
            "else: raise SystemExit('metadata visible')\n"
            "import pydicom.config, pydicom.pixels\nprint('hidden')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "hidden", result.stderr


@pytest.mark.parametrize("syntax", SYNTAXES, ids=lambda s: s.name)
def test_syntax_decodes_without_the_gpl_decoder(syntax: SampleSyntax,
                                                samples: dict[str, tuple[Path, np.ndarray]],
                                                hidden_results: dict[str, dict[str, Any]]) -> None:
    path, expected = samples[syntax.uid]
    import pydicom

    assert str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax.uid
    decoded = load_image(path).stored
    error = decode_error(decoded, expected)
    assert error is not None and error <= syntax.max_error, f"{syntax.name}: off by {error}"
    row = hidden_results[path.name]
    assert "error" not in row, row.get("error")
    assert row["sha256"] == _digest(path), "different pixels without pylibjpeg-libjpeg"


def test_real_files_decode_to_the_same_pixels_without_the_gpl_decoder(dicom_dir: Path) -> None:
    paths = sorted(dicom_dir.glob("*.dcm"))
    assert len(paths) >= 7
    hidden = _decode_hidden(paths)
    for path in paths:
        assert "error" not in hidden[path.name], hidden[path.name]
        assert hidden[path.name]["sha256"] == _digest(path), path.name


# Without imagecodecs as well, the permissive fallbacks pydicom finds: its own RLE and native
# decoders, Pillow (JPEG baseline) and pylibjpeg-openjpeg (JPEG 2000, HTJ2K). The rest has no
# non-GPL fallback: a clear "unsupported compression", never a crash (imagecodecs is required).
FALLBACK_EXACT = {EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE, RLE, J2K_LOSSLESS, HTJ2K_LOSSLESS}
FALLBACK_LOSSY = {JPEG_BASELINE, J2K_LOSSY}


def test_permissive_fallbacks_when_imagecodecs_is_missing_too(
        samples: dict[str, tuple[Path, np.ndarray]]) -> None:
    hidden = _decode_hidden([path for path, _ in samples.values()], also_imagecodecs=True)
    for syntax in SYNTAXES:
        path, expected = samples[syntax.uid]
        row = hidden[path.name]
        if syntax.uid in FALLBACK_EXACT:
            assert row.get("sha256") == _digest(path), (syntax.name, row)
        elif syntax.uid in FALLBACK_LOSSY:
            assert "error" not in row and row["shape"] == list(expected.shape), (syntax.name, row)
        else:
            assert row.get("error", "").startswith("UnsupportedTransferSyntaxError"), (syntax.name, row)

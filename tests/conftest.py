"""Shared fixtures: where the real test radiographs live (../shared/data beside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The decode time limit guards against hostile files in the app (8 s); on a test machine shared
# with a training run a healthy 1-megapixel JPEG took longer than that to be scheduled. Tests of
# the limit itself pass their own (``time_limit=`` / ``call_with_time_limit``).
os.environ.setdefault("CXRVIEW_DECODE_TIMEOUT", "120")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DICOM_DIR = SHARED_DATA / "dicom"
NIH_DIR = SHARED_DATA / "nih" / "images_256"


@pytest.fixture(scope="session")
def dicom_dir() -> Path:
    if not DICOM_DIR.is_dir():
        pytest.skip(f"real DICOM test data not found at {DICOM_DIR}")
    return DICOM_DIR


@pytest.fixture(scope="session")
def nih_dir() -> Path:
    if not NIH_DIR.is_dir():
        pytest.skip(f"NIH test images not found at {NIH_DIR}")
    return NIH_DIR

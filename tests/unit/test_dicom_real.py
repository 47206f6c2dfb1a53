"""Every real DICOM file in ../shared/data/dicom loads and displays correctly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrview.core import SpacingSource, Window, load_image, render_display

# file -> (width, height, bits stored, photometric, spacing_mm or None, default window or None)
EXPECTED = {
    "chest_cr_mono1_15bit_jpeg2000_lossy.dcm": (1841, 1955, 15, "MONOCHROME1", None, (15000, 30000)),
    "chest_cr_mono1_10bit_acrnema_no_header.dcm": (440, 440, 10, "MONOCHROME1", None, (550, 1024)),
    "chest_cr_mono2_8bit_jpeg_baseline.dcm": (1024, 1024, 8, "MONOCHROME2", 0.168, None),
    "chest_cr_relabelled_mono1_8bit_jpeg_baseline.dcm": (1024, 1024, 8, "MONOCHROME1", 0.168, None),
    "extremity_cr_mono1_10bit_jpeg2000_lossless.dcm": (1760, 1760, 10, "MONOCHROME1", None, (550, 1024)),
    "extremity_cr_mono1_10bit_jpegls_lossless.dcm": (1760, 1760, 10, "MONOCHROME1", None, (550, 1024)),
    "hip_cr_12bit_jpeg_extended.dcm": (1760, 2140, 10, "MONOCHROME2", 0.2, (511, 1024)),
}
CHEST_FILES = [name for name in EXPECTED if name.startswith("chest")]


def test_every_shared_dicom_file_is_covered(dicom_dir: Path) -> None:
    assert sorted(p.name for p in dicom_dir.glob("*.dcm")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_header_understood(dicom_dir: Path, name: str) -> None:
    width, height, bits, photometric, spacing, window = EXPECTED[name]
    image = load_image(dicom_dir / name)
    assert (image.width, image.height) == (width, height)
    assert image.stored.shape == (height, width)
    assert image.bits_stored == bits
    assert image.photometric == photometric
    assert int(image.stored.max()) < (1 << bits)
    if spacing is None:
        assert image.spacing is None
        assert image.spacing_source is SpacingSource.UNKNOWN
    else:
        assert image.spacing is not None
        assert image.spacing.row_mm == pytest.approx(spacing)
        assert image.spacing_source is SpacingSource.PIXEL_SPACING
    if window is None:
        assert image.default_preset == "auto"
    else:
        default = image.presets[image.default_preset]
        assert image.default_preset.startswith("file")
        assert (default.center, default.width) == window
    for preset in ("lung", "mediastinum", "bone", "full range"):
        assert preset in image.presets
    rendered = render_display(image)
    assert rendered.dtype == np.uint8 and rendered.shape == (height, width)
    assert rendered.max() > rendered.min()  # not blank


def _region_means(display: np.ndarray) -> tuple[float, float, float]:
    """(mediastinum/spine strip, right lung field, left lung field) mean brightness."""
    h, w = display.shape
    mediastinum = display[int(h * 0.3):int(h * 0.6), int(w * 0.46):int(w * 0.54)].mean()
    right_lung = display[int(h * 0.25):int(h * 0.5), int(w * 0.2):int(w * 0.32)].mean()
    left_lung = display[int(h * 0.25):int(h * 0.5), int(w * 0.68):int(w * 0.8)].mean()
    return float(mediastinum), float(right_lung), float(left_lung)


@pytest.mark.parametrize("name", [n for n in CHEST_FILES if "relabelled" not in n])
def test_chest_displays_bone_white_air_black(dicom_dir: Path, name: str) -> None:
    """Radiographic convention after the full pipeline: mediastinum brighter than lung fields."""
    display = render_display(load_image(dicom_dir / name))
    mediastinum, right_lung, left_lung = _region_means(display)
    assert mediastinum > right_lung + 30
    assert mediastinum > left_lung + 30


def test_monochrome1_inverts_after_voi(dicom_dir: Path) -> None:
    """With the file's window 15000/30000 the pipeline is 255 - linear(stored), not linear(max-stored)."""
    image = load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")
    display = render_display(image)
    c, w = 15000.0, 30000.0
    expected = 255.0 - np.clip(((image.stored - (c - 0.5)) / (w - 1) + 0.5) * 255.0, 0, 255)
    assert np.abs(display.astype(float) - np.rint(expected)).max() <= 1
    # Inverting the stored values before the VOI would give a visibly different image.
    wrong = np.clip((((image.stored.max() - image.stored) - (c - 0.5)) / (w - 1) + 0.5) * 255, 0, 255)
    assert np.abs(display.astype(float) - wrong).mean() > 20


def test_relabelled_monochrome1_is_the_inverse(dicom_dir: Path) -> None:
    mono2 = load_image(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")
    mono1 = load_image(dicom_dir / "chest_cr_relabelled_mono1_8bit_jpeg_baseline.dcm")
    assert np.array_equal(mono1.stored, mono2.stored)
    window = Window(128.0, 256.0)
    assert np.array_equal(render_display(mono1, window), 255 - render_display(mono2, window))
    # Default presets mirror each other too, so the default views are exact inverses.
    assert np.array_equal(render_display(mono1), 255 - render_display(mono2))


def test_lossless_codecs_agree_bit_exact(dicom_dir: Path) -> None:
    j2k = load_image(dicom_dir / "extremity_cr_mono1_10bit_jpeg2000_lossless.dcm")
    jls = load_image(dicom_dir / "extremity_cr_mono1_10bit_jpegls_lossless.dcm")
    assert np.array_equal(j2k.stored, jls.stored)
    assert j2k.content_hash == jls.content_hash


def test_acr_nema_without_header_opens_with_notice(dicom_dir: Path) -> None:
    image = load_image(dicom_dir / "chest_cr_mono1_10bit_acrnema_no_header.dcm")
    assert image.transfer_syntax == "1.2.840.10008.1.2"  # implicit VR little endian assumed
    assert any("ACR-NEMA" in notice for notice in image.notices)
    assert image.modality == "CR" and image.view_position == "PA" and image.body_part == "CHEST"


def test_12bit_jpeg_extended_decodes(dicom_dir: Path) -> None:
    image = load_image(dicom_dir / "hip_cr_12bit_jpeg_extended.dcm")
    assert image.transfer_syntax == "1.2.840.10008.1.2.4.51"
    assert image.stored.dtype == np.uint16
    assert 500 < int(image.stored.max()) < 1024
    assert float(image.stored.std()) > 50  # real content, not a blank frame


def test_metadata_is_searchable_text(dicom_dir: Path) -> None:
    image = load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")
    names = {item.name for item in image.metadata}
    assert {"Modality", "Photometric Interpretation", "Window Center"} <= names
    assert all(isinstance(item.value, str) and len(item.value) <= 201 for item in image.metadata)
    assert not any(item.tag == "(7FE0,0010)" for item in image.metadata)

"""Honest display (issue #15 item 4), Qt-free: Presentation LUT Shape, sane presets, corner
text, orientation markers and the LOSSY badge."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxrview.core import load_image, model_view, render_display
from cxrview.core.overlay_text import (
    ViewTransform,
    corner_text,
    lossy_badge,
    orientation_markers,
)
from cxrview.core.presets import MIN_WIDTH_FRACTION, STANDARD_PRESETS, file_window_names
from tests.unit.dicom_factory import make_dicom, phantom


def test_presentation_lut_shape_inverse_inverts_display_and_model_view(tmp_path: Path) -> None:
    pixels = phantom(top=4000)
    plain = load_image(make_dicom(tmp_path / "a.dcm", pixels, bits_stored=12))
    inverse = load_image(make_dicom(tmp_path / "b.dcm", pixels, bits_stored=12,
                                    PresentationLUTShape="INVERSE"))
    assert inverse.is_inverted and not plain.is_inverted
    assert np.array_equal(render_display(inverse, plain.presets["auto"]),
                          255 - render_display(plain, plain.presets["auto"]))
    # The models see what the reader sees: the one definition of their input follows.
    assert np.array_equal(model_view(inverse), 255 - model_view(plain))
    assert any("INVERSE" in n for n in inverse.notices)
    # MONOCHROME1 with the INVERSE the standard requires is inverted once, not twice.
    mono1 = load_image(make_dicom(tmp_path / "c.dcm", pixels, bits_stored=12, photometric="MONOCHROME1",
                                  PresentationLUTShape="INVERSE"))
    mono1_plain = load_image(make_dicom(tmp_path / "d.dcm", pixels, bits_stored=12,
                                        photometric="MONOCHROME1"))
    assert np.array_equal(render_display(mono1), render_display(mono1_plain))


@pytest.mark.parametrize("bits", [8, 10, 12, 15, 16])
def test_bone_preset_is_never_a_two_tone_silhouette(tmp_path: Path, bits: int) -> None:
    # Most of the film on two values (background and a flat body), a thin spread of bright bone.
    top = (1 << bits) - 1
    pixels = np.full((200, 200), top // 8, dtype=np.uint16 if bits > 8 else np.uint8)
    pixels[:, 100:] = top // 8 + 1
    pixels[::7, ::5] = np.linspace(top // 2, top, pixels[::7, ::5].size).reshape(pixels[::7, ::5].shape)
    image = load_image(make_dicom(tmp_path / "b.dcm", pixels, bits_stored=bits))
    full = image.presets["full range"]
    for name in ("lung", "mediastinum", "bone", "auto"):
        window = image.presets[name]
        assert window.width >= full.width * MIN_WIDTH_FRACTION - 1e-9, (name, window)
        assert full.low <= window.low and window.high <= full.high + 1e-9


def test_preset_names_have_fixed_keys(tmp_path: Path) -> None:
    image = load_image(make_dicom(tmp_path / "w.dcm", phantom(), WindowCenter=[100, 200],
                                  WindowWidth=[50, 80]))
    names = list(image.presets)
    assert file_window_names(names) == ["file 1", "file 2"]
    assert set(STANDARD_PRESETS[:5]) <= set(names)


def test_corner_text_fills_known_fields_and_drops_empty_lines(dicom_dir: Path) -> None:
    image = load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")
    text = corner_text(image, {"zoom": "50%", "window_center": "15000", "window_width": "30000"})
    assert text["top_left"][0] == "CompressedSamples, RG1"
    assert any("2004-08-26" in line for line in text["top_right"])
    assert "W 30000 C 15000" in text["bottom_right"]
    assert not any("Acc" == line.strip() for line in text["top_right"])  # no accession: no line
    anonymous = corner_text(image, {}, anonymised=True)
    joined = " ".join(line for lines in anonymous.values() for line in lines)
    assert "CompressedSamples" not in joined and "chest_cr" not in joined


def test_lossy_badge(dicom_dir: Path, nih_dir: Path) -> None:
    assert lossy_badge(load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")) == "LOSSY 10:1"
    baseline = dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm"
    assert lossy_badge(load_image(baseline)) == "LOSSY (ISO_10918_1)"
    assert lossy_badge(load_image(dicom_dir / "extremity_cr_mono1_10bit_jpeg2000_lossless.dcm")) is None
    assert lossy_badge(load_image(next(nih_dir.glob("*.png")))) is None


def test_orientation_markers_follow_flips_and_rotations(dicom_dir: Path) -> None:
    image = load_image(dicom_dir / "chest_cr_mono1_15bit_jpeg2000_lossy.dcm")  # Patient Orientation L\F
    assert orientation_markers(image) == {"right": "L", "left": "R", "bottom": "F", "top": "H"}
    flipped = orientation_markers(image, ViewTransform(flip_h=True))
    assert flipped["left"] == "L" and flipped["right"] == "R"
    turned = orientation_markers(image, ViewTransform(rotation=90))
    assert turned == {"top": "R", "right": "H", "bottom": "L", "left": "F"}
    # Markers and points move together: the patient's left (right edge) goes where the map says.
    t = ViewTransform(rotation=90)
    x, y = t.map_point(image.width, image.height / 2, image.width, image.height)
    assert (x, y) == (image.height / 2, image.width)  # the bottom edge: "L", as the markers say
    assert orientation_markers(load_image(dicom_dir / "chest_cr_mono2_8bit_jpeg_baseline.dcm")) == {}


def test_screen_flip_of_a_quarter_turn_is_the_other_image_axis() -> None:
    t = ViewTransform(rotation=90).flipped(horizontal=True)
    assert t.flip_v and not t.flip_h
    w, h = 40.0, 20.0
    # After the flip, screen x mirrors while screen y stays.
    before = ViewTransform(rotation=90).map_point(5, 3, w, h)
    after = t.map_point(5, 3, w, h)
    assert after[1] == before[1] and after[0] == pytest.approx(h - before[0])

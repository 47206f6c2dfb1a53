"""DICOM pipeline details on synthetic files: LUTs, rescale, spacing rules, frames, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cxrview.core import (
    ImageTooLargeError,
    NotAnImageError,
    SpacingSource,
    TruncatedFileError,
    Window,
    load_image,
    render_display,
)
from tests.unit.dicom_factory import make_dicom, phantom


def test_rescale_slope_intercept_feeds_the_window(tmp_path: Path) -> None:
    pixels = phantom(dtype=np.int16, top=2000)
    path = make_dicom(tmp_path / "ct_like.dcm", pixels, signed=True, bits_stored=16,
                      RescaleSlope=2, RescaleIntercept=-1000, WindowCenter=0, WindowWidth=400)
    image = load_image(path)
    assert image.modality_value_at(0, 0) == pixels[0, 0] * 2 - 1000
    display = render_display(image)
    hu = pixels.astype(float) * 2 - 1000
    expected = np.rint(np.clip(((hu - (0 - 0.5)) / 399 + 0.5) * 255, 0, 255))
    assert np.array_equal(display, expected.astype(np.uint8))
    assert image.modality_range() == (float(hu.min()), float(hu.max()))


def test_negative_stored_values_use_the_lookup_table_correctly(tmp_path: Path) -> None:
    pixels = (phantom(dtype=np.int16, top=3000).astype(np.int32) - 1500).astype(np.int16)
    image = load_image(make_dicom(tmp_path / "signed.dcm", pixels, signed=True))
    window = Window(center=-200.0, width=900.0)
    direct = np.rint(np.clip(((pixels - (-200 - 0.5)) / 899 + 0.5) * 255, 0, 255)).astype(np.uint8)
    assert np.array_equal(render_display(image, window), direct)


def test_modality_lut_sequence(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.LUTData = np.arange(0, 2560, 10, dtype='<u2').tobytes()
    item.ModalityLUTType = "US"
    pixels = phantom(dtype=np.uint8, top=255)
    image = load_image(make_dicom(tmp_path / "mlut.dcm", pixels, ModalityLUTSequence=Sequence([item])))
    assert image.modality_value_at(5, 5) == pixels[5, 5] * 10
    assert image.modality_range() == (0.0, 2550.0)


def test_voi_lut_sequence_used_when_no_window_chosen(tmp_path: Path) -> None:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 8]
    item.LUTData = np.minimum(255, np.arange(4096) // 8).astype('<u2').tobytes()  # saturates at 2040
    pixels = phantom(top=4000)
    image = load_image(make_dicom(tmp_path / "voilut.dcm", pixels, bits_stored=12,
                                  VOILUTSequence=Sequence([item])))
    display = render_display(image)
    assert np.array_equal(display, np.minimum(255, pixels // 8).astype(np.uint8))
    # An explicit window still overrides the file's LUT.
    assert not np.array_equal(render_display(image, Window(2000.0, 4000.0)), display)


@pytest.mark.parametrize("function", ["SIGMOID", "LINEAR_EXACT"])
def test_voi_lut_functions(tmp_path: Path, function: str) -> None:
    pixels = phantom(top=4000)
    image = load_image(make_dicom(tmp_path / "f.dcm", pixels, bits_stored=12, WindowCenter=2000,
                                  WindowWidth=1000, VOILUTFunction=function))
    x = pixels.astype(float)
    if function == "SIGMOID":
        expected = 255 / (1 + np.exp(-4 * (x - 2000) / 1000))
    else:
        expected = np.clip(((x - 2000) / 1000 + 0.5) * 255, 0, 255)
    assert np.abs(render_display(image).astype(float) - expected).max() <= 0.5 + 1e-9


def test_multiple_file_windows_keep_their_explanations(tmp_path: Path) -> None:
    image = load_image(make_dicom(tmp_path / "w.dcm", phantom(), bits_stored=12,
                                  WindowCenter=[2000, 1000], WindowWidth=[4000, 500],
                                  WindowCenterWidthExplanation=["NORMAL", "HARDER"]))
    assert list(image.presets)[:2] == ["file: NORMAL", "file: HARDER"]
    assert image.default_preset == "file: NORMAL"


@pytest.mark.parametrize(("elements", "expected", "source"), [
    ({"PixelSpacing": [0.0, 0.0]}, None, SpacingSource.UNKNOWN),
    ({}, None, SpacingSource.UNKNOWN),
    ({"PixelSpacing": [0.15, 0.16]}, (0.15, 0.16), SpacingSource.PIXEL_SPACING),
    ({"ImagerPixelSpacing": [0.2, 0.2]}, (0.2, 0.2), SpacingSource.IMAGER_PIXEL_SPACING),
    ({"ImagerPixelSpacing": [0.2, 0.2], "EstimatedRadiographicMagnificationFactor": 1.25},
     (0.16, 0.16), SpacingSource.ERMF_CORRECTED),
    ({"PixelSpacing": [0.0, 0.0], "ImagerPixelSpacing": [0.1, 0.1]}, (0.1, 0.1),
     SpacingSource.IMAGER_PIXEL_SPACING),
])
def test_spacing_rules(tmp_path: Path, elements: dict, expected: tuple | None,
                       source: SpacingSource) -> None:
    image = load_image(make_dicom(tmp_path / "s.dcm", phantom(), **elements))
    assert image.spacing_source is source
    if expected is None:
        assert image.spacing is None
        assert image.distance_mm((0, 0), (10, 0)) is None
    else:
        assert (image.spacing.row_mm, image.spacing.col_mm) == pytest.approx(expected)
        assert image.distance_mm((0, 0), (0, 10)) == pytest.approx(10 * expected[0])


def test_multiframe_takes_first_frame_with_notice(tmp_path: Path) -> None:
    frames = np.stack([phantom(), phantom()[::-1], phantom()[:, ::-1]])
    image = load_image(make_dicom(tmp_path / "mf.dcm", frames, frames=3))
    assert np.array_equal(image.stored, frames[0])
    assert any("frame 1 of 3" in notice for notice in image.notices)


def test_rgb_is_converted_to_grey(tmp_path: Path) -> None:
    grey = phantom(dtype=np.uint8, top=255)
    rgb = np.stack([grey, grey // 2, grey // 4], axis=-1)
    image = load_image(make_dicom(tmp_path / "rgb.dcm", rgb))
    assert image.stored.ndim == 2 and image.photometric == "MONOCHROME2"
    expected = np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114])
    assert np.abs(image.stored.astype(float) - expected).max() <= 1
    assert any("grey" in notice for notice in image.notices)


def test_rle_compressed_decodes(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.uid import RLELossless

    pixels = phantom()
    path = make_dicom(tmp_path / "plain.dcm", pixels, bits_stored=12)
    ds = dcmread(path)
    ds.compress(RLELossless)
    ds.save_as(tmp_path / "rle.dcm")
    image = load_image(tmp_path / "rle.dcm")
    assert image.transfer_syntax == RLELossless
    assert np.array_equal(image.stored, pixels)


def test_truncated_pixel_data_is_a_clear_error(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "full.dcm", phantom((256, 256)))
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 40_000])
    with pytest.raises((TruncatedFileError, NotAnImageError)) as info:
        load_image(cut)
    assert str(cut) in str(info.value)


def test_decompression_bomb_refused_unless_asked(tmp_path: Path) -> None:
    path = make_dicom(tmp_path / "big.dcm", phantom((64, 80)))
    with pytest.raises(ImageTooLargeError, match="megapixel"):
        load_image(path, max_pixels=1000)
    assert load_image(path, max_pixels=1000, allow_large=True).width == 80


def test_dicom_without_pixels_is_not_an_image(tmp_path: Path) -> None:
    from pydicom import dcmread

    path = make_dicom(tmp_path / "x.dcm", phantom())
    ds = dcmread(path)
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(NotAnImageError, match="pixel data"):
        load_image(tmp_path / "nopix.dcm")


def test_content_hash_ignores_metadata_but_not_pixels(tmp_path: Path) -> None:
    pixels = phantom()
    a = load_image(make_dicom(tmp_path / "a.dcm", pixels, PatientID="1"))
    b = load_image(make_dicom(tmp_path / "b.dcm", pixels, PatientID="anonymised"))
    changed = pixels.copy()
    changed[0, 0] += 1
    c = load_image(make_dicom(tmp_path / "c.dcm", changed))
    assert a.content_hash == b.content_hash != c.content_hash

"""PNG / JPEG / TIFF loading, format sniffing, bad input and folder listing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrview.core import (
    CorruptImageError,
    FileMissingError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    find_images,
    load_image,
    model_input,
    render_display,
)
from tests.unit.dicom_factory import make_dicom, phantom


def test_all_nih_pngs_load_as_stored(nih_dir: Path) -> None:
    paths = sorted(nih_dir.glob("*.png"))
    assert len(paths) == 52
    hashes = set()
    for path in paths:
        image = load_image(path)
        assert image.format == "PNG" and image.bits_stored == 8
        assert image.photometric == "MONOCHROME2" and image.spacing is None
        assert (image.width, image.height) in {(256, 256), (512, 512)}
        assert image.default_preset == "as stored"
        # NIH PNGs are already windowed: the viewer shows them exactly as stored.
        assert np.array_equal(render_display(image), image.stored)
        hashes.add(image.content_hash)
    assert len(hashes) == len(paths)


def test_16bit_png_keeps_depth_and_gets_auto_window(tmp_path: Path) -> None:
    pixels = phantom((120, 100), top=40000)
    cv2.imwrite(str(tmp_path / "deep.png"), pixels)
    image = load_image(tmp_path / "deep.png")
    assert image.stored.dtype == np.uint16 and image.bits_stored == 16
    assert np.array_equal(image.stored, pixels)
    assert image.default_preset == "auto"
    lo, hi = image.presets["auto"].low, image.presets["auto"].high
    assert 0 <= lo < hi <= 40001


def test_chest_presets_are_ordered_by_brightness(tmp_path: Path) -> None:
    pixels = phantom((200, 200), top=4000)
    image = load_image(make_dicom(tmp_path / "p.dcm", pixels, bits_stored=12))
    p = image.presets
    assert p["lung"].center < p["mediastinum"].center < p["bone"].center
    lo, hi = image.modality_range()
    assert p["full range"].low <= lo and p["full range"].high >= hi
    # For MONOCHROME1 the same anatomy has mirrored values, so the order flips.
    inverted = load_image(make_dicom(tmp_path / "m1.dcm", pixels, bits_stored=12,
                                     photometric="MONOCHROME1"))
    q = inverted.presets
    assert q["lung"].center > q["mediastinum"].center > q["bone"].center


def test_jpeg_and_tiff(tmp_path: Path) -> None:
    pixels = phantom((90, 70), dtype=np.uint8, top=255)
    cv2.imwrite(str(tmp_path / "a.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(tmp_path / "b.tif"), phantom((90, 70), top=30000))
    jpeg = load_image(tmp_path / "a.jpg")
    assert jpeg.format == "JPEG" and np.abs(jpeg.stored.astype(int) - pixels).mean() < 3
    tiff = load_image(tmp_path / "b.tif")
    assert tiff.format == "TIFF" and tiff.stored.dtype == np.uint16


def test_colour_png_converted_to_grey(tmp_path: Path) -> None:
    grey = phantom((40, 50), dtype=np.uint8, top=255)
    cv2.imwrite(str(tmp_path / "same.png"), np.dstack([grey] * 3))
    assert np.array_equal(load_image(tmp_path / "same.png").stored, grey)  # exact, no notice
    cv2.imwrite(str(tmp_path / "tint.png"), np.dstack([grey, grey // 2, grey]))
    tinted = load_image(tmp_path / "tint.png")
    assert tinted.stored.ndim == 2 and tinted.notices


def test_model_input_is_unit_range_monochrome2(tmp_path: Path) -> None:
    pixels = phantom((64, 64), top=4000)
    m1 = load_image(make_dicom(tmp_path / "m1.dcm", pixels, bits_stored=12,
                               photometric="MONOCHROME1", WindowCenter=2000, WindowWidth=4000))
    x = model_input(m1)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert x[:, 0].mean() > x[:, -1].mean()  # low stored values are bright in MONOCHROME1


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def test_decompression_bomb_png_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))  # 400 megapixels claimed, 60 bytes on disk
    with pytest.raises(ImageTooLargeError, match="400 megapixels"):
        load_image(path)


@pytest.mark.parametrize(("name", "content", "error"), [
    ("garbage.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, CorruptImageError),
    ("text.dcm", b"hello, this is not an image\n" * 10, NotAnImageError),
    ("empty.jpg", b"", NotAnImageError),
])
def test_bad_files_raise_typed_errors(tmp_path: Path, name: str, content: bytes,
                                      error: type[ImageLoadError]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(error) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message


def test_truncated_png_and_jpeg(tmp_path: Path, nih_dir: Path) -> None:
    data = (nih_dir / "00000001_000.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(TruncatedFileError):
        load_image(tmp_path / "cut.png")
    _ok, jpeg = cv2.imencode(".jpg", phantom((300, 300), dtype=np.uint8, top=255))
    (tmp_path / "cut.jpg").write_bytes(jpeg.tobytes()[:-5000])
    with pytest.raises(TruncatedFileError):
        load_image(tmp_path / "cut.jpg")


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(FileMissingError, match="not found"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(NotAnImageError, match="folder"):
        load_image(tmp_path)


def test_find_images_natural_order_and_extensionless_dicom(tmp_path: Path) -> None:
    for name in ["img10.png", "img2.png", "img1.png", ".hidden.png", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    make_dicom(tmp_path / "IM0001", phantom())
    (tmp_path / "README").write_text("not dicom")
    names = [p.name for p in find_images(tmp_path)]
    assert names == ["IM0001", "img1.png", "img2.png", "img10.png"]

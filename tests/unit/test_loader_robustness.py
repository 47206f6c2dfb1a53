"""One regression test per class of hostile input the issue-#15 fuzz run found.

Every input is generated here and is small on disk; what it *claims* is what used to hurt
(memory, an endless loop, an internal message).
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, JPEGBaseline8Bit, JPEGLSLossless, generate_uid

from cxrview.cli import main
from cxrview.core import (
    CorruptImageError,
    FileMissingError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    find_images,
    load_image,
    render_display,
)
from cxrview.core.errors import DecodeTimeoutError
from cxrview.core.limits import TimeLimitExceeded, call_with_time_limit, codestream_size
from tests.unit.dicom_factory import make_dicom, phantom

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def _info_json(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out

    def refuse(constant: str) -> None:
        raise AssertionError(f"invalid JSON constant {constant}")

    return json.loads(out, parse_constant=refuse)


def _encapsulated(path: Path, frame: bytes, uid: str, rows: int = 64, cols: int = 64) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = uid
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


# -- memory: value ranges, codestream sizes, inflation ---------------------------------------------
def test_int32_spanning_2_to_the_31_loads_in_little_memory(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    pixels = np.zeros((8, 8), dtype=np.int32)
    pixels[0, 0], pixels[7, 7], pixels[3, 3] = 0, 2**31 - 1, 2**30
    cv2.imwrite(str(tmp_path / "wide.tif"), pixels)
    make_dicom(tmp_path / "wide.dcm", pixels.astype(np.uint32))
    for name in ("wide.tif", "wide.dcm"):
        tracemalloc.start()
        try:
            image = load_image(tmp_path / name)
            render_display(image)
            _current, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 32 << 20, f"{name}: {peak / 1e6:.0f} MB for 64 pixels"
        assert all(w.width > 0 for w in image.presets.values())
        assert _info_json(tmp_path / name, capsys)["width"] == 8


def _j2k_codestream(width: int, height: int) -> bytes:
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, width, height, 0, 0, width, height, 0, 0, 1) + b"\x07\x01\x01"
    return b"\xff\x4f\xff\x51" + siz + b"\xff\x90" + b"\x00" * 64 + b"\xff\xd9"


def _jpeg_codestream(width: int, height: int, sof: int = 0xC0) -> bytes:
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    segment = bytes([0xFF, sof]) + struct.pack(">H", 2 + len(frame)) + frame
    return b"\xff\xd8" + segment + b"\x00" * 64 + b"\xff\xd9"


@pytest.mark.parametrize(("uid", "stream"), [
    (JPEG2000, _j2k_codestream(50000, 50000)),
    (JPEGBaseline8Bit, _jpeg_codestream(50000, 50000)),
    (JPEGLSLossless, _jpeg_codestream(50000, 50000, sof=0xF7)),
], ids=["j2k", "jpeg", "jpeg-ls"])
def test_codestream_claiming_50000_squared_is_refused_before_decoding(tmp_path: Path, uid: str,
                                                                      stream: bytes) -> None:
    path = _encapsulated(tmp_path / "bomb.dcm", stream, uid)
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="compressed image claims 50000×50000"):
            load_image(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20


def test_codestream_sizes_are_read_from_real_files() -> None:
    from pydicom.encaps import generate_frames

    for name in ("JPEG2000.dcm", "SC_rgb_jpeg.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        ds = pydicom.dcmread(PYDICOM_FILES / name)
        first = next(generate_frames(ds.PixelData, number_of_frames=int(ds.get("NumberOfFrames", 1) or 1)))
        width, height, _components = codestream_size(first)
        assert (width, height) == (ds.Columns, ds.Rows), name


def _deflated_dicom(path: Path, inflated_bytes: int) -> Path:
    """A deflated data set holding one private OB element of zeros: tiny file, huge when inflated."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    with open(path, "wb") as handle:
        handle.write(b"\0" * 128 + b"DICM")
        pydicom.filewriter.write_file_meta_info(pydicom.filebase.DicomFileLike(handle), meta)
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        handle.write(deflate.compress(struct.pack("<HH2sHI", 0x0009, 0x1001, b"OB", 0, inflated_bytes)))
        zeros = b"\0" * (1 << 20)
        for _ in range(inflated_bytes >> 20):
            handle.write(deflate.compress(zeros))
        handle.write(deflate.flush())
    return path


def test_deflated_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    path = _deflated_dicom(tmp_path / "dfl.dcm", 64 << 20)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="inflates to more than"):
            load_image(path, max_pixels=1_000_000)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 << 20


def test_a_real_deflated_file_still_opens() -> None:
    image = load_image(PYDICOM_FILES / "image_dfl.dcm", max_pixels=1_000_000)
    assert image.transfer_syntax == "1.2.840.10008.1.2.1.99"


def test_opening_rasters_keeps_pillows_bomb_guard(tmp_path: Path, nih_dir: Path) -> None:
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    assert before is not None
    cv2.imwrite(str(tmp_path / "a.tif"), phantom((20, 20)))
    cv2.imwrite(str(tmp_path / "a.jpg"), phantom((20, 20), dtype=np.uint8, top=255))
    for path in (next(nih_dir.glob("*.png")), tmp_path / "a.tif", tmp_path / "a.jpg"):
        load_image(path)
    assert Image.MAX_IMAGE_PIXELS == before


def test_16bit_rgba_png_refused_by_decoded_size(tmp_path: Path) -> None:
    # 6000 × 6000 is under the pixel limit, but 16-bit RGBA decodes to 288 MB: over 4 bytes/pixel
    # of a 40-megapixel limit.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 6000, 6000, 16, 6, 0, 0, 0)
    (tmp_path / "deep.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(ImageTooLargeError, match="MB"):
        load_image(tmp_path / "deep.png", max_pixels=40_000_000)


# -- time: endless loops ----------------------------------------------------------------------------
def test_jp2_box_of_length_zero_is_refused_at_once(tmp_path: Path) -> None:
    # pydicom's get_j2k_parameters loops forever on a box whose length does not advance.
    jp2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 0, b"ftyp") + b"jp2 " * 4
           + struct.pack(">I4s", 8, b"jp2c") + _j2k_codestream(64, 64))
    path = _encapsulated(tmp_path / "jp2.dcm", jp2, JPEG2000)
    start = time.perf_counter()
    with pytest.raises(CorruptImageError, match="damaged"):
        load_image(path)
    assert time.perf_counter() - start < 2.0


def test_time_limit_stops_a_python_loop() -> None:
    stopped = threading.Event()

    def spin() -> None:
        try:
            while True:
                pass
        finally:
            stopped.set()

    start = time.perf_counter()
    with pytest.raises(TimeLimitExceeded):
        call_with_time_limit(spin, 0.3)
    assert time.perf_counter() - start < 1.5
    assert stopped.wait(2.0), "the abandoned loop kept running"


def test_a_decoder_that_never_returns_is_a_typed_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import cxrview.core.dicom as dicom

    def hang(*_args: object, **_kwargs: object) -> None:
        while True:
            time.sleep(0.01)

    monkeypatch.setattr(dicom, "decode_first_frame", hang)
    path = make_dicom(tmp_path / "x.dcm", phantom())
    with pytest.raises(DecodeTimeoutError, match=r"longer than 0\.5 s"):
        load_image(path, time_limit=0.5)


# -- header trivia: repaired with a notice, never a refusal -------------------------------------------
@pytest.mark.parametrize(("elements", "notice"), [
    ({"RescaleIntercept": "nan", "RescaleSlope": 1}, "Rescale Intercept"),
    ({"NumberOfFrames": "abc"}, "Number of Frames"),
    ({"WindowCenter": "nan", "WindowWidth": 400}, "window"),
    ({"WindowCenter": 100, "WindowWidth": -5}, "window"),
    ({"PixelSpacing": ["inf", "inf"]}, "Pixel Spacing"),
    ({"BitsStored": 40}, "Bits Stored"),
], ids=["nan-intercept", "frames-abc", "nan-window", "negative-width", "inf-spacing", "bits-stored"])
def test_invalid_optional_attributes_are_repaired_with_a_notice(
        tmp_path: Path, elements: dict, notice: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pydicom import config

    with config.settings.writing_validation_mode_context(config.IGNORE) if hasattr(
            config.settings, "writing_validation_mode_context") else _nothing():
        path = _raw_dicom(tmp_path / "bad.dcm", elements)
    image = load_image(path)
    assert any(notice in n for n in image.notices), image.notices
    assert all(np.isfinite([w.center, w.width]).all() for w in image.presets.values())
    assert image.spacing is None or np.isfinite([image.spacing.row_mm, image.spacing.col_mm]).all()
    assert render_display(image).max() > 0  # not a black frame
    _info_json(path, capsys)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def _raw_dicom(path: Path, elements: dict) -> Path:
    """make_dicom, then each element written as the raw text given (no validation on the way)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    make_dicom(path, phantom(), bits_stored=12)
    ds = pydicom.dcmread(path)
    for keyword, value in elements.items():
        tag = Tag(keyword)
        text = "\\".join(str(v) for v in value) if isinstance(value, list) else str(value)
        raw = text.encode() + (b" " if len(text) % 2 else b"")
        vr = dictionary_VR(tag)
        if vr == "US":
            raw = struct.pack("<H", int(value))
        ds._dict[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    ds.save_as(path)
    return path


def test_malformed_private_element_does_not_hide_the_image(tmp_path: Path) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    path = make_dicom(tmp_path / "priv.dcm", phantom())
    ds = pydicom.dcmread(path)
    ds._dict[Tag(0x0009, 0x0010)] = RawDataElement(Tag(0x0009, 0x0010), "LO", 4, b"ACME", 0, False, True)
    ds._dict[Tag(0x0009, 0x1001)] = RawDataElement(Tag(0x0009, 0x1001), "SQ", 6, b"\x01\x02\x03\x04\x05\x06",
                                                   0, False, True)
    ds.save_as(path)
    image = load_image(path)
    assert image.width == 80 and any(item.tag == "(0009,1001)" for item in image.metadata)


def test_nan_float_pixels_give_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pixels = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    pixels[0, :4] = [np.nan, np.inf, -np.inf, np.nan]
    cv2.imwrite(str(tmp_path / "nan.tif"), pixels)
    image = load_image(tmp_path / "nan.tif")
    assert np.isfinite(image.stored).all() and any("finite" in n for n in image.notices)
    info = _info_json(tmp_path / "nan.tif", capsys)
    low, high = info["modality_range"]
    assert 0.0 < low < 0.1 and high == 1.0  # the NaN at (0, 0) shows as the finite minimum


# -- messages: one line; paths that are not files ------------------------------------------------------
def test_every_error_is_one_line() -> None:
    error = CorruptImageError("/data/a\nb.dcm", "first line\n  second line\tand more")
    assert "\n" not in str(error) and "\t" not in str(error)
    assert str(error) == "/data/a\\nb.dcm: first line second line and more"
    assert len(str(ImageLoadError("x", "y" * 5000))) < 320


def test_over_long_path_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ("x" * 300 + ".dcm")
    with pytest.raises(FileMissingError, match="cannot be read"):
        load_image(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_dcm_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(NotAnImageError, match="not a regular file"):
        load_image(fifo)
    assert time.perf_counter() - start < 1.0
    assert find_images(tmp_path) == []


# -- what pydicom decodes, we open -------------------------------------------------------------------
def test_dicom_with_a_tiff_preamble_is_read_as_dicom() -> None:
    data = (PYDICOM_FILES / "MR_small.dcm").read_bytes()
    assert data[:4] == b"II*\x00" and data[128:132] == b"DICM"
    image = load_image(PYDICOM_FILES / "MR_small.dcm")
    assert image.format == "DICOM" and np.array_equal(image.stored, pydicom.dcmread(
        PYDICOM_FILES / "MR_small.dcm").pixel_array)


@pytest.mark.parametrize("name", ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_rle_32bit.dcm"])
def test_ybr_422_and_32bit_rgb_decode_as_pydicom_does(name: str) -> None:
    rgb = pydicom.dcmread(PYDICOM_FILES / name).pixel_array.astype(np.float64)
    image = load_image(PYDICOM_FILES / name)
    luma = rgb @ [0.299, 0.587, 0.114]
    assert np.abs(image.stored.astype(np.float64) - luma).max() <= 1.0


def test_truncated_compressed_dicom_says_truncated(tmp_path: Path) -> None:
    for name in ("JPEG2000.dcm", "SC_rgb_jpeg.dcm"):
        data = (PYDICOM_FILES / name).read_bytes()
        cut = tmp_path / f"cut_{name}"
        cut.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(TruncatedFileError, match="truncated"):
            load_image(cut)


def test_damaged_rle_is_a_typed_error_without_a_panic_on_stderr(tmp_path: Path,
                                                               capfd: pytest.CaptureFixture[str]) -> None:
    # Bit flips the fuzz found: pylibjpeg-rle (Rust) panicked on them, printing a backtrace.
    data = bytearray((PYDICOM_FILES / "MR_small_RLE.dcm").read_bytes())
    for at, value in ((2226, 20), (2536, 8), (3447, 69), (3500, 233), (3535, 53), (4008, 253), (4440, 250),
                      (4698, 109), (4914, 47), (5060, 20), (6239, 131), (6600, 163), (7014, 133)):
        data[at] = value
    path = tmp_path / "rle.dcm"
    path.write_bytes(bytes(data))
    capfd.readouterr()
    code = main(["info", str(path)])
    captured = capfd.readouterr()
    assert "panicked" not in captured.err and "backtrace" not in captured.err
    assert code == 0 or captured.err.count("\n") == 1

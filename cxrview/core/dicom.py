"""DICOM reading: header, pixel decoding with fallbacks, VOI, spacing and presets.

Compressed pixel data (JPEG, JPEG-LS, JPEG 2000/HTJ2K) is decoded with
imagecodecs first: it releases the GIL (pylibjpeg-openjpeg holds it for the
whole ~130 ms decode of a chest film, which froze the GUI even from a worker
thread), it is up to 4x faster on JPEG-LS, and its libjpeg-turbo decodes the
12-bit JPEG Extended that neither pylibjpeg nor GDCM can. pydicom with the
pylibjpeg plugins is the fallback (and decodes RLE and native data).

ACR-NEMA files without preamble or file meta: pydicom reads the elements with
``force=True`` but refuses to decode pixels without a Transfer Syntax UID, so
we supply the encoding it detected.

Before any decoder runs, the sizes a hostile file could lie about are checked from the
bytes (:mod:`cxrview.core.limits`): the codestream's own width and height, the size a
deflated dataset inflates to, the bytes one frame needs. Malformed optional attributes
are repaired with a notice (:mod:`cxrview.core.dicom_header`).
"""

from __future__ import annotations

import logging
import struct
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from cxrview.core.dicom_header import (
    display_attributes,
    file_windows,
    lut_from_item,
    metadata_items,
    modality_transform,
    optional_str,
    pixel_spacing,
    repair_header,
    safe_get,
)
from cxrview.core.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from cxrview.core.hashing import pixel_hash
from cxrview.core.image import Window, XrayImage
from cxrview.core.limits import (
    BYTES_PER_PIXEL_LIMIT,
    MIN_INFLATE_LIMIT,
    CodestreamError,
    codestream_size,
    inflated_size_within,
    is_interrupt,
)
from cxrview.core.presets import histogram_presets
from cxrview.core.raster import bounded_float, grey_from_colour

# pydicom reports header trivia as Python warnings (printed as several lines on stderr);
# the loader turns what matters into notices instead.
warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")

log = logging.getLogger(__name__)

DEFLATED = "1.2.840.10008.1.2.1.99"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian


def _import_pydicom() -> Any:
    import pydicom  # deferred: keeps `cxrview info` on PNGs light

    return pydicom


def _meta_transfer_syntax(head: bytes) -> tuple[str | None, int]:
    """(Transfer Syntax UID, offset after the file meta group) from a file's first bytes,
    by walking the explicit-VR little-endian group 0002 elements after the preamble."""
    if head[128:132] != b"DICM":
        return None, 0
    pos, uid = 132, None
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4:pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            if pos + 12 > len(head):
                break
            (length,) = struct.unpack_from("<I", head, pos + 8)
            value_at = pos + 12
        else:
            (length,) = struct.unpack_from("<H", head, pos + 6)
            value_at = pos + 8
        if element == 0x0010:
            uid = head[value_at:value_at + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = value_at + length
    return uid, pos


def _check_inflation(path: Path, max_pixels: int | None) -> None:
    """A deflated dataset must not inflate beyond what an allowed image can need."""
    with open(path, "rb") as handle:
        head = handle.read(8192)
        if DEFLATED.encode() not in head:
            return
        uid, offset = _meta_transfer_syntax(head)
        if uid != DEFLATED:
            return
        handle.seek(offset)
        stream = handle.read()
    limit = None if max_pixels is None else max(BYTES_PER_PIXEL_LIMIT * max_pixels, MIN_INFLATE_LIMIT)
    if limit is not None and not inflated_size_within(stream, limit):
        raise ImageTooLargeError(
            path, f"the deflated data set inflates to more than {limit / 1e6:.0f} MB "
                  "(a decompression bomb?)")


def read_dataset(path: Path, max_pixels: int | None = None) -> tuple[Any, list[str]]:
    """Parse the header (and pixel bytes) of a DICOM or ACR-NEMA file."""
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    notices: list[str] = []
    _check_inflation(path, max_pixels)
    try:
        ds = pydicom.dcmread(str(path), force=True)
    except InvalidDicomError as exc:
        raise NotAnImageError(path, f"not a DICOM file ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise TruncatedFileError(path, f"the file ends inside the DICOM header ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on garbage input
        raise CorruptImageError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc

    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        raise NotAnImageError(path, "is a DICOMDIR (the index of a CD or DVD): open its folder to "
                                    "browse the studies it lists")
    if "PixelData" not in ds:
        raise _missing_pixels(path, ds)

    if meta is None or "TransferSyntaxUID" not in meta:
        # ACR-NEMA style: pydicom detected the encoding while parsing; make it explicit.
        implicit = getattr(ds, "original_encoding", (True, True))[0]
        if meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        notices.append("no DICOM file header (ACR-NEMA style): assumed "
                       + ("implicit" if implicit else "explicit") + " VR little endian")
    return ds, notices


def _missing_pixels(path: Path, ds: Any) -> ImageLoadError:
    """Why a parsed file has no Pixel Data: truncated inside it, or none to begin with.

    pydicom keeps *no* element when the file ends inside encapsulated pixel data (it
    collects them in one expression that the end-of-file error abandons), so a header
    read that stops before the pixels tells the two cases apart."""
    pydicom = _import_pydicom()
    try:
        header = pydicom.dcmread(str(path), force=True, stop_before_pixels=True)
    except Exception:
        header = ds
    if "Rows" in header:
        with open(path, "rb") as handle:
            has_tag = _PIXEL_DATA_TAG in handle.read()
        if has_tag or len(header) > len(ds):
            return TruncatedFileError(path, "the file is truncated inside its pixel data")
        return NotAnImageError(path, "DICOM file without pixel data (not an image)")
    if len(header) == 0:
        return NotAnImageError(path, "not an image file (no DICOM pixel data found)")
    if "Image Storage" in _sop_class_name(header):
        return TruncatedFileError(path, "the file is truncated: it ends before its image description "
                                        "and pixel data")
    return NotAnImageError(path, "DICOM file without an image (no pixel data: a report, "
                                 "structured document or index?)")


def _sop_class_name(ds: Any) -> str:
    from pydicom.uid import UID

    meta = getattr(ds, "file_meta", None)
    uid = str(safe_get(ds, "SOPClassUID") or (meta.get("MediaStorageSOPClassUID", "") if meta else ""))
    try:
        return str(UID(uid).name) if uid else ""
    except Exception:
        return ""


def _transfer_syntax_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else uid


# Encapsulated syntaxes imagecodecs decodes with the GIL released (and, for JPEG-LS and
# 12-bit JPEG, faster or at all): decoding on a worker thread then never stalls the GUI.
_IMAGECODECS_DECODERS = {
    "1.2.840.10008.1.2.4.50": "jpeg8_decode",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "jpeg8_decode",  # JPEG extended, 12-bit
    "1.2.840.10008.1.2.4.57": "ljpeg_decode",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "ljpeg_decode",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80": "jpegls_decode",
    "1.2.840.10008.1.2.4.81": "jpegls_decode",
    "1.2.840.10008.1.2.4.90": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.91": "jpeg2k_decode",
    "1.2.840.10008.1.2.4.201": "jpeg2k_decode",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "jpeg2k_decode",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "jpeg2k_decode",  # HTJ2K
}


def _first_frame_bytes(ds: Any, frames: int) -> bytes | None:
    from pydicom.encaps import generate_frames

    try:
        return next(generate_frames(ds.PixelData, number_of_frames=frames))
    except Exception:  # damaged fragments: the decoders report it
        return None


def _check_codestream(first: bytes | None, ds: Any, path: Path, uid: str, max_pixels: int | None) -> None:
    """The codestream's *own* size is what a decoder allocates: check it, not only the header's."""
    if first is None or uid not in _IMAGECODECS_DECODERS:
        return
    try:
        size = codestream_size(first)
    except CodestreamError as exc:
        raise CorruptImageError(path, f"the compressed image data is damaged ({exc})") from exc
    if size is None:
        return
    width, height, _components = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            path, f"the compressed image claims {width}×{height} = {width * height / 1e6:.0f} megapixels, "
                  f"over the {max_pixels / 1e6:.0f}-megapixel safety limit")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if (width, height) != (cols, rows) and height != 0:  # height 0: set later by a DNL marker
        raise CorruptImageError(path, f"the compressed image is {width}×{height} but the header "
                                      f"says {cols}×{rows}")


def _decode_with_imagecodecs(ds: Any, uid: str, first: bytes | None) -> np.ndarray | None:
    """First frame via imagecodecs, or None when it is unavailable or fails (pydicom then tries)."""
    name = _IMAGECODECS_DECODERS.get(uid)
    if name is None or first is None:
        return None
    try:
        import imagecodecs

        decoder = getattr(imagecodecs, name, None)
        if decoder is None:
            return None
        arr = np.asarray(decoder(first))
    except MemoryError:
        raise
    except BaseException as exc:  # missing codec build or a stream it rejects: let pydicom try
        if is_interrupt(exc):
            raise
        log.info("imagecodecs could not decode (%s); falling back to pydicom", exc)
        return None
    return _match_pixel_representation(arr, ds)


def _match_pixel_representation(arr: np.ndarray, ds: Any) -> np.ndarray:
    """Codestreams may disagree with the header on signedness: the header wins (as in pydicom)."""
    try:
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        bits = int(ds.get("BitsStored", arr.dtype.itemsize * 8))
    except (TypeError, ValueError):
        return arr
    if signed and arr.dtype.kind == "u" and 1 <= bits <= 32:
        wide = arr.astype(np.int64)
        wide = np.where(wide >= (1 << (bits - 1)), wide - (1 << bits), wide)
        return wide.astype(np.int16 if bits <= 16 else np.int32)
    return arr


def _frame_bytes(ds: Any) -> tuple[int, int]:
    """(bytes of one native frame, bytes of one decoded frame) from the header."""
    rows, cols = int(ds.Rows), int(ds.Columns)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    bits = int(ds.BitsAllocated)
    decoded = rows * cols * samples * max(bits // 8, 1)
    stored = rows * cols * samples
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if samples == 3 and photometric in ("YBR_FULL_422", "YBR_PARTIAL_422"):
        stored = stored * 2 // 3  # two chroma samples shared by each pair of pixels (PS3.3 C.7.6.3.1.2)
    return (stored * bits + 7) // 8, decoded


def _check_native_length(ds: Any, path: Path, uid: str, frames: int) -> None:
    """Uncompressed pixel data shorter than the header promises means a truncated file."""
    from pydicom.uid import UID

    if UID(uid).is_compressed:
        return
    try:
        frame_bytes = _frame_bytes(ds)[0]
    except (AttributeError, TypeError, ValueError):
        return
    expected_bytes = frame_bytes * frames
    actual = len(ds.PixelData)
    if actual < expected_bytes:
        raise TruncatedFileError(
            path, f"the file is truncated: {actual:,} of {expected_bytes:,} bytes of pixel data")


def decode_first_frame(ds: Any, path: Path, max_pixels: int | None = None) -> np.ndarray:
    """Decode frame 1 to a 2-D grey array (colour converted by luminance)."""
    from pydicom.pixels.utils import pixel_array  # where pydicom 3 defines it (pixels re-exports it)

    uid = str(ds.file_meta.TransferSyntaxUID)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        decoded_bytes = _frame_bytes(ds)[1]
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptImageError(path, "DICOM image without a valid pixel description "
                                      "(Samples per Pixel, Bits Allocated)") from exc
    if max_pixels is not None and decoded_bytes > BYTES_PER_PIXEL_LIMIT * max_pixels:
        raise ImageTooLargeError(path, f"one frame decodes to {decoded_bytes / 1e6:.0f} MB, over the "
                                       f"{BYTES_PER_PIXEL_LIMIT * max_pixels / 1e6:.0f} MB safety limit")
    _check_native_length(ds, path, uid, frames)
    first = _first_frame_bytes(ds, frames) if uid in _IMAGECODECS_DECODERS else None
    _check_codestream(first, ds, path, uid, max_pixels)
    arr = _decode_with_imagecodecs(ds, uid, first)
    if arr is None:
        try:
            # RLE with pydicom's own numpy decoder: pylibjpeg-rle (Rust) panics on damaged
            # segments and prints a backtrace on stderr that no caller can suppress.
            plugin = "pydicom" if uid == RLE_LOSSLESS else ""
            arr = pixel_array(ds, index=0 if frames > 1 else None, decoding_plugin=plugin)
        except MemoryError:
            raise
        except BaseException as exc:  # a native decoder's panic too (see limits.is_interrupt)
            if is_interrupt(exc):
                raise
            raise _decode_error(exc, path, uid) from exc
    return _to_grey(arr, str(ds.get("PhotometricInterpretation", "")), path)


_TRUNCATION_WORDS = ("less than expected", "shorter", "truncated", "end of file", "premature end",
                     "insufficient", "not enough data", "ran out", "unexpected end", "incomplete")


def _decode_error(exc: BaseException, path: Path, uid: str) -> ImageLoadError:
    message = str(exc)
    lowered = message.lower()
    if any(word in lowered for word in _TRUNCATION_WORDS):
        return TruncatedFileError(path, f"the pixel data is truncated ({message})")
    if uid in _IMAGECODECS_DECODERS or any(word in lowered for word in (
            "unable to decode", "plugin", "not supported", "no pixel data decoders")):
        return UnsupportedTransferSyntaxError(
            path, f"unsupported or damaged compression '{_transfer_syntax_name(uid)}' ({uid}): {message}")
    return CorruptImageError(path, f"pixel data could not be decoded ({message})")


def _to_grey(arr: np.ndarray, photometric: str, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        return bounded_float(arr)[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        # pydicom hands YBR out already converted to RGB; ITU-R BT.601 luma.
        return grey_from_colour(arr)
    raise CorruptImageError(path, f"unexpected pixel array shape {arr.shape} for {photometric}")


def load_dicom(path: Path, *, max_pixels: int | None) -> XrayImage:
    """Load a DICOM (or ACR-NEMA) file into an XrayImage.

    pydicom converts elements lazily, so a damaged one (an unknown VR, a value its class
    refuses) raises wherever it is first read: any such error is a damaged file."""
    try:
        return _load_dicom(path, max_pixels)
    except (ImageLoadError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptImageError(path, f"damaged DICOM data ({type(exc).__name__}: {exc})") from exc


def _check_transfer_syntax(ds: Any, path: Path) -> None:
    from pydicom.uid import UID

    uid = str(ds.file_meta.TransferSyntaxUID).strip()
    if not UID(uid).is_transfer_syntax:
        raise UnsupportedTransferSyntaxError(path, f"unknown transfer syntax {uid[:64]!r}")


def _load_dicom(path: Path, max_pixels: int | None) -> XrayImage:
    ds, notices = read_dataset(path, max_pixels)
    _check_transfer_syntax(ds, path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptImageError(path, "DICOM image without valid Rows/Columns") from exc
    if rows <= 0 or cols <= 0:
        raise CorruptImageError(path, f"DICOM image of {cols}×{rows} pixels")
    repair_header(ds, notices)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if max_pixels is not None and rows * cols > max_pixels:
        raise ImageTooLargeError(
            path, f"{cols}×{rows} = {rows * cols / 1e6:.0f} megapixels exceeds the "
                  f"{max_pixels / 1e6:.0f}-megapixel safety limit")
    photometric = str(safe_get(ds, "PhotometricInterpretation") or "MONOCHROME2").strip().upper()
    stored = decode_first_frame(ds, path, max_pixels)
    if stored.dtype.kind == "f":
        stored, float_notices = bounded_float(stored)
        notices += float_notices
    if frames > 1:
        notices.append(f"multi-frame image: showing frame 1 of {frames}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        notices.append(f"{photometric} colour image converted to grey")
        photometric = "MONOCHROME2"
    if stored.shape != (rows, cols):
        raise CorruptImageError(path, f"decoded size {stored.shape[::-1]} differs from the "
                                      f"header's {cols}×{rows}")

    transform = modality_transform(ds)
    bits_stored = int(ds.get("BitsStored", stored.dtype.itemsize * 8) or stored.dtype.itemsize * 8)
    voi_seq = safe_get(ds, "VOILUTSequence")
    voi_lut = lut_from_item(voi_seq[0]) if voi_seq else None
    lut_shape = optional_str(ds, "PresentationLUTShape")
    if lut_shape is not None and lut_shape.upper() not in ("IDENTITY", "INVERSE"):
        notices.append(f"Presentation LUT Shape {lut_shape[:20]!r} is not IDENTITY or INVERSE: ignored")
        lut_shape = None

    image = XrayImage(
        path=str(path), stored=stored, photometric=photometric, bits_stored=bits_stored,
        modality_transform=transform, presets={"full range": Window(0.0, 1.0)},
        default_preset="full range", spacing=pixel_spacing(ds),
        content_hash=pixel_hash(stored), format="DICOM",
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        transfer_syntax_name=_transfer_syntax_name(str(ds.file_meta.TransferSyntaxUID)),
        modality=optional_str(ds, "Modality"), view_position=optional_str(ds, "ViewPosition"),
        body_part=optional_str(ds, "BodyPartExamined"), patient_age=optional_str(ds, "PatientAge"),
        presentation_lut_shape=lut_shape, voi_lut=voi_lut, attributes=display_attributes(ds),
        metadata=metadata_items(ds), notices=notices,
    )
    if lut_shape is not None and lut_shape.upper() == "INVERSE" and photometric == "MONOCHROME2":
        notices.append("Presentation LUT Shape INVERSE: shown inverted (low values bright)")
    own = file_windows(ds)
    derived = histogram_presets(stored, transform, inverted=image.is_inverted,
                                stored_range=image.stored_range(), bits_stored=bits_stored)
    image.presets = {**own, **derived}
    image.default_preset = next(iter(own)) if own else "auto"
    return image

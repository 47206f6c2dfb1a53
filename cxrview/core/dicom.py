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
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cxrview.core.errors import (
    CorruptImageError,
    ImageLoadError,
    ImageTooLargeError,
    NotAnImageError,
    TruncatedFileError,
    UnsupportedTransferSyntaxError,
)
from cxrview.core.hashing import pixel_hash
from cxrview.core.image import (
    LookupTable,
    MetadataItem,
    ModalityTransform,
    Spacing,
    SpacingSource,
    VoiFunction,
    Window,
    XrayImage,
)
from cxrview.core.presets import histogram_presets

log = logging.getLogger(__name__)

_MAX_METADATA_VALUE = 200


def _import_pydicom() -> Any:
    import pydicom  # deferred: keeps `cxrview info` on PNGs light

    return pydicom


def read_dataset(path: Path) -> tuple[Any, list[str]]:
    """Parse the header (and pixel bytes) of a DICOM or ACR-NEMA file."""
    pydicom = _import_pydicom()
    from pydicom.errors import InvalidDicomError
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    notices: list[str] = []
    try:
        ds = pydicom.dcmread(str(path), force=True)
    except InvalidDicomError as exc:
        raise NotAnImageError(path, f"not a DICOM file ({exc})") from exc
    except (EOFError, OSError) as exc:
        raise TruncatedFileError(path, f"the file ends inside the DICOM header ({exc})") from exc
    except Exception as exc:  # pydicom raises many types on garbage input
        raise CorruptImageError(path, f"unreadable DICOM header ({type(exc).__name__}: {exc})") from exc

    if "PixelData" not in ds:
        if len(ds) == 0 or "Rows" not in ds:
            raise NotAnImageError(path, "not an image file (no DICOM pixel data found)")
        raise NotAnImageError(path, "DICOM file without pixel data (not an image)")

    meta = ds.file_meta if hasattr(ds, "file_meta") else None
    if meta is None or "TransferSyntaxUID" not in meta:
        # ACR-NEMA style: pydicom detected the encoding while parsing; make it explicit.
        implicit = getattr(ds, "original_encoding", (True, True))[0]
        if meta is None:
            ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        notices.append("no DICOM file header (ACR-NEMA style): assumed "
                       + ("implicit" if implicit else "explicit") + " VR little endian")
    return ds, notices


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


def _decode_with_imagecodecs(ds: Any, uid: str, frames: int) -> np.ndarray | None:
    """First frame via imagecodecs, or None when it is unavailable or fails (pydicom then tries)."""
    from pydicom.encaps import generate_frames

    name = _IMAGECODECS_DECODERS.get(uid)
    try:
        import imagecodecs

        decoder = getattr(imagecodecs, name) if name else None
        if decoder is None:
            return None
        first = next(generate_frames(ds.PixelData, number_of_frames=frames))
        arr = np.asarray(decoder(first))
    except Exception as exc:  # missing codec build or a stream it rejects: let pydicom try
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
    if signed and arr.dtype.kind == "u":
        wide = arr.astype(np.int32)
        wide = np.where(wide >= (1 << (bits - 1)), wide - (1 << bits), wide)
        return wide.astype(np.int16 if bits <= 16 else np.int32)
    return arr


def _check_native_length(ds: Any, path: Path, uid: str, frames: int) -> None:
    """Uncompressed pixel data shorter than the header promises means a truncated file."""
    from pydicom.uid import UID

    if UID(uid).is_compressed:
        return
    try:
        bits = int(ds.BitsAllocated)
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) * frames
    except (AttributeError, TypeError, ValueError):
        return
    expected_bytes = (expected * bits + 7) // 8
    actual = len(ds.PixelData)
    if actual < expected_bytes:
        raise TruncatedFileError(
            path, f"the file is truncated: {actual:,} of {expected_bytes:,} bytes of pixel data")


def decode_first_frame(ds: Any, path: Path) -> np.ndarray:
    """Decode frame 1 to a 2-D grey array (colour converted by luminance)."""
    from pydicom.pixels.utils import pixel_array  # where pydicom 3 defines it (pixels re-exports it)

    uid = str(ds.file_meta.TransferSyntaxUID)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_native_length(ds, path, uid, frames)
    arr = _decode_with_imagecodecs(ds, uid, frames)
    if arr is None:
        try:
            arr = pixel_array(ds, index=0 if frames > 1 else None)
        except Exception as exc:
            raise _decode_error(exc, path, uid) from exc
    return _to_grey(arr, str(ds.get("PhotometricInterpretation", "")), path)


def _decode_error(exc: Exception, path: Path, uid: str) -> ImageLoadError:
    message = str(exc)
    lowered = message.lower()
    if any(word in lowered for word in ("less than expected", "shorter", "truncated", "end of file")):
        return TruncatedFileError(path, f"the pixel data is incomplete ({message})")
    if uid in _IMAGECODECS_DECODERS or any(word in lowered for word in (
            "unable to decode", "plugin", "not supported", "no pixel data decoders")):
        return UnsupportedTransferSyntaxError(
            path, f"unsupported or damaged compression '{_transfer_syntax_name(uid)}' ({uid}): {message}")
    return CorruptImageError(path, f"pixel data could not be decoded ({message})")


def _to_grey(arr: np.ndarray, photometric: str, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        # pydicom hands YBR out already converted to RGB; ITU-R BT.601 luma.
        rgb = arr[..., :3].astype(np.float32)
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        return np.rint(grey).astype(arr.dtype)
    raise CorruptImageError(path, f"unexpected pixel array shape {arr.shape} for {photometric}")


def _as_float_list(value: Any) -> list[float]:
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(
        value, (str, bytes))) else [value]
    out: list[float] = []
    for item in items:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            continue
    return out


def _lut_from_item(item: Any) -> LookupTable | None:
    """A Modality/VOI LUT Sequence item -> LookupTable (None when malformed)."""
    try:
        desc = [int(v) for v in item.LUTDescriptor]
        entries = desc[0] or 65536  # PS3.3 C.11.1.1: 0 means 2^16 entries
        first, bits = desc[1], desc[2]
        raw = item.LUTData
        if isinstance(raw, bytes):
            # LUT Data is OW: one 16-bit word per entry even for 8-bit LUTs; some
            # writers pack 8-bit entries into bytes instead, recognisable by the length.
            packed_bytes = bits <= 8 and len(raw) == entries
            data = np.frombuffer(raw, dtype=np.uint8 if packed_bytes else "<u2")
        else:
            data = np.asarray(raw if isinstance(raw, (list, tuple)) else [raw], dtype=np.int64)
        data = data[:entries].astype(np.int64)
        if data.size == 0:
            return None
        return LookupTable(first_mapped=first, table=data, bits=bits,
                           explanation=str(item.get("LUTExplanation", "")))
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def modality_transform(ds: Any) -> ModalityTransform:
    seq = ds.get("ModalityLUTSequence")
    if seq:
        lut = _lut_from_item(seq[0])
        if lut is not None:
            return ModalityTransform(lut=lut)
    slope = _as_float_list(ds.get("RescaleSlope"))
    intercept = _as_float_list(ds.get("RescaleIntercept"))
    return ModalityTransform(slope=slope[0] if slope and slope[0] != 0 else 1.0,
                             intercept=intercept[0] if intercept else 0.0)


def file_windows(ds: Any) -> dict[str, Window]:
    """The file's own VOI windows, named after their explanation when there is one."""
    centers = _as_float_list(ds.get("WindowCenter"))
    widths = _as_float_list(ds.get("WindowWidth"))
    raw_expl = ds.get("WindowCenterWidthExplanation")
    explanations = ([str(raw_expl)] if isinstance(raw_expl, str)
                    else [str(e) for e in raw_expl] if raw_expl else [])
    try:
        function = VoiFunction(str(ds.get("VOILUTFunction", "LINEAR")).strip().upper() or "LINEAR")
    except ValueError:
        function = VoiFunction.LINEAR
    windows: dict[str, Window] = {}
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if not w > 0:
            continue
        label = explanations[i].strip() if i < len(explanations) and explanations[i].strip() else ""
        name = f"file: {label}" if label else ("file" if len(centers) == 1 else f"file {i + 1}")
        windows[name] = Window(center=c, width=w, function=function)
    return windows


def pixel_spacing(ds: Any) -> Spacing | None:
    """Spacing with provenance; zero or malformed values count as unknown, never 0 mm."""

    def pair(keyword: str) -> tuple[float, float] | None:
        values = _as_float_list(ds.get(keyword))
        if len(values) >= 2 and values[0] > 0 and values[1] > 0:
            return values[0], values[1]
        return None

    ps = pair("PixelSpacing")
    if ps:
        return Spacing(ps[0], ps[1], SpacingSource.PIXEL_SPACING)
    ips = pair("ImagerPixelSpacing")
    if ips:
        ermf = _as_float_list(ds.get("EstimatedRadiographicMagnificationFactor"))
        if ermf and ermf[0] > 0:
            return Spacing(ips[0] / ermf[0], ips[1] / ermf[0], SpacingSource.ERMF_CORRECTED)
        return Spacing(ips[0], ips[1], SpacingSource.IMAGER_PIXEL_SPACING)
    return None


def metadata_items(ds: Any) -> list[MetadataItem]:
    """Every element except bulk pixel data, file meta first, sequences flattened with '>'."""
    items: list[MetadataItem] = []

    def walk(dataset: Any, depth: int) -> None:
        for elem in dataset:
            if elem.tag in (0x7FE00010, 0x00283006, 0x00281201, 0x00281202, 0x00281203):
                continue  # pixel data and LUT tables: bulk, not readable text
            name = ">" * depth + (elem.name or elem.keyword or str(elem.tag))
            tag = f"({elem.tag.group:04X},{elem.tag.element:04X})"
            if elem.VR == "SQ":
                items.append(MetadataItem(tag, name, "SQ", f"{len(elem.value)} item(s)"))
                for child in elem.value:
                    walk(child, depth + 1)
                continue
            try:
                value = elem.repval if elem.VR in ("OB", "OW", "UN", "OF", "OD") else str(elem.value)
            except Exception:  # a malformed value must not hide the rest of the header
                value = "<unreadable>"
            if len(value) > _MAX_METADATA_VALUE:
                value = value[:_MAX_METADATA_VALUE] + "…"
            items.append(MetadataItem(tag, name, str(elem.VR), value))

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta, 0)
    walk(ds, 0)
    return items


def _optional_str(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None


def load_dicom(path: Path, *, max_pixels: int | None) -> XrayImage:
    """Load a DICOM (or ACR-NEMA) file into an XrayImage."""
    ds, notices = read_dataset(path)
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError) as exc:
        raise CorruptImageError(path, "DICOM image without valid Rows/Columns") from exc
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if max_pixels is not None and rows * cols > max_pixels:
        raise ImageTooLargeError(
            path, f"{cols}×{rows} = {rows * cols / 1e6:.0f} megapixels exceeds the "
                  f"{max_pixels / 1e6:.0f}-megapixel safety limit")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    try:
        stored = decode_first_frame(ds, path)
    except ImageLoadError:
        raise
    except MemoryError as exc:
        raise ImageTooLargeError(path, "not enough memory to decode the pixel data") from exc
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
    voi_seq = ds.get("VOILUTSequence")
    voi_lut = _lut_from_item(voi_seq[0]) if voi_seq else None

    image = XrayImage(
        path=str(path), stored=stored, photometric=photometric, bits_stored=bits_stored,
        modality_transform=transform, presets={"full range": Window(0.0, 1.0)},
        default_preset="full range", spacing=pixel_spacing(ds),
        content_hash=pixel_hash(stored), format="DICOM",
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        transfer_syntax_name=_transfer_syntax_name(str(ds.file_meta.TransferSyntaxUID)),
        modality=_optional_str(ds, "Modality"), view_position=_optional_str(ds, "ViewPosition"),
        body_part=_optional_str(ds, "BodyPartExamined"), patient_age=_optional_str(ds, "PatientAge"),
        presentation_lut_shape=_optional_str(ds, "PresentationLUTShape"), voi_lut=voi_lut,
        metadata=metadata_items(ds), notices=notices,
    )
    own = file_windows(ds)
    derived = histogram_presets(stored, transform, inverted=image.is_inverted,
                                stored_range=image.stored_range())
    image.presets = {**own, **derived}
    image.default_preset = next(iter(own)) if own else "auto"
    return image

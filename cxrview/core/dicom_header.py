"""What the DICOM header says, read defensively: optional attributes that are malformed are
repaired or ignored with a notice, never a reason to refuse decodable pixels.

The fuzz run of issue #15 found 898 inputs with decodable pixels refused over header trivia
(a malformed private element, a NaN Rescale Intercept, ``NumberOfFrames='abc'``) with
internal messages, a NaN window rendering black and "inf × inf mm" spacing. Every optional
attribute the display uses is therefore read through :func:`repair_header` first, which
leaves the dataset holding only values the rest of the pipeline (pydicom's pixel decoder
included) can use, and says what it changed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydicom.multival import MultiValue

from cxrview.core.image import (
    LookupTable,
    MetadataItem,
    ModalityTransform,
    Spacing,
    SpacingSource,
    VoiFunction,
    Window,
)

_MAX_METADATA_VALUE = 200
MIN_SPACING_MM, MAX_SPACING_MM = 1e-4, 100.0  # outside this a "spacing" is an error, not a size

# Attributes shown beside the image (corner text, study browser, report header): read as text.
DISPLAY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
    "StudyTime", "StudyDescription", "StudyInstanceUID", "AccessionNumber", "SeriesDescription",
    "SeriesNumber", "SeriesInstanceUID", "InstanceNumber", "AcquisitionDate", "ContentDate",
    "InstitutionName", "Manufacturer", "ReferringPhysicianName", "ViewPosition", "Laterality",
    "ImageLaterality", "PatientOrientation", "BodyPartExamined", "Modality",
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "KVP", "ExposureTime", "Exposure", "DerivationDescription",
)


def safe_get(ds: Any, keyword: str) -> Any:
    """``ds.get(keyword)``, or None when the element cannot even be converted."""
    try:
        return ds.get(keyword)
    except Exception:  # pydicom raises many types on a malformed value
        return None


def _numbers(value: Any) -> list[float] | None:
    """All values of a numeric element as floats, or None when any of them is not a finite number."""
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        items = [value]
    else:
        items = list(value)
    out: list[float] = []
    for item in items:
        try:
            number = float(item)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(number):
            return None
        out.append(number)
    return out


def _drop(ds: Any, keyword: str) -> None:
    try:
        delattr(ds, keyword)
    except (AttributeError, KeyError):
        pass


def _has(ds: Any, keyword: str) -> bool:
    try:
        return keyword in ds  # looks the tag up without converting the value
    except Exception:
        return False


def _read_numbers(ds: Any, keyword: str) -> tuple[Any, list[float] | None]:
    """(raw value, its numbers); numbers None when present but unusable."""
    raw = safe_get(ds, keyword)
    if raw is None and _has(ds, keyword):
        return "<unreadable>", None
    return raw, _numbers(raw)


def _text(value: Any) -> str:
    try:
        text = str(value)
    except Exception:
        return "?"
    return text if len(text) <= 40 else text[:39] + "…"


def repair_header(ds: Any, notices: list[str]) -> None:
    """Repair or drop malformed optional attributes in place, one notice for each."""
    frames_raw, frames = _read_numbers(ds, "NumberOfFrames")
    if frames is None or (frames and (frames[0] < 1 or not frames[0].is_integer())):
        notices.append(f"Number of Frames {_text(frames_raw)!r} is invalid: read as 1")
        ds.NumberOfFrames = 1
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        raw, values = _read_numbers(ds, keyword)
        if values is None or (keyword == "RescaleSlope" and values and values[0] == 0):
            notices.append(f"{_spaced(keyword)} {_text(raw)!r} is invalid: ignored")
            _drop(ds, keyword)
    centers, widths = _read_numbers(ds, "WindowCenter")[1], _read_numbers(ds, "WindowWidth")[1]
    if centers is None or widths is None or any(w <= 0 for w in widths or []):
        notices.append("the file's window (center/width) is invalid: ignored")
        _drop(ds, "WindowCenter")
        _drop(ds, "WindowWidth")
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "EstimatedRadiographicMagnificationFactor"):
        raw, values = _read_numbers(ds, keyword)
        zero = values is not None and all(v == 0 for v in values)  # "unknown", said the usual way
        if values is None or (values and not zero and not all(
                MIN_SPACING_MM <= v <= MAX_SPACING_MM for v in values)):
            notices.append(f"{_spaced(keyword)} {_text(raw)!r} is invalid: ignored")
            _drop(ds, keyword)
    bits_allocated = _read_numbers(ds, "BitsAllocated")[1] or []
    bits_stored_raw, bits_stored = _read_numbers(ds, "BitsStored")
    if bits_allocated and (bits_stored is None or not bits_stored
                           or not 1 <= bits_stored[0] <= bits_allocated[0]):
        notices.append(f"Bits Stored {_text(bits_stored_raw)!r} is invalid: "
                       f"read as Bits Allocated ({bits_allocated[0]:g})")
        ds.BitsStored = int(bits_allocated[0])
        ds.HighBit = int(bits_allocated[0]) - 1
    for sequence in ("ModalityLUTSequence", "VOILUTSequence"):
        seq = safe_get(ds, sequence)
        try:
            usable = not seq or lut_from_item(seq[0]) is not None
        except Exception:
            usable = False
        if not usable:
            notices.append(f"{_spaced(sequence)} is malformed: ignored")
            _drop(ds, sequence)


def _spaced(keyword: str) -> str:
    """``RescaleIntercept`` → ``Rescale Intercept`` (the standard's attribute name)."""
    out = "".join(f" {ch}" if ch.isupper() and i and not keyword[i - 1].isupper() else ch
                  for i, ch in enumerate(keyword))
    return out.replace("V O I", "VOI").replace("L U T", "LUT")


def optional_str(ds: Any, keyword: str) -> str | None:
    value = safe_get(ds, keyword)
    try:
        text = str(value).strip() if value is not None else ""
    except Exception:
        return None
    return text or None


def display_attributes(ds: Any) -> dict[str, str]:
    """The attributes shown beside the image, as text (absent or unreadable ones left out)."""
    out: dict[str, str] = {}
    for keyword in DISPLAY_KEYWORDS:
        value = safe_get(ds, keyword)
        if value is None:
            continue
        try:
            if isinstance(value, (list, tuple, MultiValue)):
                text = "\\".join(str(v).strip() for v in value)
            else:
                text = str(value).strip()
        except Exception:
            continue
        if text:
            out[keyword] = " ".join(text.split())[:_MAX_METADATA_VALUE]
    return out


def lut_from_item(item: Any) -> LookupTable | None:
    """A Modality/VOI LUT Sequence item -> LookupTable (None when malformed)."""
    try:
        desc = [int(v) for v in item.LUTDescriptor]
        entries = desc[0] or 65536  # PS3.3 C.11.1.1: 0 means 2^16 entries
        first, bits = desc[1], desc[2]
        if not 0 < bits <= 16:
            return None
        raw = item.LUTData
        if isinstance(raw, bytes):
            # LUT Data is OW: one 16-bit word per entry even for 8-bit LUTs; some
            # writers pack 8-bit entries into bytes instead, recognisable by the length.
            packed_bytes = bits <= 8 and len(raw) == entries
            data = np.frombuffer(raw[:len(raw) - len(raw) % (1 if packed_bytes else 2)],
                                 dtype=np.uint8 if packed_bytes else "<u2")
        else:
            data = np.asarray(raw if isinstance(raw, (list, tuple)) else [raw], dtype=np.int64)
        data = data[:entries].astype(np.int64)
        if data.size == 0:
            return None
        return LookupTable(first_mapped=first, table=data, bits=bits,
                           explanation=str(item.get("LUTExplanation", "")))
    except (AttributeError, TypeError, ValueError, IndexError, OverflowError):
        return None


def modality_transform(ds: Any) -> ModalityTransform:
    seq = safe_get(ds, "ModalityLUTSequence")
    if seq:
        lut = lut_from_item(seq[0])
        if lut is not None:
            return ModalityTransform(lut=lut)
    slope = _numbers(safe_get(ds, "RescaleSlope")) or []
    intercept = _numbers(safe_get(ds, "RescaleIntercept")) or []
    return ModalityTransform(slope=slope[0] if slope and slope[0] != 0 else 1.0,
                             intercept=intercept[0] if intercept else 0.0)


def file_windows(ds: Any) -> dict[str, Window]:
    """The file's own VOI windows, named after their explanation when there is one."""
    centers = _numbers(safe_get(ds, "WindowCenter")) or []
    widths = _numbers(safe_get(ds, "WindowWidth")) or []
    raw_expl = safe_get(ds, "WindowCenterWidthExplanation")
    try:
        explanations = ([str(raw_expl)] if isinstance(raw_expl, str)
                        else [str(e) for e in raw_expl] if raw_expl else [])
    except Exception:
        explanations = []
    try:
        function = VoiFunction(str(safe_get(ds, "VOILUTFunction") or "LINEAR").strip().upper() or "LINEAR")
    except ValueError:
        function = VoiFunction.LINEAR
    windows: dict[str, Window] = {}
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if not w > 0:
            continue
        label = explanations[i].strip() if i < len(explanations) and explanations[i].strip() else ""
        name = f"file: {label}" if label else ("file" if len(centers) == 1 else f"file {i + 1}")
        windows.setdefault(name, Window(center=c, width=w, function=function))
    return windows


def pixel_spacing(ds: Any) -> Spacing | None:
    """Spacing with provenance; zero or malformed values count as unknown, never 0 mm."""

    def pair(keyword: str) -> tuple[float, float] | None:
        values = _numbers(safe_get(ds, keyword)) or []
        if len(values) >= 2 and values[0] > 0 and values[1] > 0:
            return values[0], values[1]
        return None

    ps = pair("PixelSpacing")
    if ps:
        return Spacing(ps[0], ps[1], SpacingSource.PIXEL_SPACING)
    ips = pair("ImagerPixelSpacing")
    if ips:
        ermf = _numbers(safe_get(ds, "EstimatedRadiographicMagnificationFactor")) or []
        if ermf and ermf[0] > 0:
            return Spacing(ips[0] / ermf[0], ips[1] / ermf[0], SpacingSource.ERMF_CORRECTED)
        return Spacing(ips[0], ips[1], SpacingSource.IMAGER_PIXEL_SPACING)
    return None


def metadata_items(ds: Any) -> list[MetadataItem]:
    """Every element except bulk pixel data, file meta first, sequences flattened with '>'.

    Elements are converted one at a time, so a malformed one reads "<unreadable>" instead of
    hiding the rest of the header."""
    items: list[MetadataItem] = []

    def walk(dataset: Any, depth: int) -> None:
        for tag in list(dataset.keys()):
            if tag in (0x7FE00010, 0x00283006, 0x00281201, 0x00281202, 0x00281203):
                continue  # pixel data and LUT tables: bulk, not readable text
            label = f"({tag.group:04X},{tag.element:04X})"
            try:
                elem = dataset[tag]
                name = ">" * depth + (elem.name or elem.keyword or str(elem.tag))
                vr = str(elem.VR)
            except Exception:
                items.append(MetadataItem(label, ">" * depth + "<unreadable element>", "", "<unreadable>"))
                continue
            if vr == "SQ":
                try:
                    children = list(elem.value)
                except Exception:
                    children = []
                items.append(MetadataItem(label, name, "SQ", f"{len(children)} item(s)"))
                for child in children:
                    walk(child, depth + 1)
                continue
            try:
                value = elem.repval if vr in ("OB", "OW", "UN", "OF", "OD") else str(elem.value)
            except Exception:  # a malformed value must not hide the rest of the header
                value = "<unreadable>"
            value = " ".join(value.split()) if not value.isprintable() else value
            if len(value) > _MAX_METADATA_VALUE:
                value = value[:_MAX_METADATA_VALUE] + "…"
            items.append(MetadataItem(label, name, vr, value))

    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        walk(meta, 0)
    walk(ds, 0)
    return items

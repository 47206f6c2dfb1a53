"""Grayscale display pipeline: Modality LUT -> VOI -> inversion -> 8-bit.

The inversion is MONOCHROME1's, or a Presentation LUT Shape of INVERSE
(``XrayImage.is_inverted``); since ``model_view`` is this same default rendering, an
INVERSE film is also inverted for the models, as a reader sees it.

The order follows DICOM PS3.4 N.2 (and PS3.3 C.11.2.1.2 for the VOI formulas).
MONOCHROME1 is inverted *after* the VOI: inverting stored values first and then
windowing with the file's centre (as OHIF #4116 / cornerstone3D #2215 did)
shows the wrong tissue range.

For integer pixels the whole chain collapses into one lookup table indexed by
the stored value, so a window/level drag costs one ``np.take`` per frame.
"""

from __future__ import annotations

import numpy as np

from cxrview.core.image import LookupTable, VoiFunction, Window, XrayImage

# Above this many distinct stored values a table is no cheaper than arithmetic.
_MAX_LUT_SIZE = 1 << 20
_CHUNK_PIXELS = 1 << 20


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """Map modality values through a VOI window to floats in [0, 255]."""
    c, w = float(window.center), float(window.width)
    x = values.astype(np.float64, copy=False)
    if window.function is VoiFunction.SIGMOID:
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function is VoiFunction.LINEAR_EXACT:
        return np.clip(((x - c) / w + 0.5) * 255.0, 0.0, 255.0)
    # LINEAR (the default): PS3.3 C.11.2.1.2.1, defined for width >= 1.
    w = max(w, 1.0)
    if w == 1.0:
        return np.where(x <= c - 0.5, 0.0, 255.0)
    return np.clip(((x - (c - 0.5)) / (w - 1.0) + 0.5) * 255.0, 0.0, 255.0)


def apply_voi_lut(values: np.ndarray, lut: LookupTable) -> np.ndarray:
    """Map modality values through a VOI LUT Sequence item to floats in [0, 255]."""
    out = lut.apply(values).astype(np.float64)
    top = float((1 << lut.bits) - 1) if lut.bits > 0 else float(out.max() or 1.0)
    return np.clip(out / top * 255.0, 0.0, 255.0)


def _display_from_stored(image: XrayImage, stored: np.ndarray, window: Window | None,
                         invert: bool) -> np.ndarray:
    """The full chain on an array of stored values, returning uint8."""
    modality = image.modality_transform.apply(stored)
    if window is None and image.voi_lut is not None:
        grey = apply_voi_lut(modality, image.voi_lut)
    else:
        grey = apply_window(modality, window or image.presets[image.default_preset])
    out: np.ndarray = np.rint(grey).astype(np.uint8)
    if image.is_inverted != invert:  # MONOCHROME1 / INVERSE xor the user's invert toggle
        # Inverting the quantised value keeps MONOCHROME1 an exact mirror of MONOCHROME2.
        np.subtract(255, out, out=out)
    return out


def display_lut(image: XrayImage, window: Window | None = None, *,
                invert: bool = False) -> tuple[int, np.ndarray] | None:
    """(first stored value, uint8 table) for integer images, or None when a table does not pay."""
    if image.stored.dtype.kind not in "iu":
        return None
    lo, hi = image.stored_range()
    if lo >= 0 and hi < 65536:
        lo = 0  # index with the stored array directly: no subtraction pass over the pixels
    if hi - lo + 1 > _MAX_LUT_SIZE:
        return None
    values = np.arange(lo, hi + 1, dtype=np.int64)
    return int(lo), _display_from_stored(image, values, window, invert)


def render_display(image: XrayImage, window: Window | None = None, *,
                   invert: bool = False) -> np.ndarray:
    """The 8-bit image exactly as the viewer shows it.

    ``window=None`` uses the file's own VOI (VOI LUT Sequence, else the default
    preset). ``invert`` is the user's toggle, applied on top of MONOCHROME1.
    """
    lut = display_lut(image, window, invert=invert)
    if lut is None:
        # Arithmetic a block of rows at a time: the float64 temporaries of a whole
        # 100-megapixel film would need gigabytes.
        out = np.empty(image.stored.shape, dtype=np.uint8)
        step = max(1, _CHUNK_PIXELS // max(image.width, 1))
        for r in range(0, image.height, step):
            out[r:r + step] = _display_from_stored(image, image.stored[r:r + step], window, invert)
        return out
    lo, table = lut
    index = image.stored if lo == 0 else image.stored.astype(np.int64) - lo
    return np.ascontiguousarray(table[index])


def model_view(image: XrayImage) -> np.ndarray:
    """The 8-bit default rendering the models see (computed once per image object, read-only).

    Models see what a radiologist sees by default, independent of how the file
    stored its values; the user's interactive invert toggle never reaches models.
    """
    if image._model_view is None:
        view = render_display(image)
        view.setflags(write=False)
        image._model_view = view
    return image._model_view


def model_input(image: XrayImage) -> np.ndarray:
    """Float32 [0, 1] pixels, bright = dense (MONOCHROME2 sense), with the default window."""
    return model_view(image).astype(np.float32) / 255.0


def model_input_hash(image: XrayImage) -> str:
    """Hash of exactly what the models see (after Modality LUT, VOI and MONOCHROME1 inversion).

    Unlike the content hash (stored pixels, which keys annotations), this changes when the same
    pixels are displayed differently — a MONOCHROME1 relabelling, another default window — so
    cached predictions can never be served for a film the models would see differently.
    """
    from cxrview.core.hashing import pixel_hash

    return "in1-" + pixel_hash(model_view(image)).split("-", 1)[1]

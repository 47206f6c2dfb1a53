"""Chest-specific window presets derived from the image histogram.

No open viewer ships chest presets: CT has Hounsfield units, projection
radiographs have arbitrary detector units, so fixed numbers cannot work.
We define each preset by percentiles of *displayed brightness* (so the same
definition works for MONOCHROME1, where bright tissue has low stored values):

- lung:        the darker three quarters, stretched: vessels and parenchyma.
- mediastinum: the brighter part: see through heart, mediastinum, retrocardiac.
- bone:        a steep window on the brightest tissue: ribs, clavicles, spine.
- full range:  every value in the image, linear.

The exact minimum and maximum values are left out (collimator shadows and
saturated background form spikes there). Percentiles are taken over a
strided subsample (1/16 of the pixels), which changes them by far less than
one grey level and keeps loading fast.

Two guards (issue #15): the histogram has at most 2^min(bits stored, 20) bins, whatever
values a file holds (an 8×8 int32 image spanning 0..2^31−1 once asked for an 8 GB
histogram); and no chest preset is narrower than 1/16 of the image's value range, so a
film whose brightest 40 % sit on two stored values gets a bone window, not a two-tone
silhouette (a 12-bit JPEG once had bone = 1.5 / 1.0).
"""

from __future__ import annotations

import numpy as np

from cxrview.core.image import ModalityTransform, Window

# The keys F2..F7 mean these presets on every image (issue #15: F2 was "lung" on one film and
# the file's window on the next); a preset an image lacks leaves its key disabled. The file's
# own windows have their own keys (Shift+F2…), in the order the file lists them.
STANDARD_PRESETS = ("lung", "mediastinum", "bone", "auto", "full range", "as stored")
MAX_FILE_WINDOW_KEYS = 4


def file_window_names(names: list[str]) -> list[str]:
    """The file's own windows among an image's preset names ("file", "file: …", "file 2")."""
    return [name for name in names if name == "file" or name.startswith(("file:", "file "))]


# (low, high) brightness percentiles for each chest preset.
CHEST_PRESET_PERCENTILES: dict[str, tuple[float, float]] = {
    "lung": (1.0, 75.0),
    "mediastinum": (30.0, 99.5),
    "bone": (60.0, 99.9),
}
AUTO_PERCENTILES = (0.5, 99.5)
_SUBSAMPLE_STRIDE = 4
MAX_HISTOGRAM_BITS = 20
MIN_WIDTH_FRACTION = 1 / 16  # of the full value range, for every chest preset


def _percentile_values(stored: np.ndarray, percentiles: list[float], bits_stored: int) -> np.ndarray:
    """Stored-value percentiles, via bincount for integers (one pass, no sort) while the
    histogram stays within 2^min(bits stored, 20) bins; a sort of the subsample otherwise."""
    sample = stored[::_SUBSAMPLE_STRIDE, ::_SUBSAMPLE_STRIDE]
    if sample.size == 0:
        sample = stored
    max_bins = 1 << max(8, min(bits_stored, MAX_HISTOGRAM_BITS))
    if sample.dtype.kind in "iu" and int(sample.max()) - int(sample.min()) < max_bins:
        lo = int(sample.min())
        counts = np.bincount((sample.astype(np.int64) - lo).ravel())
        # The extreme values are usually collimation, background or clipping spikes,
        # not anatomy: leave them out unless nothing else is left.
        if counts.size > 2 and counts[1:-1].sum() > 0:
            counts[0] = 0
            counts[-1] = 0
        cdf = np.cumsum(counts, dtype=np.float64)
        cdf /= cdf[-1]
        idx = np.searchsorted(cdf, np.asarray(percentiles) / 100.0, side="left")
        return (idx + lo).astype(np.float64)
    values = sample.astype(np.float64).ravel()
    inner = values[(values > values.min()) & (values < values.max())]  # the spikes, as above
    return np.percentile(inner if inner.size else values, percentiles)


def _window(lo: float, hi: float) -> Window:
    if not hi > lo:
        hi = lo + max(1.0, abs(lo) * 1e-6)
    return Window(center=(lo + hi) / 2.0, width=hi - lo)


def _widened(window: Window, full: Window) -> Window:
    """At least :data:`MIN_WIDTH_FRACTION` of the full range wide, kept inside it."""
    width = full.width * MIN_WIDTH_FRACTION
    if window.width >= width:
        return window
    center = min(max(window.center, full.low + width / 2), full.high - width / 2)
    return Window(center=center, width=width, function=window.function)


def histogram_presets(stored: np.ndarray, transform: ModalityTransform, *,
                      inverted: bool, stored_range: tuple[float, float],
                      bits_stored: int = 16) -> dict[str, Window]:
    """Windows for "lung", "mediastinum", "bone", "full range" and "auto", in modality units."""
    names = list(CHEST_PRESET_PERCENTILES)
    brightness = [p for name in names for p in CHEST_PRESET_PERCENTILES[name]]
    brightness += list(AUTO_PERCENTILES)
    # MONOCHROME1: the brightest displayed pixels have the lowest values.
    value_percentiles = [100.0 - p if inverted else p for p in brightness]
    stored_values = _percentile_values(stored, value_percentiles, bits_stored)
    modality = transform.apply(stored_values)
    ends = transform.apply(np.asarray(stored_range, dtype=np.float64))
    full = _window(float(ends.min()), float(ends.max()) + 1.0)

    presets: dict[str, Window] = {}
    for i, name in enumerate([*names, "auto"]):
        a, b = float(modality[2 * i]), float(modality[2 * i + 1])
        presets[name] = _widened(_window(min(a, b), max(a, b)), full)
    presets["full range"] = full
    return presets

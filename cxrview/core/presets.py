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
"""

from __future__ import annotations

import numpy as np

from cxrview.core.image import ModalityTransform, Window

# (low, high) brightness percentiles for each chest preset.
CHEST_PRESET_PERCENTILES: dict[str, tuple[float, float]] = {
    "lung": (1.0, 75.0),
    "mediastinum": (30.0, 99.5),
    "bone": (60.0, 99.9),
}
AUTO_PERCENTILES = (0.5, 99.5)
_SUBSAMPLE_STRIDE = 4


def _percentile_values(stored: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """Stored-value percentiles, via bincount for integers (one pass, no sort)."""
    sample = stored[::_SUBSAMPLE_STRIDE, ::_SUBSAMPLE_STRIDE]
    if sample.size == 0:
        sample = stored
    if sample.dtype.kind in "iu":
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
    return np.percentile(sample.astype(np.float64), percentiles)


def _window(lo: float, hi: float) -> Window:
    if hi <= lo:
        hi = lo + 1.0
    return Window(center=(lo + hi) / 2.0, width=hi - lo)


def histogram_presets(stored: np.ndarray, transform: ModalityTransform, *,
                      inverted: bool, stored_range: tuple[float, float]) -> dict[str, Window]:
    """Windows for "lung", "mediastinum", "bone", "full range" and "auto", in modality units."""
    names = list(CHEST_PRESET_PERCENTILES)
    brightness = [p for name in names for p in CHEST_PRESET_PERCENTILES[name]]
    brightness += list(AUTO_PERCENTILES)
    # MONOCHROME1: the brightest displayed pixels have the lowest values.
    value_percentiles = [100.0 - p if inverted else p for p in brightness]
    stored_values = _percentile_values(stored, value_percentiles)
    modality = transform.apply(stored_values)

    presets: dict[str, Window] = {}
    for i, name in enumerate([*names, "auto"]):
        a, b = float(modality[2 * i]), float(modality[2 * i + 1])
        presets[name] = _window(min(a, b), max(a, b))
    ends = transform.apply(np.asarray(stored_range, dtype=np.float64))
    presets["full range"] = _window(float(ends.min()), float(ends.max()) + 1.0)
    return presets

"""Image → network input, shared by training and inference so they never disagree.

Input is the display-ready grey image in [0, 1] (``cxrview.core.model_input``:
default window, MONOCHROME1 already inverted). It is resized to the card's
square input size with area interpolation (anti-aliased when shrinking) and
normalised with the card's mean/std. No torch here: workers and the training
data loader call it from any process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.card import ModelCard


def resize_square(grey01: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = grey01.shape
    interpolation = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(grey01.astype(np.float32, copy=False), (size, size), interpolation=interpolation)


def normalise(resized01: np.ndarray, card: ModelCard) -> np.ndarray:
    """(C, H, W) float32 from an (H, W) image in [0, 1] already at the input size."""
    x = resized01.astype(np.float32, copy=False)
    stretch = card.normalization.stretch_percentiles
    if stretch is not None:
        lo, hi = np.percentile(x, stretch)
        x = np.clip((x - lo) / max(float(hi - lo), 1e-3), 0.0, 1.0)
    x = (x - card.normalization.mean) / card.normalization.std
    x = x[None]
    if card.channels == 3:
        x = np.repeat(x, 3, axis=0)
    return np.ascontiguousarray(x, dtype=np.float32)


def prepare_array(grey01: np.ndarray, card: ModelCard) -> np.ndarray:
    return normalise(resize_square(grey01, card.input_size), card)


def prepare_image(image: XrayImage, card: ModelCard) -> np.ndarray:
    from cxrview.core import model_input

    return prepare_array(model_input(image), card)

"""Synthetic anatomy for tests that need segmenter-like masks without a segmenter."""

from __future__ import annotations

import numpy as np


def lung_heart_masks(size: int = 128) -> dict[str, np.ndarray]:
    """Two elliptic lungs side by side (patient's right on the image left) and a heart between
    and below them, as a PA film's masks would be at ``size`` × ``size``."""
    import cv2

    def ellipse(centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
        canvas = np.zeros((size, size), np.uint8)
        s = size / 128
        cv2.ellipse(canvas, (round(centre[0] * s), round(centre[1] * s)),
                    (round(axes[0] * s), round(axes[1] * s)), 0, 0, 360, 1, thickness=-1)
        return canvas.astype(bool)

    return {"right_lung": ellipse((35, 64), (20, 45)), "left_lung": ellipse((93, 64), (20, 45)),
            "heart": ellipse((64, 80), (22, 18))}

"""Anatomical sanity for the segmenter's masks, applied before contours, the CTR and the thorax.

A U-Net trained on a few hundred films produces plausible masks on most films and
anatomically impossible pieces on some: a second "heart" blob in the abdomen, a
left lung running below the diaphragm around the gastric bubble, specks. The
rules below remove only what anatomy forbids on a frontal film:

* **One component per organ**, holes filled.
* **Nothing below the costophrenic angles.** Each lung's costophrenic angle is
  the lowest point of its lateral third; lung and heart pixels more than a small
  margin below the lower of the two are cut (the gastric bubble and the bowel lie
  there, not lung or heart).
* **The heart between and below the hila**: heart pixels above 25 % of the lung
  height (apex to angle) or outside the two lungs' outer borders are cut.

``clean_masks`` leaves masks it cannot reason about (a lung missing) as they are,
one component each: the input check then says what is wrong.
"""

from __future__ import annotations

import numpy as np

LATERAL_FRACTION = 1 / 3  # the part of each lung whose lowest point is the costophrenic angle
BELOW_ANGLE_MARGIN = 0.03  # of the lung height, tolerated below the lower angle
HEART_TOP = 0.25  # of the lung height from the apex: no heart above this


def _largest_filled(mask: np.ndarray) -> np.ndarray | None:
    import cv2

    from cxrview.inference.ctr import largest_component

    part = largest_component(mask)
    if part is None:
        return None
    contours, _ = cv2.findContours(part.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros(part.shape, np.uint8)
    cv2.drawContours(filled, contours, -1, 1, thickness=-1)
    return filled.astype(bool)


def costophrenic_row(lung: np.ndarray, *, lateral_side: str) -> int:
    """Lowest row of the lung's lateral third (``lateral_side`` "left" or "right" of the image)."""
    cols = np.nonzero(lung.any(axis=0))[0]
    lo, hi = int(cols[0]), int(cols[-1])
    width = hi - lo + 1
    if lateral_side == "left":
        band = lung[:, lo:lo + max(1, round(width * LATERAL_FRACTION))]
    else:
        band = lung[:, hi + 1 - max(1, round(width * LATERAL_FRACTION)):hi + 1]
    rows = np.nonzero(band.any(axis=1))[0]
    return int(rows[-1])


def clean_masks(masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Anatomically cleaned copies of ``{"heart", "right_lung", "left_lung"}`` boolean masks."""
    out = {}
    for name, mask in masks.items():
        cleaned = _largest_filled(np.asarray(mask, dtype=bool))
        out[name] = cleaned if cleaned is not None else np.zeros_like(mask, dtype=bool)
    right, left, heart = out.get("right_lung"), out.get("left_lung"), out.get("heart")
    if right is None or left is None or not right.any() or not left.any():
        return out
    # the patient's right lung is on the image left: its lateral side is the image's left
    angle = max(costophrenic_row(right, lateral_side="left"), costophrenic_row(left, lateral_side="right"))
    rows = np.nonzero((right | left).any(axis=1))[0]
    top, height = int(rows[0]), int(angle - rows[0] + 1)
    limit = min(right.shape[0], angle + 1 + round(BELOW_ANGLE_MARGIN * height))
    for name in ("right_lung", "left_lung"):
        out[name][limit:] = False
    if heart is not None and heart.any():
        cols = np.nonzero((right | left).any(axis=0))[0]
        heart[limit:] = False
        heart[:top + round(HEART_TOP * height)] = False
        heart[:, :cols[0]] = False
        heart[:, cols[-1] + 1:] = False
        cleaned = _largest_filled(heart)
        out["heart"] = cleaned if cleaned is not None else np.zeros_like(heart)
    return out

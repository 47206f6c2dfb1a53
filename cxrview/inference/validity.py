"""Is this a frontal chest radiograph like the ones the models were trained on?

Models answer confidently on anything, including a hip film or an inverted
chest; the viewer must say when the numbers are meaningless. Checks, each
cheap and each reported as a score so thresholds can be audited:

* ``aspect``: width/height far from a chest film's (NIH and JSRT are square-ish).
* ``lungs``: the segmenter finds two lungs of plausible size, the patient's
  right lung on the image left, side by side, of comparable area.
* ``inversion``: the mediastinum/heart is brighter than the lungs in the model
  input (air is dark on a correctly displayed film). Measured inside the
  predicted masks when they are plausible, else in fixed regions of a
  centred PA film (lateral thirds vs the central strip).
* ``layout``: lungs look plausible but no CTR can be measured (the heart does
  not straddle the midline between them). On the 52 NIH PNGs the CTR was
  measurable every time; on their inverted versions never, including those
  whose masks fooled the brightness check, so this is the second line of
  defence against inverted input.
* ``seg_confidence``: mean confidence max(p, 1-p) of the segmenter over the
  pixels it calls lung or heart or is unsure about; out-of-distribution images
  give mushy probability maps. (Distance of classifier features to the training
  distribution would need stats the bundles do not record yet.)
* DICOM metadata: Body Part Examined other than CHEST, or a lateral view.

Thresholds were checked on the 52 NIH test PNGs and the chest/hip/extremity
DICOM files in ``../shared/data``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MAX_ASPECT = 1.6
LUNG_AREA = (0.03, 0.40)  # fraction of the image, each lung
MIN_LUNG_AREA_RATIO = 0.3  # smaller / larger lung
MIN_INVERSION_MARGIN = 0.0  # mediastinum minus lungs, in [0, 1] grey; below → inverted
MIN_SEG_CONFIDENCE = 0.85
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "HEART", "")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "RLD", "LLD")


def _largest(mask: np.ndarray) -> np.ndarray | None:
    from cxrview.inference.ctr import largest_component

    return largest_component(mask)


def check_lungs(masks: dict[str, np.ndarray]) -> tuple[list[str], dict[str, float]]:
    """Plausible pair of lungs? Warnings and the scores behind them."""
    size = float(next(iter(masks.values())).size)
    width = next(iter(masks.values())).shape[1]
    scores: dict[str, float] = {}
    right = _largest(masks["right_lung"]) if "right_lung" in masks else None
    left = _largest(masks["left_lung"]) if "left_lung" in masks else None
    if right is None or left is None:
        return ["no lungs found by the segmenter: not a frontal chest radiograph?"], scores
    r_area, l_area = right.sum() / size, left.sum() / size
    r_x = float(np.nonzero(right)[1].mean()) / width
    l_x = float(np.nonzero(left)[1].mean()) / width
    scores.update(right_lung_area=float(r_area), left_lung_area=float(l_area),
                  right_lung_x=r_x, left_lung_x=l_x,
                  lung_area_ratio=float(min(r_area, l_area) / max(r_area, l_area)))
    warnings = []
    if not all(LUNG_AREA[0] <= a <= LUNG_AREA[1] for a in (r_area, l_area)):
        warnings.append(f"implausible lung size ({r_area:.0%} / {l_area:.0%} of the image)")
    if not (r_x < 0.5 < l_x):
        warnings.append("lungs not on their expected sides (flipped, rotated or lateral image?)")
    if scores["lung_area_ratio"] < MIN_LUNG_AREA_RATIO:
        warnings.append("one lung much smaller than the other (segmentation unreliable)")
    return warnings, scores


def inversion_margin(grey01: np.ndarray, masks: dict[str, np.ndarray] | None) -> float:
    """Median brightness of the mediastinum/heart minus that of the lungs (positive when displayed right)."""
    g = np.asarray(grey01, dtype=np.float32)
    if masks is not None:
        lungs = masks["right_lung"] | masks["left_lung"]
        heart = masks["heart"]
        if lungs.sum() > 0.02 * g.size and heart.sum() > 0.005 * g.size:
            return float(np.median(g[heart]) - np.median(g[lungs]))
    h, w = g.shape

    def region(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
        return g[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)].ravel()

    lungs_px = np.concatenate([region(0.15, 0.38, 0.25, 0.65), region(0.62, 0.85, 0.25, 0.65)])
    centre_px = region(0.43, 0.57, 0.25, 0.75)
    return float(np.median(centre_px) - np.median(lungs_px))


def seg_confidence(probs: dict[str, np.ndarray]) -> float:
    """Mean max(p, 1-p) over pixels any structure claims (p > 0.2); 1 = crisp, 0.5 = coin flips."""
    stack = np.stack([np.asarray(p, dtype=np.float32) for p in probs.values()])
    region = (stack > 0.2).any(axis=0)
    if not region.any():
        return 0.0
    conf = np.maximum(stack, 1.0 - stack).min(axis=0)  # the least sure structure decides
    return float(conf[region].mean())


def check_validity(
    grey01: np.ndarray,
    image_size: tuple[int, int],
    *,
    masks: dict[str, np.ndarray] | None = None,
    probs: dict[str, np.ndarray] | None = None,
    body_part: str | None = None,
    view_position: str | None = None,
    ctr_measured: bool | None = None,
) -> dict[str, Any]:
    """``{"ok", "warnings", "scores"}`` for one image.

    ``grey01`` is the display-ready model input in [0, 1] (any size, usually
    the segmenter's); ``masks``/``probs`` are the segmenter's boolean masks and
    sigmoid maps at that size (None when no segmenter ran); ``image_size`` is
    the original (width, height); ``ctr_measured`` says whether the CTR could
    be measured from those masks (None: not attempted).
    """
    warnings: list[str] = []
    scores: dict[str, float] = {}
    width, height = image_size
    aspect = max(width, height) / max(1, min(width, height))
    scores["aspect"] = round(float(aspect), 4)
    if aspect > MAX_ASPECT:
        warnings.append(f"unusual aspect ratio {width}×{height}: not a chest film?")
    part = (body_part or "").strip().upper()
    if part not in CHEST_BODY_PARTS:
        warnings.append(f"body part is {body_part!r}, not chest: the models were trained on chest films")
    if (view_position or "").strip().upper() in LATERAL_VIEWS:
        warnings.append("lateral view: the models were trained on frontal (PA/AP) films")
    plausible = None
    if masks is not None:
        lung_warnings, lung_scores = check_lungs(masks)
        warnings += lung_warnings
        scores.update(lung_scores)
        plausible = masks if not lung_warnings else None
        if plausible is not None and ctr_measured is False:
            warnings.append("heart not found between the lungs: masks and CTR unreliable")
    margin = inversion_margin(grey01, plausible)
    scores["inversion_margin"] = round(margin, 4)
    if margin < MIN_INVERSION_MARGIN:
        warnings.append("the image looks inverted (lungs brighter than the mediastinum)")
    if probs is not None:
        confidence = seg_confidence(probs)
        scores["seg_confidence"] = round(confidence, 4)
        if confidence < MIN_SEG_CONFIDENCE:
            warnings.append(f"segmenter unsure ({confidence:.2f}): image unlike the training data")
    scores = {k: round(float(v), 4) for k, v in scores.items()}
    return {"ok": not warnings, "warnings": warnings, "scores": scores}

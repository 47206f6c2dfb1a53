"""Boxes from Grad-CAM maps: threshold → connected components → size-prior ranking.

A CAM is a smooth blob map, not a detector, so boxes are a reading aid: where
the evidence for a finding sits. Candidates come from several relative
thresholds (a single cut gives either one huge box or specks, depending on
the finding), then each candidate is scored

    score = mean heat inside the component × size-likeness

where size-likeness compares the box's width and height (as fractions of the
image) with that finding's median NIH box (``resources/box_priors.json``,
made by ``python -m training.box_priors``) on a log scale, with the spread
taken from the quartiles. Ties are broken by mean heat. Overlapping
candidates (IoU > 0.5) keep only the best, and runners-up scoring below 10 %
of the best are dropped (a whole-image box is not a location). Findings without NIH boxes get
size-likeness 1 (pure heat ranking): no invented priors.

Tuning: none of the 52 bundled NIH test images has an official box, so
nothing was tuned on them; the levels are the usual Grad-CAM cut (0.5 of the
peak) with one looser and one stricter level around it. ``benchmarks/
box_heuristics.py`` checks the variants on the 41 official boxes of 37
non-reserved local NIH images (the classifier trained on their labels, never
on boxes): with classifier 3.1.0 (224 px, 7 × 7 CAM) the top box's mean IoU is
0.10 for every variant (within noise), hit rate IoU ≥ 0.3 is 12 % with the size
prior and 3 levels (shipped) against 7–10 % for the others. With 4.0.0 (two
members, maps averaged) mean IoU 0.07–0.11 and IoU ≥ 0.3 15 % for both
3-level variants (5–10 % for single-level ones), so the shipped variant stays.
Boxes are a reading aid, not a detector.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_THRESHOLDS = (0.3, 0.5, 0.7)  # fractions of the map's peak
DEFAULT_MAX_BOXES = 3
MIN_LOG_SIGMA = 0.25  # floor on the size-prior spread: quartiles of 79 nodules are tight
NMS_IOU = 0.5
MIN_RELATIVE_SCORE = 0.1  # runners-up scoring under 10 % of the best box are noise, not findings


@dataclass(frozen=True)
class SizePrior:
    """Typical box size for a finding as fractions of the image, and its log-scale spread."""

    w: float
    h: float
    sigma_w: float = 0.5
    sigma_h: float = 0.5


@dataclass(frozen=True)
class Box:
    """A finding's box in original image pixels (x, y = top-left corner, pixel-edge convention)."""

    finding: str
    x: float
    y: float
    w: float
    h: float
    score: float
    heat: float = 0.0  # mean CAM value inside the component (the tie-breaker; extra JSON key)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (round(v, 2) if k in "xywh" else round(v, 4)) if isinstance(v, float) else v
                for k, v in d.items()}


def default_priors_path() -> Path:
    return Path(__file__).resolve().parents[2] / "resources" / "box_priors.json"


def _sigma(quartiles: list[float] | None) -> float:
    """Log-normal spread from the interquartile range (IQR = 1.349 σ), floored."""
    if not quartiles or len(quartiles) != 2 or min(quartiles) <= 0:
        return 0.5
    return max(MIN_LOG_SIGMA, (math.log(quartiles[1]) - math.log(quartiles[0])) / 1.349)


def parse_priors(data: dict[str, Any]) -> dict[str, SizePrior]:
    priors = {}
    for finding, entry in (data.get("findings") or {}).items():
        w, h = float(entry["w"]), float(entry["h"])
        if w > 0 and h > 0:
            priors[finding] = SizePrior(w, h, _sigma(entry.get("w_q")), _sigma(entry.get("h_q")))
    return priors


@lru_cache(maxsize=4)
def load_priors(path: str | None = None) -> dict[str, SizePrior]:
    """Priors from JSON; a missing or broken file logs a warning and means "no priors", not a crash."""
    file = Path(path) if path else default_priors_path()
    try:
        return parse_priors(json.loads(file.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("box priors unavailable (%s: %s); boxes are ranked by heat only", file, exc)
        return {}


def size_likeness(w_frac: float, h_frac: float, prior: SizePrior | None) -> float:
    """exp(-½ z²) summed over log-width and log-height: 1 at the median size, ↓ as it departs."""
    if prior is None:
        return 1.0
    zw = (math.log(max(w_frac, 1e-6)) - math.log(prior.w)) / prior.sigma_w
    zh = (math.log(max(h_frac, 1e-6)) - math.log(prior.h)) / prior.sigma_h
    return math.exp(-0.5 * (zw * zw + zh * zh))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def boxes_from_cam(
    cam: np.ndarray,
    finding: str,
    image_size: tuple[int, int],
    *,
    priors: dict[str, SizePrior] | None = None,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    max_boxes: int = DEFAULT_MAX_BOXES,
    min_area_frac: float = 0.001,
) -> list[Box]:
    """Up to ``max_boxes`` boxes for one finding, best first, in original pixels.

    ``cam`` is the map at model size (H, W) in [0, 1]; ``image_size`` is the
    original (width, height). Coordinates scale exactly with the pixel-edge
    convention (an edge at map column c is at c · width / W).
    """
    import cv2

    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be 2-D, got shape {cam.shape}")
    peak = float(cam.max()) if cam.size else 0.0
    if not np.isfinite(peak) or peak <= 0 or max_boxes <= 0:
        return []
    ch, cw = cam.shape
    sx, sy = image_size[0] / cw, image_size[1] / ch
    prior = (priors if priors is not None else load_priors()).get(finding)
    candidates: list[Box] = []
    for level in thresholds:
        mask = (cam >= level * peak).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[i])
            if area < min_area_frac * cw * ch:
                continue
            heat = float(cam[labels == i].mean())
            likeness = size_likeness(w / cw, h / ch, prior)
            candidates.append(Box(finding, x * sx, y * sy, w * sx, h * sy, heat * likeness, heat))
    candidates.sort(key=lambda b: (-b.score, -b.heat))
    chosen: list[Box] = []
    floor = MIN_RELATIVE_SCORE * candidates[0].score if candidates else 0.0
    for box in candidates:
        if box.score < floor:
            break
        if all(_iou(box, kept) <= NMS_IOU for kept in chosen):
            chosen.append(box)
            if len(chosen) == max_boxes:
                break
    return chosen

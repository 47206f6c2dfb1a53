"""The input check: is this a frontal adult chest radiograph like the ones the models learned?

Models answer confidently on anything — a hip, a tibia, an ultrasound frame, an
inverted or flipped chest. The viewer must not paint findings on such films, so
this check is a gate: every problem is a message, and the problems marked
*blocking* withhold the AI output (``gate.presented``) unless the reader asks to
see it anyway. The others are cautions shown beside the output.

Blocking (not a frontal adult chest radiograph, or not displayed as one):

* DICOM header: a Modality that is not a radiograph (US, MR, CT, MG, dental…),
  Body Part Examined other than the chest, a lateral view, a patient younger
  than 18 years (Patient's Age), a very wide or tall image.
* ``lungs``: the segmenter finds no pair of lungs of plausible size side by side.
* ``inversion``: the mediastinum is darker than the lungs (an inverted film).
* ``orientation``: the heart lies above the lungs' centre (upside down).
* ``seg_confidence``: the segmenter's probability maps are mushy over the
  structures it claims: the image is unlike anything it was trained on.
* ``ood``: the classifier's own features are far from its training films
  (``features.ood_score`` against the threshold in the card's ``ood`` block).

Cautions: one lung much smaller than the other (a collapsed lung or large
effusion is real pathology, but the contours and CTR are then unreliable), a
heart that does not straddle the midline (no CTR), and a film that may be
left–right flipped. The segmenter places the heart on the image right even on
a mirrored film, so masks cannot tell; but it is more confident about the heart
on the correctly oriented version, so the predictor also segments the mirror
image and compares (``mirror_margin``). On chest films from four sources the
mirror wins by more than 0.01 on 0–6 % of correctly oriented films and on
85–99 % of flipped ones: good enough to warn, not to withhold (a flipped film is
still a chest film, and a true dextrocardia exists).

Each check reports the score behind it, so thresholds can be audited;
``benchmarks/input_check.py`` measures them on chest films from five sources
and on non-chest and mis-oriented films.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.ctr import CTRMeasurement

MAX_ASPECT = 1.6
LUNG_AREA = (0.03, 0.40)  # fraction of the image, each lung
MIN_TOTAL_LUNG_AREA = 0.05  # both lungs together; chest films from five sources: ≥ 0.066
MIN_LUNG_AREA_RATIO = 0.3  # smaller / larger lung
MIN_INVERSION_MARGIN = 0.0  # mediastinum minus lungs, in [0, 1] grey; below → inverted
MIN_SEG_CONFIDENCE = 0.85
MIRROR_MARGIN = -0.01  # heart confidence of the film minus that of its mirror; below → maybe flipped
ADULT_AGE_YEARS = 18
CHEST_BODY_PARTS = ("CHEST", "THORAX", "LUNG", "HEART", "")
LATERAL_VIEWS = ("LL", "RL", "LAT", "LATERAL", "RLD", "LLD")
# Modalities that can hold a chest radiograph: computed/digital radiography, "radiographic
# imaging" (RG), the retired DR, and secondary captures of films (OT, SC). Anything else
# (US, MR, CT, MG, IO/PX dental, NM, PT, XA, RF, …) is not a chest radiograph.
RADIOGRAPH_MODALITIES = ("CR", "DX", "DR", "RG", "OT", "SC", "")

HEADER_FIELDS = ("modality", "body_part", "view_position", "patient_age", "photometric",
                 "presentation_lut_shape")


def header_fields(image: XrayImage) -> dict[str, str | None]:
    """The header values the check reads (and the results cache therefore keys on)."""
    return {name: getattr(image, name, None) for name in HEADER_FIELDS}


def age_in_years(age: str | None) -> float | None:
    """DICOM Age String ("045Y", "008M", "003W", "012D") in years; None when absent or malformed."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", (age or "").upper())
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2)
    return value / {"D": 365.25, "W": 52.18, "M": 12.0, "Y": 1.0}[unit]


def _largest(mask: np.ndarray) -> np.ndarray | None:
    from cxrview.inference.ctr import largest_component

    return largest_component(mask)


def check_lungs(masks: dict[str, np.ndarray]) -> tuple[list[str], list[str], dict[str, float]]:
    """Plausible pair of lungs? (blocking problems, cautions, the scores behind them).

    Only a missing or implausible *pair* blocks: one small lung on an otherwise normal
    thorax is usually pathology (collapse, effusion, pneumonectomy) on a real chest film,
    which must still be read — its contours and CTR are merely unreliable.
    """
    size = float(next(iter(masks.values())).size)
    width = next(iter(masks.values())).shape[1]
    scores: dict[str, float] = {}
    right = _largest(masks["right_lung"]) if "right_lung" in masks else None
    left = _largest(masks["left_lung"]) if "left_lung" in masks else None
    if right is None or left is None:
        return ["no lungs found by the segmenter: not a frontal chest radiograph?"], [], scores
    r_area, l_area = right.sum() / size, left.sum() / size
    r_x = float(np.nonzero(right)[1].mean()) / width
    l_x = float(np.nonzero(left)[1].mean()) / width
    scores.update(right_lung_area=float(r_area), left_lung_area=float(l_area),
                  right_lung_x=r_x, left_lung_x=l_x,
                  lung_area_ratio=float(min(r_area, l_area) / max(r_area, l_area)))
    blocking, cautions = [], []
    if r_area + l_area < MIN_TOTAL_LUNG_AREA or max(r_area, l_area) > LUNG_AREA[1]:
        blocking.append(f"implausible lung size ({r_area:.0%} / {l_area:.0%} of the image): "
                        "not a frontal chest radiograph?")
    elif min(r_area, l_area) < LUNG_AREA[0] or scores["lung_area_ratio"] < MIN_LUNG_AREA_RATIO:
        cautions.append("one lung much smaller than the other: contours and CTR unreliable")
    if not (r_x < 0.5 < l_x):
        blocking.append("lungs not on their expected sides (flipped, rotated or lateral image?)")
    return blocking, cautions, scores


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


def heart_confidence(heart_probs: np.ndarray) -> float:
    """Mean max(p, 1-p) of the heart map where it claims anything (p > 0.2); 0 when it claims nothing."""
    p = np.asarray(heart_probs, dtype=np.float32)
    claimed = p > 0.2
    return float(np.maximum(p, 1.0 - p)[claimed].mean()) if claimed.any() else 0.0


def heart_position(masks: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Where the heart sits in the thorax: ``heart_offset`` (centroid minus the lung span's centre,
    in span widths; positive = image right, as on a PA film) and ``heart_drop`` (centroid row
    minus the lungs' mean row, in lung heights; positive = lower, as on an upright film)."""
    heart = _largest(masks["heart"]) if "heart" in masks else None
    right = _largest(masks["right_lung"]) if "right_lung" in masks else None
    left = _largest(masks["left_lung"]) if "left_lung" in masks else None
    if heart is None or right is None or left is None:
        return None
    hy, hx = np.nonzero(heart)
    ly, lx = np.nonzero(right | left)
    span = float(lx.max() - lx.min() + 1)
    height = float(ly.max() - ly.min() + 1)
    centre = (lx.min() + lx.max()) / 2.0
    return {"heart_offset": float((hx.mean() - centre) / span),
            "heart_drop": float((hy.mean() - ly.mean()) / height)}


def _header_problems(image_size: tuple[int, int], header: dict[str, str | None]
                     ) -> tuple[list[str], dict[str, float]]:
    problems: list[str] = []
    scores: dict[str, float] = {}
    width, height = image_size
    aspect = max(width, height) / max(1, min(width, height))
    scores["aspect"] = float(aspect)
    if aspect > MAX_ASPECT:
        problems.append(f"unusual aspect ratio {width}×{height}: not a chest film?")
    modality = (header.get("modality") or "").strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        problems.append(f"modality is {modality}, not a radiograph: the models read chest X-rays only")
    part = (header.get("body_part") or "").strip().upper()
    if part not in CHEST_BODY_PARTS:
        problems.append(f"body part is {header.get('body_part')!r}, not chest: "
                        "the models were trained on chest films")
    if (header.get("view_position") or "").strip().upper() in LATERAL_VIEWS:
        problems.append("lateral view: the models were trained on frontal (PA/AP) films")
    years = age_in_years(header.get("patient_age"))
    if years is not None:
        scores["patient_age_years"] = float(years)
        if years < ADULT_AGE_YEARS:
            problems.append(f"patient aged {years:.0f} years: the models were trained on adult films")
    return problems, scores


def check_validity(
    grey01: np.ndarray,
    image_size: tuple[int, int],
    *,
    masks: dict[str, np.ndarray] | None = None,
    probs: dict[str, np.ndarray] | None = None,
    header: dict[str, str | None] | None = None,
    ctr: CTRMeasurement | None = None,
    ctr_attempted: bool = False,
    ood: float | None = None,
    ood_threshold: float | None = None,
    mirror_margin: float | None = None,
    uncropped: bool = False,
    body_part: str | None = None,
    view_position: str | None = None,
) -> dict[str, Any]:
    """``{"ok", "warnings", "reasons", "withheld", "scores"}`` for one image.

    ``grey01`` is the display-ready model input in [0, 1] (any size, usually the
    segmenter's); ``masks``/``probs`` are the segmenter's boolean masks and sigmoid
    maps at that size (None when no segmenter ran); ``image_size`` is the original
    (width, height); ``header`` the values of :func:`header_fields` (``body_part`` and
    ``view_position`` may be given alone); ``ctr`` the measurement from the masks
    (``ctr_attempted`` False when none was tried); ``ood`` the classifier's
    out-of-distribution score and ``ood_threshold`` the card's limit for it;
    ``mirror_margin`` the heart confidence of the film minus that of its mirror image;
    ``uncropped``: a classifier that reads the thorax crop had to read the whole film.
    ``reasons`` are the blocking problems; ``withheld`` is True when there are any.
    """
    header = dict(header or {})
    header.setdefault("body_part", body_part)
    header.setdefault("view_position", view_position)
    reasons, scores = _header_problems(image_size, header)
    cautions: list[str] = []
    plausible = None
    if masks is not None:
        lung_problems, lung_cautions, lung_scores = check_lungs(masks)
        scores.update(lung_scores)
        reasons += lung_problems
        cautions += lung_cautions
        if not lung_problems:
            plausible = masks
            position = heart_position(masks)
            if position is not None:
                scores.update(position)
                if position["heart_drop"] < 0:
                    reasons.append("heart above the lungs: image upside down?")
            if mirror_margin is not None:
                scores["mirror_margin"] = float(mirror_margin)
                if mirror_margin < MIRROR_MARGIN:
                    cautions.append("the film may be left–right flipped (its mirror image looks more "
                                    "like a chest film to the segmenter): check the side marker")
            if ctr_attempted and ctr is None:
                cautions.append("heart not found between the lungs: masks and CTR unreliable")
    margin = inversion_margin(grey01, plausible)
    scores["inversion_margin"] = margin
    if margin < MIN_INVERSION_MARGIN:
        reasons.append("the image looks inverted (lungs brighter than the mediastinum)")
    if probs is not None:
        confidence = seg_confidence(probs)
        scores["seg_confidence"] = confidence
        if confidence < MIN_SEG_CONFIDENCE:
            reasons.append(f"segmenter unsure ({confidence:.2f}): image unlike the training data")
    if ood is not None:
        scores["ood"] = float(ood)
        if ood_threshold is not None and ood > ood_threshold:
            reasons.append(f"image unlike the classifier's training films (score {ood:.2f} > "
                           f"{ood_threshold:.2f})")
    if uncropped:
        cautions.append("thorax not found: the classifier read the whole film, not the thorax it "
                        "was trained on")
    scores = {k: round(float(v), 4) for k, v in scores.items()}
    warnings = reasons + cautions
    return {"ok": not warnings, "warnings": warnings, "reasons": reasons, "withheld": bool(reasons),
            "scores": scores}

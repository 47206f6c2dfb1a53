"""Cardiothoracic ratio (CTR) from heart and lung masks, measured as on a PA film.

Used by training evaluation now and by the viewer later, so it depends only on
numpy and cv2 (no torch, no Qt).

Orientation: images are in standard PA display, patient's right on the image
left. ``right_lung`` is the patient's right lung, i.e. the lung on the image
left; ``left_lung`` is on the image right.

Coordinates: masks are usually at model resolution (e.g. 256²) while the
viewer shows the original image (e.g. 1024²). ``scale_xy`` maps mask pixels
to original pixels. All returned coordinates use the continuous pixel
convention in which pixel (row i, column j) covers [j, j+1) × [i, i+1); that
makes scaling exact (an edge at mask column 10 is at 10·sx) and matches how
Qt places a pixmap in a scene. To draw with integer-pixel APIs (cv2), subtract 0.5.

The measurement:

* Thorax: the widest inner thoracic span, from the leftmost pixel of the
  (image-left) right lung to the rightmost pixel of the (image-right) left
  lung, on a single row. Only rows between 40 % and 95 % of the lungs' height
  are considered: that is where the thorax is widest (the costophrenic
  region), and it keeps apices and clavicle-level artefacts out.
* Heart: the textbook MRD + MLD. The midline is the centre of the thoracic
  span; MRD is the largest distance from the midline to the heart's right
  border (image left), MLD to its left border (image right), each at whatever
  row it occurs. Their sum is the heart's full horizontal extent. The simpler
  "widest single row" variant is reported too (``value_widest_row``); it can
  only be smaller or equal, because the two borders usually peak at different rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

THORAX_ROWS = (0.40, 0.95)  # fraction of lung height (from the apex) searched for the widest thorax
CTR_THRESHOLD = 0.5
PA_FLAG = "CTR > 0.5: cardiomegaly suspected"
AP_NOTE = "AP view magnifies the heart: CTR overestimates"

Caliper = tuple[float, float, float]


@dataclass(frozen=True)
class CTRMeasurement:
    """One CTR reading and the calipers that produced it, in original-image coordinates.

    ``heart`` and ``thorax`` are (x_left, x_right, y): one horizontal caliper
    each. ``value`` = (heart x_right - x_left) / (thorax x_right - x_left).
    The heart caliper spans the MRD + MLD extreme points; since those extremes
    usually lie on different rows, it is drawn at the mean of their heights
    (``mrd_y``, ``mld_y``), which keeps its length — the number that matters —
    exact. A viewer wanting the textbook drawing can draw MRD from
    (heart[0], mrd_y) to (midline_x, mrd_y) and MLD from (midline_x, mld_y) to (heart[1], mld_y).
    """

    value: float
    heart: Caliper
    thorax: Caliper
    midline_x: float = float("nan")
    mrd: float = float("nan")
    mld: float = float("nan")
    mrd_y: float = float("nan")
    mld_y: float = float("nan")
    value_widest_row: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (unset extras become None); calipers as {"x_left", "x_right", "y"}."""
        d: dict[str, Any] = {
            k: (float(v) if np.isfinite(v) else None)
            for k, v in asdict(self).items()
            if k not in ("heart", "thorax")
        }
        for name in ("heart", "thorax"):
            x_left, x_right, y = getattr(self, name)
            d[name] = {"x_left": float(x_left), "x_right": float(x_right), "y": float(y)}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CTRMeasurement:
        """Inverse of to_dict, so a saved reading can be redrawn without the masks."""
        names = ("midline_x", "mrd", "mld", "mrd_y", "mld_y", "value_widest_row")
        extra = {k: float(d[k]) for k in names if d.get(k) is not None}
        heart = (float(d["heart"]["x_left"]), float(d["heart"]["x_right"]), float(d["heart"]["y"]))
        thorax = (float(d["thorax"]["x_left"]), float(d["thorax"]["x_right"]), float(d["thorax"]["y"]))
        return cls(value=float(d["value"]), heart=heart, thorax=thorax, **extra)


def _as_mask(a: np.ndarray, name: str) -> np.ndarray:
    """Boolean 2-D mask. Arrays holding only 0/1 (any dtype) are accepted; probability maps are refused
    because a silent `> 0` would turn faint noise into anatomy."""
    arr = np.asarray(a)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must be a boolean or 0/1 mask (threshold probabilities first)")
    return arr.astype(bool)


def _check_scale(scale_xy: tuple[float, float]) -> tuple[float, float]:
    if len(scale_xy) != 2:
        raise ValueError(f"scale_xy must be (sx, sy), got {scale_xy!r}")
    sx, sy = float(scale_xy[0]), float(scale_xy[1])
    if not (np.isfinite(sx) and np.isfinite(sy) and sx > 0 and sy > 0):
        raise ValueError(f"scale_xy must be positive and finite, got {scale_xy!r}")
    return sx, sy


def largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest 8-connected component (None if the mask is empty): segmentation specks must not
    move a border that decides the CTR."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return None
    component: np.ndarray = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return component


def _row_extents(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: has-pixels flag, leftmost column, rightmost column (columns meaningless where empty)."""
    any_row = np.asarray(mask.any(axis=1))
    left = np.argmax(mask, axis=1)
    right = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return any_row, left, right


def measure_ctr(
    heart: np.ndarray,
    right_lung: np.ndarray,
    left_lung: np.ndarray,
    *,
    scale_xy: tuple[float, float] = (1.0, 1.0),
) -> CTRMeasurement | None:
    """Measure the CTR; None when the masks do not describe a plausible PA chest.

    None when: a mask is empty; the right lung is not on the image left of the
    left lung; the lungs never share a row in the lower thorax; the heart does
    not straddle the thoracic midline; or the heart is not inside the thoracic
    span. A missing number is safer than a confident wrong one in a report.
    Raises ValueError for masks of different shapes or non-boolean masks.
    """
    h_mask = _as_mask(heart, "heart")
    r_mask = _as_mask(right_lung, "right_lung")
    l_mask = _as_mask(left_lung, "left_lung")
    if not h_mask.shape == r_mask.shape == l_mask.shape:
        raise ValueError(
            f"mask shapes differ: heart {h_mask.shape}, right_lung {r_mask.shape}, left_lung {l_mask.shape}"
        )
    sx, sy = _check_scale(scale_xy)
    h = largest_component(h_mask)
    r = largest_component(r_mask)
    lft = largest_component(l_mask)
    if h is None or r is None or lft is None:
        return None
    if np.nonzero(r)[1].mean() >= np.nonzero(lft)[1].mean():
        return None  # lungs swapped (or a lateral/flipped image): the thorax span would be meaningless

    lung_rows = np.flatnonzero((r | lft).any(axis=1))
    top, bottom = int(lung_rows[0]), int(lung_rows[-1])
    height = bottom - top + 1
    row_lo = top + int(np.floor(THORAX_ROWS[0] * height))
    row_hi = top + int(np.ceil(THORAX_ROWS[1] * height))  # exclusive
    r_any, r_left, _ = _row_extents(r)
    l_any, _, l_right = _row_extents(lft)
    rows = np.arange(h_mask.shape[0])
    valid = r_any & l_any & (rows >= row_lo) & (rows < row_hi)
    if not valid.any():
        return None
    span = np.where(valid, l_right + 1 - r_left, -1)
    widest = np.flatnonzero(span == span.max())
    t_row = int(widest[len(widest) // 2])  # middle of a plateau of equally wide rows, not its top
    thorax_left, thorax_right = float(r_left[t_row] * sx), float((l_right[t_row] + 1) * sx)
    thorax_width = thorax_right - thorax_left
    midline = (thorax_left + thorax_right) / 2.0

    h_any, h_left, h_right = _row_extents(h)
    heart_rows = np.flatnonzero(h_any)
    x_min = int(h_left[heart_rows].min())
    x_max = int(h_right[heart_rows].max())
    heart_left, heart_right = float(x_min * sx), float((x_max + 1) * sx)
    mrd, mld = midline - heart_left, heart_right - midline
    if mrd <= 0 or mld <= 0 or heart_left < thorax_left or heart_right > thorax_right:
        return None
    # Height of each extreme: the median row attaining it (a vertical border spans several rows).
    mrd_y = float((np.median(heart_rows[h_left[heart_rows] == x_min]) + 0.5) * sy)
    mld_y = float((np.median(heart_rows[h_right[heart_rows] == x_max]) + 0.5) * sy)
    widest_row = int((h_right[heart_rows] - h_left[heart_rows]).max()) + 1
    return CTRMeasurement(
        value=float((mrd + mld) / thorax_width),
        heart=(heart_left, heart_right, (mrd_y + mld_y) / 2.0),
        thorax=(thorax_left, thorax_right, float((t_row + 0.5) * sy)),
        midline_x=float(midline),
        mrd=float(mrd),
        mld=float(mld),
        mrd_y=mrd_y,
        mld_y=mld_y,
        value_widest_row=float(widest_row * sx / thorax_width),
    )


def ctr_flag(measurement: CTRMeasurement | None, view_position: str | None) -> str | None:
    """A short note for the reader, or None.

    PA with CTR > 0.5: cardiomegaly suspected. AP (including "AP supine" style
    values): always the caveat that AP projection magnifies the heart, because
    the number shown next to it is then biased upwards whatever its value.
    Anything else (PA within limits, lateral, unknown view, no measurement): None.
    """
    if measurement is None or not view_position:
        return None
    view = view_position.strip().upper()
    if view == "PA" and measurement.value > CTR_THRESHOLD:
        return PA_FLAG
    if view == "AP" or view.startswith("AP "):
        return AP_NOTE
    return None


def mask_polygons(
    mask: np.ndarray,
    *,
    scale_xy: tuple[float, float] = (1.0, 1.0),
    min_area: float = 50,
    epsilon_px: float = 1.5,
    largest_only: bool = False,
) -> list[list[list[float]]]:
    """Outer contours of a mask as simplified polygons [[x, y], ...] in original-image coordinates.

    For JSON output and drawing outlines over the original image. ``min_area``
    (area enclosed by the contour, in mask pixels) drops specks; ``epsilon_px``
    (mask pixels) is the Douglas–Peucker tolerance, keeping outlines small
    without visibly moving them. Vertices are boundary-pixel centres, mapped as
    ((x + 0.5)·sx, (y + 0.5)·sy). Largest polygon first; holes are ignored.
    ``largest_only`` keeps just the largest one: the heart and each lung are
    single regions, so any other blob is a segmentation speck, not anatomy.
    """
    m = _as_mask(mask, "mask")
    sx, sy = _check_scale(scale_xy)
    if epsilon_px < 0:
        raise ValueError(f"epsilon_px must be >= 0, got {epsilon_px}")
    contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    kept = [(float(cv2.contourArea(c)), c) for c in contours]
    kept = [(area, c) for area, c in kept if area >= min_area]
    kept.sort(key=lambda item: -item[0])
    if largest_only:
        kept = kept[:1]
    polygons: list[list[list[float]]] = []
    for _, contour in kept:
        approx = cv2.approxPolyDP(contour, float(epsilon_px), True).reshape(-1, 2).astype(np.float64)
        if approx.shape[0] < 3:
            continue
        xs = np.round((approx[:, 0] + 0.5) * sx, 2)
        ys = np.round((approx[:, 1] + 0.5) * sy, 2)
        polygons.append([[float(x), float(y)] for x, y in zip(xs, ys, strict=True)])
    return polygons

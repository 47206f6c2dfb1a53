"""Reading tools as data: what a distance, angle, hand-drawn CTR, ROI, arrow or text note is,
and what it measures on an image. Qt-free: the viewer draws these, the store keeps them,
the report lists them, and all three read the same numbers from :func:`measure`.

Points are image pixel coordinates (x right, y down, pixel (0, 0) covering [0, 1)²). Sizes
are in mm when the image's spacing is known and say "px (uncalibrated)" when it is not;
ROI statistics are in modality units (after Rescale / Modality LUT), as the status bar's
values are.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from cxrview.core.image import XrayImage

Point = tuple[float, float]

#: kind → number of points, in drawing order.
KINDS: dict[str, int] = {
    "distance": 2,  # two ends
    "angle": 3,  # first arm's end, vertex, second arm's end
    "ctr": 4,  # heart caliper (two points), then thorax caliper (two points)
    "rect": 2,  # opposite corners
    "ellipse": 2,  # opposite corners of the bounding box
    "arrow": 2,  # tail, head
    "text": 1,  # anchor
}
TITLES = {"distance": "Distance", "angle": "Angle", "ctr": "CTR (by hand)", "rect": "Rectangle ROI",
          "ellipse": "Ellipse ROI", "arrow": "Arrow", "text": "Text"}


def new_uid() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Annotation:
    """One reading mark on one image."""

    kind: str
    points: tuple[Point, ...]
    text: str = ""  # the note of a text or arrow annotation
    uid: str = field(default_factory=new_uid)
    author: str = ""
    created: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown annotation kind {self.kind!r}")
        if len(self.points) != KINDS[self.kind]:
            raise ValueError(f"a {self.kind} needs {KINDS[self.kind]} points, got {len(self.points)}")
        if not all(math.isfinite(v) for p in self.points for v in p):
            raise ValueError("annotation points must be finite")
        object.__setattr__(self, "points", tuple((float(x), float(y)) for x, y in self.points))

    def moved(self, dx: float, dy: float) -> Annotation:
        return Annotation(self.kind, tuple((x + dx, y + dy) for x, y in self.points), self.text, self.uid,
                          self.author, self.created)


@dataclass(frozen=True)
class Measured:
    """What an annotation measures: a short label (drawn beside it) and its values."""

    label: str
    values: dict[str, float | None]
    unit: str  # "mm", "px" (uncalibrated), "°", "" …


def _length(image: XrayImage, a: Point, b: Point) -> tuple[float, str]:
    mm = image.distance_mm(a, b)
    if mm is not None:
        return mm, "mm"
    return math.hypot(b[0] - a[0], b[1] - a[1]), "px"


def _fmt_length(value: float, unit: str) -> str:
    return f"{value:.1f} mm" if unit == "mm" else f"{value:.0f} px (uncalibrated)"


def angle_degrees(a: Point, vertex: Point, c: Point) -> float:
    """The angle at ``vertex`` between the arms to ``a`` and ``c``, in [0, 180]."""
    v1 = (a[0] - vertex[0], a[1] - vertex[1])
    v2 = (c[0] - vertex[0], c[1] - vertex[1])
    n1, n2 = math.hypot(*v1), math.hypot(*v2)
    if n1 == 0 or n2 == 0:
        return 0.0
    cos = max(-1.0, min(1.0, (v1[0] * v2[0] + v1[1] * v2[1]) / (n1 * n2)))
    return math.degrees(math.acos(cos))


def roi_mask(kind: str, p0: Point, p1: Point, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """(boolean mask of the pixels whose centres lie inside, (row, column) of its top-left)."""
    h, w = shape
    x0, x1 = sorted((p0[0], p1[0]))
    y0, y1 = sorted((p0[1], p1[1]))
    c0, c1 = max(0, math.floor(x0)), min(w, math.ceil(x1))
    r0, r1 = max(0, math.floor(y0)), min(h, math.ceil(y1))
    if c1 <= c0 or r1 <= r0:
        return np.zeros((0, 0), dtype=bool), (r0, c0)
    ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5
    if kind == "ellipse":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        if rx <= 0 or ry <= 0:
            return np.zeros((r1 - r0, c1 - c0), dtype=bool), (r0, c0)
        mask = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
    else:
        mask = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
    return mask, (r0, c0)


def roi_stats(image: XrayImage, kind: str, p0: Point, p1: Point) -> dict[str, float | None]:
    """Mean, SD, min, max (modality units), pixel count and area (mm² when calibrated)."""
    mask, (r0, c0) = roi_mask(kind, p0, p1, image.stored.shape)
    count = int(mask.sum())
    out: dict[str, float | None] = {"pixels": float(count), "mean": None, "sd": None, "min": None,
                                    "max": None, "area_mm2": None, "area_px": float(count)}
    if count:
        block = image.stored[r0:r0 + mask.shape[0], c0:c0 + mask.shape[1]]
        values = image.modality_transform.apply(block[mask])
        out.update(mean=float(values.mean()), sd=float(values.std()), min=float(values.min()),
                   max=float(values.max()))
    if image.spacing is not None:
        out["area_mm2"] = count * image.spacing.row_mm * image.spacing.col_mm
    return out


def _value(number: float) -> str:
    return f"{number:.0f}" if abs(number) >= 100 else f"{number:.4g}"


def measure(annotation: Annotation, image: XrayImage) -> Measured:
    """The numbers a reader reads off ``annotation`` on ``image``."""
    kind, pts = annotation.kind, annotation.points
    if kind == "distance":
        value, unit = _length(image, pts[0], pts[1])
        return Measured(_fmt_length(value, unit), {"length": value}, unit)
    if kind == "angle":
        degrees = angle_degrees(*pts)
        return Measured(f"{degrees:.1f}°", {"angle": degrees}, "°")
    if kind == "ctr":
        # The ratio of horizontal widths (heart over thorax), as the AI's CTR is defined.
        heart = abs(pts[1][0] - pts[0][0])
        thorax = abs(pts[3][0] - pts[2][0])
        ratio = heart / thorax if thorax > 0 else None
        heart_len, unit = _length(image, pts[0], (pts[1][0], pts[0][1]))
        thorax_len, _ = _length(image, pts[2], (pts[3][0], pts[2][1]))
        label = f"CTR {ratio:.2f}" if ratio is not None else "CTR –"
        return Measured(label, {"ratio": ratio, "heart": heart_len, "thorax": thorax_len}, unit)
    if kind in ("rect", "ellipse"):
        stats = roi_stats(image, kind, pts[0], pts[1])
        if stats["mean"] is None:
            return Measured("empty ROI", stats, "")
        area = (f"{stats['area_mm2']:.1f} mm²" if stats["area_mm2"] is not None
                else f"{stats['area_px']:.0f} px² (uncalibrated)")
        label = f"mean {_value(stats['mean'])} SD {_value(stats['sd'] or 0.0)}  {area}"
        return Measured(label, stats, "mm²" if stats["area_mm2"] is not None else "px²")
    return Measured(annotation.text, {}, "")


def is_degenerate(annotation: Annotation) -> bool:
    """A click rather than a drawing (every arm or box under one pixel): not kept."""
    pts = annotation.points
    if annotation.kind == "text":
        return not annotation.text.strip()
    pairs = [(pts[0], pts[1])] if annotation.kind != "ctr" else [(pts[0], pts[1]), (pts[2], pts[3])]
    if annotation.kind == "angle":
        pairs = [(pts[0], pts[1]), (pts[1], pts[2])]
    return any(math.hypot(b[0] - a[0], b[1] - a[1]) < 1.0 for a, b in pairs)

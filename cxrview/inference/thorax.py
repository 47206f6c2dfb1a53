"""The thorax region: where heatmaps and boxes are allowed to be.

Grad-CAM maps of a classifier trained on a few thousand films often peak on
the film's corners, labels and collimation edges — where and how a film was
made rather than what is in the chest. Showing such a peak on the shoulder or
in the abdomen misleads, and an accepted box there would enter the
annotators' data. So maps and boxes are restricted to the thorax: the convex
hull of the segmenter's lungs and heart (largest component of each), grown
by a margin (a fraction of the image side) so that pleural and
costophrenic findings at the lung edge stay inside.

The region is convex by construction, so a rectangle lies inside it exactly
when its four corners do; boxes are shrunk about their centre until they do.
Numpy + cv2 only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxrview.inference.boxes import Box

THORAX_MARGIN = 0.04  # of the mask's longer side, added around the lung/heart hull
STRUCTURES = ("right_lung", "left_lung", "heart")
MIN_BOX_SIDE_PX = 4.0

Polygon = list[list[float]]


def thorax_region(masks: dict[str, np.ndarray], *, margin: float = THORAX_MARGIN) -> np.ndarray | None:
    """Filled convex thorax region at mask size, or None when either lung is missing."""
    import cv2

    from cxrview.inference.ctr import largest_component

    parts = []
    for name in STRUCTURES:
        mask = masks.get(name)
        part = largest_component(mask) if mask is not None else None
        if part is None:
            if name != "heart":
                return None  # no thorax without both lungs; the heart alone may be missing
            continue
        parts.append(part)
    union = np.logical_or.reduce(parts)
    h, w = union.shape
    grow = max(1, round(margin * max(h, w)))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    grown = cv2.dilate(union.astype(np.uint8), kernel)
    points = cv2.findNonZero(grown)
    if points is None:
        return None
    hull = cv2.convexHull(points)
    region = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    return region.astype(bool)


def region_polygon(region: np.ndarray, *, scale_xy: tuple[float, float] = (1.0, 1.0)) -> Polygon:
    """The region's outline as a convex polygon [[x, y], ...] in original-image pixel-edge coordinates."""
    import cv2

    points = cv2.findNonZero(region.astype(np.uint8))
    if points is None:
        return []
    hull = cv2.convexHull(points).reshape(-1, 2).astype(np.float64)
    sx, sy = scale_xy
    # pixel centres → pixel-edge coordinates, grown by half a pixel so the polygon covers the pixels
    cx, cy = hull[:, 0].mean(), hull[:, 1].mean()
    xs = (hull[:, 0] + 0.5 + 0.5 * np.sign(hull[:, 0] - cx)) * sx
    ys = (hull[:, 1] + 0.5 + 0.5 * np.sign(hull[:, 1] - cy)) * sy
    return [[round(float(x), 2), round(float(y), 2)] for x, y in zip(xs, ys, strict=True)]


def polygon_region(polygon: Sequence[Sequence[float]], image_size: tuple[int, int],
                   shape: tuple[int, int]) -> np.ndarray | None:
    """Rasterise an original-image polygon onto a (H, W) grid covering the same image."""
    import cv2

    if not polygon or len(polygon) < 3:
        return None
    h, w = shape
    sx, sy = w / max(1, image_size[0]), h / max(1, image_size[1])
    pts = np.array([[x * sx - 0.5, y * sy - 0.5] for x, y in polygon], dtype=np.float64)
    region = np.zeros((h, w), np.uint8)
    cv2.fillPoly(region, [np.round(pts).astype(np.int32)], 1)
    return region.astype(bool)


def restrict_cam(cam: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """The map with everything outside the thorax removed, rescaled to a peak of 1.

    ``region`` may be at another size (the segmenter's): it is resampled to the
    map's grid with area weights, so the edge fades over one cell instead of
    cutting a blocky staircase into the heatmap.
    """
    import cv2

    if region is None:
        return cam
    cam = np.asarray(cam, dtype=np.float32)
    weight = cv2.resize(region.astype(np.float32), (cam.shape[1], cam.shape[0]),
                        interpolation=cv2.INTER_AREA)
    inside = cv2.resize(region.astype(np.uint8), (cam.shape[1], cam.shape[0]),
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    out = cam * np.where(inside, weight, 0.0).astype(np.float32)
    peak = float(out.max()) if out.size else 0.0
    return out / peak if peak > 0 else np.zeros_like(out)


def _inside(contour: np.ndarray, x: float, y: float) -> bool:
    import cv2

    return cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0


def fit_box_inside(box: Box, polygon: Polygon | None, image_size: tuple[int, int]) -> Box | None:
    """``box`` clipped to the image and shrunk about its centre until it lies inside ``polygon``.

    None when nothing of it is left (centre outside the thorax, or smaller than a few pixels).
    Without a polygon only the image bounds apply.
    """
    width, height = image_size
    x0, y0 = max(0.0, box.x), max(0.0, box.y)
    x1, y1 = min(float(width), box.x + box.w), min(float(height), box.y + box.h)
    if x1 - x0 < MIN_BOX_SIDE_PX or y1 - y0 < MIN_BOX_SIDE_PX:
        return None
    if polygon:
        contour = np.array(polygon, dtype=np.float32).reshape(-1, 1, 2)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        if not _inside(contour, cx, cy):
            return None
        hw, hh = (x1 - x0) / 2, (y1 - y0) / 2

        def fits(s: float) -> bool:
            return all(_inside(contour, cx + dx * s * hw, cy + dy * s * hh)
                       for dx in (-1, 1) for dy in (-1, 1))

        if not fits(1.0):
            lo, hi = 0.0, 1.0
            for _ in range(20):  # bisection on the scale: 1e-6 of the box size
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            hw, hh = hw * lo, hh * lo
        # a hair inside, so the two-decimal JSON rounding cannot put a corner on the outside
        hw, hh = max(0.0, hw - 0.05), max(0.0, hh - 0.05)
        x0, x1, y0, y1 = cx - hw, cx + hw, cy - hh, cy + hh
        if x1 - x0 < MIN_BOX_SIDE_PX or y1 - y0 < MIN_BOX_SIDE_PX:
            return None
    return Box(box.finding, x0, y0, x1 - x0, y1 - y0, box.score, box.heat)


def box_inside(box: Box | dict[str, float], polygon: Polygon) -> bool:
    """True when every corner of the box lies inside the (convex) polygon (tests, benchmarks)."""
    contour = np.array(polygon, dtype=np.float32).reshape(-1, 1, 2)
    if isinstance(box, dict):
        x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
    else:
        x, y, w, h = float(box.x), float(box.y), float(box.w), float(box.h)
    return all(_inside(contour, cx, cy) for cx in (x, x + w) for cy in (y, y + h))


# -- the classifier's thorax crop ------------------------------------------------------------------

CROP_MARGIN = 0.08  # of the lung/heart box's longer side, on every side
CropBox = tuple[int, int, int]  # (x0, y0, side) in original pixels; may extend beyond the image


def crop_box(masks: dict[str, np.ndarray], image_size: tuple[int, int], *,
             margin: float = CROP_MARGIN) -> CropBox | None:
    """The square around lungs and heart (largest component of each, plus ``margin``) in original
    pixels, centred on them; None without both lungs. Masks cover the whole image at any size."""
    from cxrview.inference.ctr import largest_component

    parts = []
    for name in STRUCTURES:
        mask = masks.get(name)
        part = largest_component(mask) if mask is not None else None
        if part is None and name != "heart":
            return None
        if part is not None:
            parts.append(part)
    union = np.logical_or.reduce(parts)
    rows, cols = np.nonzero(union.any(axis=1))[0], np.nonzero(union.any(axis=0))[0]
    h, w = union.shape
    sx, sy = image_size[0] / w, image_size[1] / h
    x0, x1 = cols[0] * sx, (cols[-1] + 1) * sx
    y0, y1 = rows[0] * sy, (rows[-1] + 1) * sy
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return round(float(cx - side / 2)), round(float(cy - side / 2)), max(8, round(float(side)))


def crop_square(image: np.ndarray, box: CropBox) -> np.ndarray:
    """The square ``box`` of a 2-D array; what lies beyond the image is 0 (black, like collimation)."""
    x0, y0, side = box
    h, w = image.shape
    out = np.zeros((side, side), image.dtype)
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0] = image[ay0:ay1, ax0:ax1]
    return out


def uncrop_map(cam: np.ndarray, box: CropBox | None, image_size: tuple[int, int], *,
               long_side: int = 448) -> np.ndarray:
    """A map over the crop placed on a grid over the whole image (``long_side`` cells on the
    longer side, zeros outside the crop), so boxes, thorax masking and drawing work as for a
    whole-film map. ``box=None``: the map already covers the whole image; returned as is."""
    import cv2

    if box is None:
        return cam
    width, height = image_size
    scale = long_side / max(width, height)
    gw, gh = max(1, round(width * scale)), max(1, round(height * scale))
    x0, y0, side = (v * scale for v in box)
    s = max(1, round(side))
    placed = cv2.resize(np.asarray(cam, np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
    return crop_square_into(placed, round(x0), round(y0), (gh, gw))


def crop_square_into(patch: np.ndarray, x0: int, y0: int, shape: tuple[int, int]) -> np.ndarray:
    """``patch`` pasted at (x0, y0) on a zero array of ``shape``, clipped at the borders."""
    gh, gw = shape
    out = np.zeros((gh, gw), np.float32)
    ph, pw = patch.shape
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(gw, x0 + pw), min(gh, y0 + ph)
    if ax1 > ax0 and ay1 > ay0:
        out[ay0:ay1, ax0:ax1] = patch[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    return out

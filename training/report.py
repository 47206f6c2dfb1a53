"""Evaluation artefacts written next to a trained model: ROC figure and JSON report.

Drawn with cv2 rather than matplotlib so the training environment stays small
and offline-installable. Every file is written atomically (temporary file in
the same folder, then ``os.replace``) so an interrupted run never leaves a
half-written report that a later step or the viewer would trust.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cxrview.core.export import atomic_write_bytes

# Colours in BGR, chosen to stay distinguishable on white (a tab10/20-like palette).
PALETTE = (
    (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
    (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23),
    (232, 199, 174), (120, 187, 255), (138, 223, 152), (150, 152, 255), (213, 176, 197),
)  # fmt: skip

_W, _H = 900, 700
_PLOT = (80, 60, 620, 600)  # x0, y0, x1, y1 of the unit square
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (40, 40, 40)
_GRID = (225, 225, 225)


def _atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Create the folder, then the app's atomic write (temp sibling + os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, data)
    return target


def _to_px(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = _PLOT
    xs = x0 + fpr * (x1 - x0)
    ys = y1 - tpr * (y1 - y0)
    return np.round(np.stack([xs, ys], axis=1)).astype(np.int32)


def _put_rotated_text(img: np.ndarray, text: str, centre: tuple[int, int], scale: float) -> None:
    """Vertical (90° counter-clockwise) text: cv2 has no rotated putText, so render and rotate a patch."""
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch: np.ndarray = np.full((th + base + 4, tw + 4, 3), 255, np.uint8)
    cv2.putText(patch, text, (2, th + 2), _FONT, scale, _INK, 1, cv2.LINE_AA)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ph, pw = patch.shape[:2]
    top = max(0, min(img.shape[0] - ph, centre[1] - ph // 2))
    left = max(0, min(img.shape[1] - pw, centre[0] - pw // 2))
    img[top : top + ph, left : left + pw] = np.minimum(img[top : top + ph, left : left + pw], patch)


def _draw_axes(img: np.ndarray, title: str) -> None:
    x0, y0, x1, y1 = _PLOT
    for i in range(6):
        v = i / 5
        gx = round(x0 + v * (x1 - x0))
        gy = round(y1 - v * (y1 - y0))
        cv2.line(img, (gx, y0), (gx, y1), _GRID, 1)
        cv2.line(img, (x0, gy), (x1, gy), _GRID, 1)
        label = f"{v:.1f}"
        (tw, th), _ = cv2.getTextSize(label, _FONT, 0.45, 1)
        cv2.putText(img, label, (gx - tw // 2, y1 + th + 8), _FONT, 0.45, _INK, 1, cv2.LINE_AA)
        cv2.putText(img, label, (x0 - tw - 8, gy + th // 2), _FONT, 0.45, _INK, 1, cv2.LINE_AA)
    cv2.line(img, (x0, y1), (x1, y0), (160, 160, 160), 1, cv2.LINE_AA)  # chance diagonal
    cv2.rectangle(img, (x0, y0), (x1, y1), _INK, 1)
    xlabel = "False positive rate (1 - specificity)"
    (tw, _), _ = cv2.getTextSize(xlabel, _FONT, 0.55, 1)
    cv2.putText(img, xlabel, ((x0 + x1 - tw) // 2, y1 + 50), _FONT, 0.55, _INK, 1, cv2.LINE_AA)
    _put_rotated_text(img, "True positive rate (sensitivity)", (22, (y0 + y1) // 2), 0.55)
    (tw, _), _ = cv2.getTextSize(title, _FONT, 0.7, 2)
    cv2.putText(img, title, (max(10, (_W - tw) // 2), 38), _FONT, 0.7, _INK, 2, cv2.LINE_AA)


def _draw_legend(img: np.ndarray, entries: Sequence[tuple[str, str, tuple[int, int, int]]]) -> None:
    """Legend to the right of the plot; line spacing and font shrink so 14+ labels still fit."""
    if not entries:
        return
    x = _PLOT[2] + 20
    top, bottom = _PLOT[1], _PLOT[3]
    step = min(28, max(12, (bottom - top) // len(entries)))
    scale = 0.5 if step >= 20 else 0.38
    max_text_px = _W - x - 45
    for i, (label, auc_text, colour) in enumerate(entries):
        y = top + 10 + i * step
        if y > bottom + 40:
            cv2.putText(img, f"... {len(entries) - i} more", (x, y), _FONT, scale, _INK, 1, cv2.LINE_AA)
            break
        cv2.line(img, (x, y - 4), (x + 28, y - 4), colour, 3, cv2.LINE_AA)
        text, short = f"{label} ({auc_text})", label
        while len(short) > 3 and cv2.getTextSize(text, _FONT, scale, 1)[0][0] > max_text_px:
            short = short[:-1]
            text = f"{short}... ({auc_text})"
        cv2.putText(img, text, (x + 36, y), _FONT, scale, _INK, 1, cv2.LINE_AA)


def render_roc(curves: Mapping[str, tuple[Any, Any, float | None]], title: str) -> np.ndarray:
    """The ROC figure as a BGR image (_H × _W), one coloured curve per label, legend with AUROCs."""
    img = np.full((_H, _W, 3), 255, np.uint8)
    _draw_axes(img, title)
    entries: list[tuple[str, str, tuple[int, int, int]]] = []
    for i, (label, (fpr, tpr, auc)) in enumerate(curves.items()):
        f = np.asarray(fpr, dtype=np.float64)
        t = np.asarray(tpr, dtype=np.float64)
        if f.ndim != 1 or f.shape != t.shape or f.size < 2:
            raise ValueError(f"curve {label!r}: fpr and tpr must be 1-D, equal length, >= 2 points")
        both = np.concatenate([f, t])
        if not np.isfinite(both).all() or both.min() < 0 or both.max() > 1:
            raise ValueError(f"curve {label!r}: rates must be finite and within [0, 1]")
        colour = PALETTE[i % len(PALETTE)]
        cv2.polylines(img, [_to_px(f, t)], False, colour, 2, cv2.LINE_AA)
        auc_text = "n/a" if auc is None or not math.isfinite(float(auc)) else f"{float(auc):.3f}"
        entries.append((str(label), auc_text, colour))
    _draw_legend(img, entries)
    return img


def write_roc_png(
    path: str | os.PathLike[str], curves: Mapping[str, tuple[Any, Any, float | None]], title: str
) -> Path:
    """Write the ROC figure as PNG atomically; ``curves`` is {label: (fpr, tpr, auroc)}.

    ``training.metrics.per_label_roc_curves`` produces exactly this mapping.
    """
    ok, buf = cv2.imencode(".png", render_roc(curves, title))
    if not ok:
        raise OSError("PNG encoding failed")
    return _atomic_write_bytes(path, buf.tobytes())


def to_jsonable(obj: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, tuples, paths and dataclasses.

    Non-finite floats become None: strict JSON has no NaN, and a model card
    that other tools cannot parse is worse than one saying "undefined".
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = obj.to_dict() if hasattr(obj, "to_dict") else dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot convert {type(obj).__name__} to JSON")


def write_json_report(path: str | os.PathLike[str], report: Mapping[str, Any]) -> Path:
    """Write ``report`` as indented UTF-8 JSON atomically, converting numpy types first."""
    text = json.dumps(to_jsonable(report), indent=2, ensure_ascii=False, allow_nan=False)
    return _atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def render_reliability(bins: Sequence[Mapping[str, Any]], title: str) -> np.ndarray:
    """Reliability diagram as a BGR image: observed frequency against mean predicted probability
    per bin (dots sized by how many predictions fall in the bin), the diagonal = perfect."""
    img = np.full((_H, _W, 3), 255, np.uint8)
    _draw_axes(img, title)
    # the axes helper labels them as an ROC plot; overwrite the two axis titles
    x0, y0, x1, y1 = _PLOT
    cv2.rectangle(img, (x0 - 5, y1 + 30), (x1 + 5, y1 + 60), (255, 255, 255), -1)
    cv2.rectangle(img, (0, y0), (40, y1), (255, 255, 255), -1)
    xlabel = "Mean predicted probability (calibrated)"
    (tw, _), _ = cv2.getTextSize(xlabel, _FONT, 0.55, 1)
    cv2.putText(img, xlabel, ((x0 + x1 - tw) // 2, y1 + 50), _FONT, 0.55, _INK, 1, cv2.LINE_AA)
    _put_rotated_text(img, "Observed frequency", (22, (y0 + y1) // 2), 0.55)
    total = max(1, sum(int(b.get("n") or 0) for b in bins))
    points = []
    for b in bins:
        if not b.get("n"):
            continue
        p = _to_px(np.array([float(b["mean_probability"])]), np.array([float(b["observed"])]))[0]
        points.append(p)
        radius = max(3, round(18 * math.sqrt(int(b["n"]) / total)))
        cv2.circle(img, (int(p[0]), int(p[1])), radius, PALETTE[0], -1, cv2.LINE_AA)
        label = f"n={int(b['n'])}"
        cv2.putText(img, label, (int(p[0]) + radius + 3, int(p[1]) + 4), _FONT, 0.4, _INK, 1, cv2.LINE_AA)
    if len(points) > 1:
        cv2.polylines(img, [np.array(points, dtype=np.int32)], False, PALETTE[0], 2, cv2.LINE_AA)
    return img


def write_reliability_png(path: str | os.PathLike[str], bins: Sequence[Mapping[str, Any]],
                          title: str) -> Path:
    """Write the reliability diagram (``training.evidence.reliability`` bins) as PNG atomically."""
    ok, buf = cv2.imencode(".png", render_reliability(bins, title))
    if not ok:
        raise OSError("PNG encoding failed")
    return _atomic_write_bytes(path, buf.tobytes())

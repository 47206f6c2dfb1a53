"""Evaluation metrics for the classifiers and segmenters, in plain numpy.

Why hand-written rather than scikit-learn: the app and the training CLI must
run from a small offline install, and these results go into model cards that
the viewer reads, so every number here must be reproducible from a few lines
of code we can test against brute-force definitions. Nothing here imports
torch or Qt, so the GUI worker and the CLI can call it.

Conventions used throughout:

* A prediction is positive when ``score >= threshold``.
* Multi-label arrays are ``(N, C)``: N samples, C labels. An optional mask
  ``M`` (0/1, same shape) marks which labels are *known* for a sample; unknown
  labels are excluded from that label's statistics, never counted as negatives
  (datasets such as CheXpert leave many findings unlabelled).
* Returned dictionaries hold only plain Python ``float``/``int``/``None`` so
  they can be written to JSON model cards as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

THRESHOLD_METHODS = ("youden", "f1", "sensitivity", "specificity")
_BOOTSTRAP_CHUNK_CELLS = 4_000_000  # resamples x samples per chunk: bounds memory to ~100 MB


def _binary_1d(y: ArrayLike, name: str = "y_true") -> np.ndarray:
    """Labels as an int8 vector of 0/1; anything else is a caller bug worth a clear message."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"{name} must contain only 0 and 1, found {bad.tolist()}")
    return arr.astype(np.int8)


def _scores_1d(s: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    """Scores as a finite float64 vector of length n (NaN scores would silently corrupt ranks)."""
    arr = np.asarray(s, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but the labels have {n}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def _pair(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _binary_1d(y_true)
    return y, _scores_1d(scores, y.shape[0])


def _both_classes(y: np.ndarray, what: str) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"{what} needs both positive and negative samples (got {n_pos} pos, {n_neg} neg)")
    return n_pos, n_neg


def _multilabel(
    Y: ArrayLike, P: ArrayLike, M: ArrayLike | None, labels: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Validated (Y, P, M, labels); Y values where M == 0 are ignored and may be anything (e.g. -1, NaN)."""
    y = np.asarray(Y, dtype=np.float64)
    p = np.asarray(P, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"Y must be 2-D (samples, labels), got shape {y.shape}")
    if p.shape != y.shape:
        raise ValueError(f"P has shape {p.shape} but Y has shape {y.shape}")
    if M is None:
        m = np.ones(y.shape, dtype=bool)
    else:
        m_arr = np.asarray(M)
        if m_arr.shape != y.shape:
            raise ValueError(f"M has shape {m_arr.shape} but Y has shape {y.shape}")
        if not np.isin(m_arr, (0, 1)).all():
            raise ValueError("M must contain only 0 and 1 (1 = label known)")
        m = m_arr.astype(bool)
    known_y = y[m]
    if not np.isin(known_y, (0.0, 1.0)).all():
        raise ValueError("Y must be 0 or 1 wherever the label is known (mask the others out with M)")
    if not np.isfinite(p[m]).all():
        raise ValueError("P contains NaN or infinite scores for known labels")
    if labels is None:
        names = [str(i) for i in range(y.shape[1])]
    else:
        names = [str(label) for label in labels]
        if len(names) != y.shape[1]:
            raise ValueError(f"{len(names)} label names for {y.shape[1]} label columns")
        if len(set(names)) != len(names):
            raise ValueError("label names must be unique")
    return y, p, m, names


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank (what Mann–Whitney needs for exact tie credit)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.ones(xs.shape[0], dtype=bool)
    new_group[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], xs.shape[0])  # exclusive
    group_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(xs.shape[0], dtype=np.float64)
    ranks[order] = group_rank[np.cumsum(new_group) - 1]
    return ranks


def auroc(y_true: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve as the Mann–Whitney U statistic.

    Equals the probability that a random positive scores higher than a random
    negative, with ties counting one half. None when only one class is present
    (the AUROC is undefined, and reporting 0.5 would look like a real result).
    """
    y, s = _pair(y_true, scores)
    n_pos = int(y.sum())
    n_neg = int(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = _average_ranks(s)
    u = ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def per_label_auroc(
    Y: ArrayLike, P: ArrayLike, M: ArrayLike | None = None, labels: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """AUROC per label column, using only samples whose label is known (M == 1)."""
    y, p, m, names = _multilabel(Y, P, M, labels)
    out: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        known = m[:, k]
        yk = y[known, k]
        n_pos = int(yk.sum())
        out[name] = {"auroc": auroc(yk, p[known, k]), "n_pos": n_pos, "n_neg": int(yk.shape[0] - n_pos)}
    return out


def roc_curve(y_true: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) with one point per distinct score, highest threshold first.

    The first point is (0, 0) at threshold +inf (nothing predicted positive),
    so the curve always starts at the origin and ends at (1, 1). Raises if a
    class is missing, because one of the rates would be 0/0.
    """
    y, s = _pair(y_true, scores)
    n_pos, n_neg = _both_classes(y, "roc_curve")
    order = np.argsort(-s, kind="mergesort")
    ss = s[order]
    last_of_group = np.append(np.flatnonzero(np.diff(ss) != 0), ss.shape[0] - 1)
    tps = np.cumsum(y[order])[last_of_group].astype(np.float64)
    fps = (last_of_group + 1) - tps
    fpr = np.concatenate(([0.0], fps / n_neg))
    tpr = np.concatenate(([0.0], tps / n_pos))
    thresholds = np.concatenate(([np.inf], ss[last_of_group]))
    return fpr, tpr, thresholds


def per_label_roc_curves(
    Y: ArrayLike, P: ArrayLike, M: ArrayLike | None = None, labels: Sequence[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{label: (fpr, tpr, auroc)} for labels with both classes: the input of report.write_roc_png."""
    y, p, m, names = _multilabel(Y, P, M, labels)
    curves: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for k, name in enumerate(names):
        known = m[:, k]
        value = auroc(y[known, k], p[known, k])
        if value is not None:
            fpr, tpr, _ = roc_curve(y[known, k], p[known, k])
            curves[name] = (fpr, tpr, value)
    return curves


def _bootstrap_counts(y: np.ndarray, n: int, seed: int) -> Iterator[np.ndarray]:
    """Chunks of (resamples, N) multiplicities of a stratified bootstrap.

    Positives and negatives are resampled separately (as pROC does by default)
    so every resample keeps both classes and the same prevalence; representing a
    resample by per-sample counts lets one sort of the scores serve all resamples.
    """
    rng = np.random.default_rng(seed)
    n_samples = y.shape[0]
    pos_idx = np.flatnonzero(y == 1)
    neg_idx = np.flatnonzero(y == 0)
    chunk = max(1, _BOOTSTRAP_CHUNK_CELLS // max(n_samples, 1))
    done = 0
    while done < n:
        b = min(chunk, n - done)
        row_offset = (np.arange(b, dtype=np.int64) * n_samples)[:, None]
        pos = pos_idx[rng.integers(0, pos_idx.shape[0], size=(b, pos_idx.shape[0]))]
        neg = neg_idx[rng.integers(0, neg_idx.shape[0], size=(b, neg_idx.shape[0]))]
        drawn = np.concatenate((pos, neg), axis=1)
        counts = np.bincount((drawn + row_offset).ravel(), minlength=b * n_samples)
        yield counts.reshape(b, n_samples)
        done += b


def _weighted_aurocs(counts: np.ndarray, y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC of each row's weighted sample (weights = multiplicities), ties credited one half."""
    order = np.argsort(s, kind="mergesort")
    ss = s[order]
    starts = np.flatnonzero(np.concatenate(([True], ss[1:] != ss[:-1])))
    c = counts[:, order].astype(np.float64)
    is_pos = y[order].astype(bool)
    pos_g = np.add.reduceat(np.where(is_pos, c, 0.0), starts, axis=1)
    neg_g = np.add.reduceat(np.where(is_pos, 0.0, c), starts, axis=1)
    neg_below = np.cumsum(neg_g, axis=1) - neg_g
    wins = (pos_g * (neg_below + 0.5 * neg_g)).sum(axis=1)
    areas: np.ndarray = wins / (pos_g.sum(axis=1) * neg_g.sum(axis=1))
    return areas


def _check_bootstrap_args(n: int, alpha: float) -> None:
    if int(n) < 1:
        raise ValueError(f"n (number of resamples) must be at least 1, got {n}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_auroc_ci(
    y_true: ArrayLike, scores: ArrayLike, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile (1 - alpha) confidence interval of the AUROC by stratified bootstrap.

    Deterministic for a given seed so model cards are reproducible. Raises when
    a class is missing (there is no AUROC to bound).
    """
    _check_bootstrap_args(n, alpha)
    y, s = _pair(y_true, scores)
    _both_classes(y, "bootstrap_auroc_ci")
    values = np.concatenate([_weighted_aurocs(c, y, s) for c in _bootstrap_counts(y, int(n), seed)])
    lo, hi = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def bootstrap_auroc_diff_ci(
    y_true: ArrayLike,
    scores_a: ArrayLike,
    scores_b: ArrayLike,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """(AUROC_a - AUROC_b, lo, hi) from a paired bootstrap on the same test set.

    Pairing (both models scored on the same resample) is what makes the
    comparison fair: the interval then reflects the models' difference, not the
    test set's sampling noise twice. An interval excluding 0 suggests a real difference.
    """
    _check_bootstrap_args(n, alpha)
    y, sa = _pair(y_true, scores_a)
    sb = _scores_1d(scores_b, y.shape[0], "scores_b")
    _both_classes(y, "bootstrap_auroc_diff_ci")
    diffs = [
        _weighted_aurocs(c, y, sa) - _weighted_aurocs(c, y, sb) for c in _bootstrap_counts(y, int(n), seed)
    ]
    lo, hi = np.quantile(np.concatenate(diffs), [alpha / 2.0, 1.0 - alpha / 2.0])
    ones = np.ones((1, y.shape[0]))
    point = float(_weighted_aurocs(ones, y, sa)[0] - _weighted_aurocs(ones, y, sb)[0])
    return point, float(lo), float(hi)


def choose_threshold(
    y_true: ArrayLike, scores: ArrayLike, method: str = "youden", target: float = 0.9
) -> float:
    """A decision threshold (positive when score >= threshold) chosen on labelled data.

    * ``"youden"``: maximises sensitivity + specificity - 1; ties go to the
      highest threshold (fewest false alarms). At low prevalence this calls
      many negatives positive (specificity counts as much as precision).
    * ``"f1"``: maximises F1 (precision and recall of the positive class);
      fewer, more trustworthy positives when a finding is rare. Ties go to
      the highest threshold.
    * ``"sensitivity"``: the highest threshold whose sensitivity is >= target,
      i.e. the most specific screen that still catches ``target`` of positives.
    * ``"specificity"``: the lowest threshold whose specificity is >= target.

    Choose thresholds on validation data and apply them to the test set;
    choosing on the test set makes the reported F1/recall optimistic.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if method not in ("youden", "f1") and not 0.0 <= target <= 1.0:
        raise ValueError(f"target must be in [0, 1], got {target}")
    fpr, tpr, thr = roc_curve(y_true, scores)
    eps = 1e-12
    if method == "youden":
        i = 1 + int(np.argmax((tpr - fpr)[1:]))
    elif method == "f1":
        y = _binary_1d(y_true)
        n_pos, n_neg = int(y.sum()), int(y.size - y.sum())
        tp, fp = tpr * n_pos, fpr * n_neg
        f1 = np.divide(2 * tp, 2 * tp + fp + (n_pos - tp), out=np.zeros_like(tp), where=(tp + fp) > 0)
        i = 1 + int(np.argmax(f1[1:]))
    elif method == "sensitivity":
        i = 1 + int(np.argmax(tpr[1:] >= target - eps))  # tpr reaches 1.0, so a hit always exists
    else:
        ok = np.flatnonzero((1.0 - fpr[1:]) >= target - eps)
        if ok.size == 0:  # even the highest score admits too many negatives: call nothing positive
            return float(np.nextafter(thr[1], np.inf))
        i = 1 + int(ok[-1])
    return float(thr[i])


def operating_point(y_true: ArrayLike, scores: ArrayLike, threshold: float) -> dict[str, Any]:
    """Confusion counts and rates at one threshold (positive when score >= threshold).

    Undefined ratios (e.g. precision with no positive predictions) are reported
    as 0.0, the usual zero-division convention, so the dict stays JSON-simple.
    """
    y, s = _pair(y_true, scores)
    t = float(threshold)
    if np.isnan(t):
        raise ValueError("threshold is NaN")
    pred = s >= t
    truth = y == 1
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    tn = int(np.sum(~pred & ~truth))

    def ratio(a: int, b: int) -> float:
        return float(a / b) if b else 0.0

    return {
        "threshold": t,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        **{"tp": tp, "fp": fp, "tn": tn, "fn": fn},
    }


def _given_threshold(thresholds: Mapping[str, float] | Sequence[float], k: int, name: str) -> float | None:
    if not isinstance(thresholds, Mapping) and len(thresholds) <= k:
        raise ValueError(f"thresholds has {len(thresholds)} entries; label {name!r} is column {k}")
    value = thresholds.get(name) if isinstance(thresholds, Mapping) else thresholds[k]
    return None if value is None else float(value)


def summarize_multilabel(
    Y: ArrayLike,
    P: ArrayLike,
    M: ArrayLike | None,
    labels: Sequence[str] | None,
    thresholds: Mapping[str, float] | Sequence[float] | None = None,
    method: str = "youden",
    target: float = 0.9,
) -> dict[str, Any]:
    """Everything a model card reports about a multi-label classifier, as plain JSON types.

    Per label: auroc, n_pos, n_neg, threshold and the operating point there
    (precision, recall, specificity, f1, counts). Thresholds come from
    ``thresholds`` (by label name or column) when given — pass the ones chosen
    on validation data when summarising the test set — otherwise they are
    chosen here with ``method``. ``mean_auroc`` averages labels whose AUROC is
    defined, and ``n_labels_auroc`` says how many that was.
    """
    y, p, m, names = _multilabel(Y, P, M, labels)
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")
    per_label: dict[str, dict[str, Any]] = {}
    aurocs: list[float] = []
    for k, name in enumerate(names):
        known = m[:, k]
        yk = y[known, k].astype(np.int8)
        pk = p[known, k]
        n_pos = int(yk.sum())
        value = auroc(yk, pk)
        if value is not None:
            aurocs.append(value)
        if thresholds is not None:
            threshold = _given_threshold(thresholds, k, name)
        elif value is not None:
            threshold = choose_threshold(yk, pk, method=method, target=target)
        else:
            threshold = None
        entry: dict[str, Any] = {"auroc": value, "n_pos": n_pos, "n_neg": int(yk.shape[0] - n_pos)}
        if threshold is not None and yk.shape[0] > 0:
            entry.update(operating_point(yk, pk, threshold))
        else:
            entry.update(dict.fromkeys(("precision", "recall", "specificity", "f1", "tp", "fp", "tn", "fn")))
            entry["threshold"] = threshold
        per_label[name] = entry
    return {
        "per_label": per_label,
        "mean_auroc": float(np.mean(aurocs)) if aurocs else None,
        "n_labels_auroc": len(aurocs),
        "n_samples": int(y.shape[0]),
        "threshold_source": "given" if thresholds is not None else method,
        "threshold_target": float(target) if thresholds is None and method != "youden" else None,
    }


def confusion_matrix(y_true_idx: ArrayLike, y_pred_idx: ArrayLike, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows are the actual class, columns the predicted one."""
    a = np.asarray(y_true_idx)
    b = np.asarray(y_pred_idx)
    if a.ndim != 1 or b.shape != a.shape:
        raise ValueError(f"y_true_idx and y_pred_idx must be 1-D, equal length; got {a.shape}, {b.shape}")
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be positive, got {n_classes}")
    n_classes = int(n_classes)
    for name, arr in (("y_true_idx", a), ("y_pred_idx", b)):
        if arr.size and (not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} must hold integer class indices in [0, {n_classes})")
    flat = a.astype(np.int64) * n_classes + b.astype(np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def most_confused(cm: ArrayLike, class_names: Sequence[str], k: int = 5) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal cells as (actual, predicted, count), zero cells omitted.

    This is the quickest way to see which pairs of findings the model mixes up.
    Ties keep row-major order so the output is stable across runs.
    """
    c = np.asarray(cm)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cm must be square, got shape {c.shape}")
    if len(class_names) != c.shape[0]:
        raise ValueError(f"{len(class_names)} class names for a {c.shape[0]}-class matrix")
    off = c.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    flat = off.ravel()
    order = np.argsort(-flat, kind="mergesort")[: max(int(k), 0)]
    n = c.shape[0]
    return [(str(class_names[i // n]), str(class_names[i % n]), int(flat[i])) for i in order if flat[i] > 0]


def top_losses(losses: ArrayLike, ids: Sequence[Any], k: int = 10) -> list[tuple[Any, float]]:
    """The k highest-loss samples as (id, loss), highest first: the images worth a human look.

    NaN losses sort first, since a NaN is itself something to investigate.
    """
    arr = np.asarray(losses, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"losses must be 1-D, got shape {arr.shape}")
    if len(ids) != arr.shape[0]:
        raise ValueError(f"{len(ids)} ids for {arr.shape[0]} losses")
    key = np.where(np.isnan(arr), np.inf, arr)
    order = np.argsort(-key, kind="mergesort")[: max(int(k), 0)]
    return [(ids[i], float(arr[i])) for i in order]


def _binary_mask(a: ArrayLike, name: str) -> np.ndarray:
    """Masks must be bool or hold only 0/1 (any dtype): a probability map must be thresholded first."""
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number) or (arr.size and not np.isin(arr, (0, 1)).all()):
        raise ValueError(f"{name} must be a boolean (or 0/1 integer) mask; threshold probabilities first")
    return arr.astype(bool)


def dice(pred_mask: ArrayLike, true_mask: ArrayLike) -> float:
    """Dice coefficient 2|A∩B| / (|A| + |B|); 1.0 when both are empty (correctly predicted absence)."""
    a = _binary_mask(pred_mask, "pred_mask")
    b = _binary_mask(true_mask, "true_mask")
    if a.shape != b.shape:
        raise ValueError(f"pred_mask shape {a.shape} differs from true_mask shape {b.shape}")
    total = int(a.sum()) + int(b.sum())
    if total == 0:
        return 1.0
    return float(2.0 * np.logical_and(a, b).sum() / total)


def dice_per_structure(pred: ArrayLike, true: ArrayLike, names: Sequence[str]) -> dict[str, float]:
    """Mean Dice over images for each channel of (N, C, H, W) masks, keyed by structure name.

    Averaging per image (not pooling pixels) keeps a small failed structure in
    one image from being hidden by large correct ones elsewhere.
    """
    a = _binary_mask(pred, "pred")
    b = _binary_mask(true, "true")
    if a.ndim != 4:
        raise ValueError(f"pred must be (N, C, H, W), got shape {a.shape}")
    if a.shape != b.shape:
        raise ValueError(f"pred shape {a.shape} differs from true shape {b.shape}")
    if len(names) != a.shape[1]:
        raise ValueError(f"{len(names)} names for {a.shape[1]} channels")
    if a.shape[0] == 0:
        raise ValueError("no images to score")
    inter = np.logical_and(a, b).sum(axis=(2, 3), dtype=np.float64)
    total = a.sum(axis=(2, 3), dtype=np.float64) + b.sum(axis=(2, 3), dtype=np.float64)
    per_image = np.where(total > 0, 2.0 * inter / np.maximum(total, 1.0), 1.0)
    return {str(name): float(v) for name, v in zip(names, per_image.mean(axis=0), strict=True)}

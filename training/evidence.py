"""The evidence a classifier card carries: calibration, validated operating points, OOD statistics.

Everything here is chosen on the **validation split** (never trained on) and then
only reported on test and, once, on the reserved NIH patients:

* **Calibration** (``fit_calibration``): per finding, Platt scaling of the logit
  (``p = σ(a·logit(raw) + b)``) with Platt's smoothed targets and a weak prior
  keeping ``a`` near 1, so a finding with 0–3 validation positives gets a
  gentle correction rather than a fit to three images. Monotone (``a > 0``), so
  AUROCs do not change. Expected calibration error before and after is recorded.
* **Operating points** (``choose_operating_points``): a finding is *validated*
  only with at least ``min_positives`` validation positives and an AUROC whose
  bootstrap interval lies above ``min_auroc_lower`` (0.6: an interval reaching
  down to chance says the ranking may be noise, and a call made from it would
  mostly be a false alarm); its threshold is the lowest calibrated
  probability whose validation specificity reaches the floor (0.90 by default,
  per finding configurable). Optionally an alarm budget: the common floor rises
  until the validation films with no finding get at most ``max_normal_positives``
  positive calls on average. Over-calling normal films is a failure in its own
  right, and a per-finding floor alone lets eight findings × 10 % false alarms
  add up to most normal films carrying a "finding".
* **Out-of-distribution statistics** (``ood_block``): per-feature mean and
  standard deviation of the pooled features on the training split, and the
  threshold of the RMS z-score at a high percentile of the validation films.

Sensitivities and specificities carry Wilson 95 % intervals, AUROCs stratified
bootstrap intervals (``metrics.bootstrap_auroc_ci``, seeded: reproducible cards).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cxrview.inference.evidence import logit, sigmoid
from training import metrics

DEFAULT_SPECIFICITY_FLOOR = 0.90
DEFAULT_MIN_POSITIVES = 15
DEFAULT_MIN_AUROC_LOWER = 0.6  # lower end of the AUROC's 95 % interval a validated finding needs
FLOOR_STEP = 0.005
MAX_FLOOR = 0.995
PRIOR_STRENGTH = 2.0  # weight of the prior a = 1, in "images"
OOD_PERCENTILE = 99.5
OOD_MARGIN = 1.25  # the threshold sits this factor above the validation percentile
ECE_BINS = 10
BOOTSTRAP = 1000


# -- calibration ---------------------------------------------------------------------------------

MIN_SCALE, MAX_SCALE = 0.05, 20.0  # the map stays increasing: calibration never reorders images


def fit_platt(raw: np.ndarray, y: np.ndarray, *, prior: float = PRIOR_STRENGTH) -> tuple[float, float]:
    """(scale, bias) on the logit maximising the smoothed-target likelihood plus a prior on scale.

    Newton steps are damped (halved until the objective decreases) and the scale is kept inside
    [MIN_SCALE, MAX_SCALE] while iterating, not clipped afterwards: a finding whose validation
    scores run the wrong way wants a negative scale, and undamped steps towards it once sent the
    bias to -1e12, which made every calibrated output 0 (a constant: AUROC 0.5, no operating point).
    """
    z = logit(raw)
    y = np.asarray(y, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    # Platt (1999): targets (N+ + 1)/(N+ + 2) and 1/(N- + 2) instead of 1 and 0, so a set
    # without positives (or negatives) still has a finite, sensible optimum.
    t = np.where(y > 0, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))

    def objective(a: float, b: float) -> float:
        u = a * z + b  # cross-entropy written with logaddexp: finite for any u
        return float(np.sum(t * np.logaddexp(0.0, -u) + (1 - t) * np.logaddexp(0.0, u))
                     + 0.5 * prior * (a - 1.0) ** 2)

    a, b = 1.0, float(logit(np.clip((n_pos + 1) / (len(y) + 2), 1e-4, 1 - 1e-4)) - np.mean(z))
    current = objective(a, b)
    for _ in range(100):  # damped Newton on a 2-parameter convex problem
        p = sigmoid(a * z + b)
        r = p - t
        w = p * (1 - p)
        g = np.array([np.dot(r, z) + prior * (a - 1.0), r.sum()])
        h = np.array([[np.dot(w, z * z) + prior, np.dot(w, z)], [np.dot(w, z), w.sum() + 1e-9]])
        try:
            step = np.linalg.solve(h, g)
        except np.linalg.LinAlgError:
            break
        pushing_out = (a <= MIN_SCALE and step[0] > 0) or (a >= MAX_SCALE and step[0] < 0)
        if pushing_out:  # the scale sits on its bound: optimise the bias alone
            step = np.array([0.0, g[1] / h[1, 1]])
        size, moved = 1.0, False
        for _ in range(40):
            a_new = float(np.clip(a - size * step[0], MIN_SCALE, MAX_SCALE))
            b_new = b - size * float(step[1])
            value = objective(a_new, b_new)
            if np.isfinite(value) and value <= current:
                moved = abs(a_new - a) + abs(b_new - b) > 1e-10
                a, b, current = a_new, b_new, value
                break
            size /= 2
        if not moved:
            break
    return a, b


def fit_calibration(raw: np.ndarray, Y: np.ndarray, M: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """The card's ``calibration`` block, fitted on validation outputs (N, L) with masks M."""
    per_label = {}
    for j, label in enumerate(labels):
        known = M[:, j] > 0
        if known.sum() == 0:
            continue
        a, b = fit_platt(raw[known, j], Y[known, j])
        per_label[label] = [round(a, 6), round(b, 6)]
    return {"method": "platt", "per_label": per_label, "fitted_on": "val"}


def reliability(probs: np.ndarray, Y: np.ndarray, M: np.ndarray, *, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error over all known (image, finding) pairs, and the bins behind it."""
    known = M > 0
    p, y = np.asarray(probs, dtype=np.float64)[known], np.asarray(Y, dtype=np.float64)[known]
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for k in range(bins):
        sel = index == k
        n = int(sel.sum())
        if n == 0:
            rows.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "n": 0,
                         "mean_probability": None, "observed": None})
            continue
        mean_p, observed = float(p[sel].mean()), float(y[sel].mean())
        ece += n / max(len(p), 1) * abs(mean_p - observed)
        rows.append({"lo": float(edges[k]), "hi": float(edges[k + 1]), "n": n,
                     "mean_probability": mean_p, "observed": observed})
    return {"ece": float(ece), "bins": rows, "n": len(p)}


# -- operating points ----------------------------------------------------------------------------

def wilson(successes: int, n: int, z: float = 1.959964) -> list[float] | None:
    """Wilson score 95 % interval of a proportion (None when n = 0)."""
    if n <= 0:
        return None
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


def rates_at(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, Any]:
    """Sensitivity and specificity at ``threshold`` with Wilson intervals and counts."""
    op = metrics.operating_point(y, s, threshold)
    n_pos, n_neg = op["tp"] + op["fn"], op["tn"] + op["fp"]
    return {"threshold": float(threshold),
            "sensitivity": op["recall"] if n_pos else None, "sensitivity_ci": wilson(op["tp"], n_pos),
            "specificity": op["specificity"] if n_neg else None, "specificity_ci": wilson(op["tn"], n_neg),
            "tp": op["tp"], "fp": op["fp"], "tn": op["tn"], "fn": op["fn"]}


def _auroc_with_ci(y: np.ndarray, s: np.ndarray) -> tuple[float | None, list[float] | None]:
    value = metrics.auroc(y, s) if len(y) else None
    if value is None:
        return None, None
    lo, hi = metrics.bootstrap_auroc_ci(y, s, n=BOOTSTRAP, seed=0)
    return value, [lo, hi]


def normal_rows(Y: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Images with every finding known and absent ("No Finding")."""
    rows: np.ndarray = (M > 0).all(axis=1) & (Y.sum(axis=1) == 0)
    return rows


def positives_on_normals(probs: np.ndarray, Y: np.ndarray, M: np.ndarray, labels: list[str],
                         thresholds: dict[str, float]) -> dict[str, Any]:
    """Mean positive calls per film with no finding, and the share of such films with none."""
    normals = normal_rows(Y, M)
    if not normals.any():
        return {"n_normals": 0, "positives_per_normal": None, "share_normals_with_none": None}
    calls = np.zeros(int(normals.sum()))
    for j, label in enumerate(labels):
        if label in thresholds:
            calls += probs[normals, j] >= thresholds[label]
    return {"n_normals": int(normals.sum()), "positives_per_normal": float(calls.mean()),
            "share_normals_with_none": float((calls == 0).mean())}


def _rule(rule: dict[str, Any] | None) -> dict[str, Any]:
    out = {"specificity_floor": DEFAULT_SPECIFICITY_FLOOR, "floors": {},
           "min_positives": DEFAULT_MIN_POSITIVES, "min_auroc_lower": DEFAULT_MIN_AUROC_LOWER,
           "max_normal_positives": None}
    out.update({k: v for k, v in (rule or {}).items() if v is not None})
    return out


def choose_operating_points(probs: np.ndarray, Y: np.ndarray, M: np.ndarray, labels: list[str],
                            rule: dict[str, Any] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """(thresholds of the validated findings, the card's ``evidence`` block) on validation data.

    ``probs`` are calibrated; ``rule`` may set ``specificity_floor`` (default 0.90),
    ``floors`` ({finding: floor}), ``min_positives`` (15), ``min_auroc_lower`` (0.6) and
    ``max_normal_positives``.
    """
    rule = _rule(rule)
    per_label: dict[str, dict[str, Any]] = {}
    candidates: list[int] = []
    for j, label in enumerate(labels):
        known = M[:, j] > 0
        y, s = Y[known, j].astype(np.int8), probs[known, j].astype(np.float64)
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        auroc, auroc_ci = _auroc_with_ci(y, s) if n_pos and n_neg else (None, None)
        floor = float(rule["floors"].get(label, rule["specificity_floor"]))
        entry: dict[str, Any] = {"validated": False, "reason": None, "n_pos": n_pos, "n_neg": n_neg,
                                 "auroc": auroc, "auroc_ci": auroc_ci, "threshold": None,
                                 "sensitivity": None, "sensitivity_ci": None, "specificity": None,
                                 "specificity_ci": None, "specificity_floor": floor}
        if n_pos < int(rule["min_positives"]):
            entry["reason"] = f"{n_pos} positives on validation (needs {int(rule['min_positives'])})"
        elif n_neg < int(rule["min_positives"]):
            entry["reason"] = f"{n_neg} negatives on validation (needs {int(rule['min_positives'])})"
        elif auroc_ci is None or auroc_ci[0] <= float(rule["min_auroc_lower"]):
            entry["reason"] = (f"AUROC {auroc:.2f} on validation, interval {auroc_ci[0]:.2f}–"
                               f"{auroc_ci[1]:.2f} reaches below {float(rule['min_auroc_lower']):.2f}"
                               if auroc is not None and auroc_ci else "no AUROC on validation")
        else:
            candidates.append(j)
        per_label[label] = entry

    def thresholds_for(common: float) -> dict[str, float]:
        chosen = {}
        for j in candidates:
            label = labels[j]
            floor = max(per_label[label]["specificity_floor"], common)
            known = M[:, j] > 0
            chosen[label] = float(metrics.choose_threshold(Y[known, j].astype(np.int8), probs[known, j],
                                                           method="specificity", target=floor))
        return chosen

    common = 0.0
    thresholds = thresholds_for(common)
    budget = rule["max_normal_positives"]
    if budget is not None and candidates:
        common = float(rule["specificity_floor"])
        while True:
            load = positives_on_normals(probs, Y, M, labels, thresholds)["positives_per_normal"]
            if load is None or load <= float(budget) or common >= MAX_FLOOR:
                break
            common = round(min(MAX_FLOOR, common + FLOOR_STEP), 6)
            thresholds = thresholds_for(common)
    for j in candidates:
        label = labels[j]
        known = M[:, j] > 0
        entry = per_label[label]
        entry["specificity_floor"] = max(entry["specificity_floor"], common)
        entry.update(rates_at(Y[known, j].astype(np.int8), probs[known, j], thresholds[label]))
        entry["validated"] = True
        for key in ("tp", "fp", "tn", "fn"):
            entry.pop(key, None)
    evidence = {"split": "val", "n_images": len(Y), "rule": {**rule, "common_floor": common or None},
                "per_label": per_label, **positives_on_normals(probs, Y, M, labels, thresholds)}
    return thresholds, evidence


def split_evidence(probs: np.ndarray, Y: np.ndarray, M: np.ndarray, labels: list[str],
                   thresholds: dict[str, float]) -> dict[str, Any]:
    """What the operating points do on another held-out split: rates with intervals, AUROC,
    over-calling on normal films and calibration error."""
    per_label = {}
    for j, label in enumerate(labels):
        known = M[:, j] > 0
        y, s = Y[known, j].astype(np.int8), probs[known, j].astype(np.float64)
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        auroc, auroc_ci = _auroc_with_ci(y, s) if n_pos and n_neg else (None, None)
        entry: dict[str, Any] = {"n_pos": n_pos, "n_neg": n_neg, "auroc": auroc, "auroc_ci": auroc_ci}
        if label in thresholds and len(y):
            entry.update({k: v for k, v in rates_at(y, s, thresholds[label]).items()
                          if k not in ("tp", "fp", "tn", "fn")})
        per_label[label] = entry
    return {"n_images": len(Y), "per_label": per_label,
            **positives_on_normals(probs, Y, M, labels, thresholds),
            "ece": reliability(probs, Y, M)["ece"]}


# -- out-of-distribution statistics --------------------------------------------------------------

def ood_block(train_features: np.ndarray, val_features: np.ndarray, *,
              percentile: float = OOD_PERCENTILE, margin: float = OOD_MARGIN) -> dict[str, Any]:
    """The card's ``ood`` block: training statistics and a threshold above the validation films."""
    from cxrview.inference.features import ood_scores

    mean = train_features.mean(axis=0)
    std = train_features.std(axis=0)
    std = np.maximum(std, 1e-3 * max(float(std.mean()), 1e-6))  # dead features must not explode z
    stats = {"mean": [round(float(v), 5) for v in mean], "std": [round(float(v), 5) for v in std]}
    val = ood_scores(stats, val_features)
    limit = float(np.percentile(val, percentile)) * margin
    return {"method": "rms-z of pooled features", **stats, "threshold": round(limit, 4),
            "fitted_on": {"statistics": "train", "threshold": "val", "n_train": len(train_features),
                          "n_val": len(val_features), "percentile": percentile, "margin": margin,
                          "val_median": round(float(np.median(val)), 4)}}

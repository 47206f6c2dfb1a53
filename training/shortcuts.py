"""Did the classifier learn the source instead of the chest? Two probes and per-source figures.

Mixing sources (NIH films labelled by text mining, RSNA's radiologist-labelled normals,
re-encoded at another size) helps only if the model reads anatomy: a model that
learns "RSNA-looking film ⇒ normal" would look good on validation and fail on the
next hospital. So, on the films with no finding of an evaluated split:

* **image probe**: a logistic regression on 32×32 thumbnails, cross-validated, tries
  to tell the sources apart from the pixels alone. A high AUROC says a shortcut is
  there to be learned (the sources *are* different images).
* **output probe**: the same regression on the classifier's 14 calibrated
  probabilities. If it cannot tell the sources apart (AUROC near 0.5) the model's
  answers do not depend on where a normal film came from; if it can, they do.
* **per source**: positive calls per normal film and the share with none.

Numpy only; deterministic folds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training import metrics
from training.baseline import fit_logistic, thumbnails

MIN_PER_SOURCE = 20
FOLDS = 5


def cross_validated_auroc(x: np.ndarray, y: np.ndarray, *, folds: int = FOLDS, seed: int = 0) -> float | None:
    """Out-of-fold AUROC of a class-balanced logistic regression (features standardised per fold)."""
    if y.min() == y.max():
        return None
    order = np.random.default_rng(seed).permutation(len(y))
    scores = np.zeros(len(y))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        xtr = np.c_[(x[train] - mean) / std, np.ones(len(train))]
        xte = np.c_[(x[test] - mean) / std, np.ones(len(test))]
        w = fit_logistic(xtr, y[train])
        scores[test] = xte @ w
    return metrics.auroc(y, scores)


def shortcut_report(sources: list[str], normal: np.ndarray, images: np.ndarray, probs: np.ndarray,
                    thresholds: dict[str, float], labels: list[str]) -> dict[str, Any] | None:
    """Probes on the normal films of the two largest sources with ≥ 20 of them, and per-source calls.

    ``normal``: boolean per image (every finding known absent); ``images``: the cached
    (N, H, W) uint8 model inputs; ``probs``: calibrated (N, L).
    """
    src = np.array(sources)
    per_source: dict[str, Any] = {}
    for name in sorted(set(sources)):
        rows = normal & (src == name)
        if not rows.any():
            continue
        calls = np.zeros(int(rows.sum()))
        for j, label in enumerate(labels):
            if label in thresholds:
                calls += probs[rows, j] >= thresholds[label]
        per_source[name] = {"n_normals": int(rows.sum()), "positives_per_normal": float(calls.mean()),
                            "share_with_none": float((calls == 0).mean())}
    big = sorted((v["n_normals"], k) for k, v in per_source.items() if v["n_normals"] >= MIN_PER_SOURCE)
    report: dict[str, Any] = {"per_source": per_source}
    if len(big) < 2:
        return report if per_source else None
    a, b = big[-1][1], big[-2][1]
    rows = normal & np.isin(src, [a, b])
    y = (src[rows] == a).astype(np.int8)
    report["probe"] = {
        "sources": [a, b], "n": int(rows.sum()),
        "image_auroc": cross_validated_auroc(thumbnails(images[rows]), y),
        "output_auroc": cross_validated_auroc(np.asarray(probs[rows], dtype=np.float64), y),
    }
    return report

"""Classification metrics on labelled samples, at a card's validated operating points.

The held-out reports (a split's metrics with their intervals, calibration error and shortcut
probes), the thumbnail baseline beside them, the confusion matrix of folder-per-class sets and
the images the model disagrees with most. Nothing here chooses a threshold: those come from the
validation split (``training.publishing``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cxrview.inference.card import ModelCard
from cxrview.inference.evidence import operating_points
from training import metrics
from training.datasets import XrayDataset
from training.sources import Sample


def stacked(samples: list[Sample], attr: str) -> np.ndarray:
    """One array of the samples' ``attr`` (``labels``, ``known``): a row per sample."""
    return np.stack([getattr(s, attr) for s in samples])


def calibrated_probs(card: ModelCard, raw: np.ndarray) -> np.ndarray:
    """The card's calibrated probabilities for raw network outputs (what people are shown)."""
    from cxrview.inference.evidence import calibrate

    return calibrate(card, raw)


def classification_report(
    labels: list[str], samples: list[Sample], probs: np.ndarray, thresholds: dict[str, float]
) -> dict[str, Any]:
    """Metrics at ``thresholds`` (the validated operating points; other findings get AUROC only),
    with the over-calling figures on films with no finding."""
    from training.evidence import positives_on_normals

    Y, M = stacked(samples, "labels"), stacked(samples, "known")
    report = metrics.summarize_multilabel(Y, probs, M, labels, thresholds=thresholds)
    report["n_images"] = len(samples)
    report["n_patients"] = len({s.patient for s in samples})
    report.update(commonest_mean(report["per_label"]))
    report.update(positives_on_normals(probs, Y, M, labels, thresholds))
    return report


def held_out_report(card: ModelCard, samples: list[Sample], raw: np.ndarray,
                    images: np.ndarray | None = None) -> dict[str, Any]:
    """A held-out split's report at the card's operating points, its ``evidence`` (rates with
    intervals) and calibration error; with the cached ``images``, the shortcut probes when the
    split mixes sources (``training.shortcuts``)."""
    from training.evidence import normal_rows, split_evidence
    from training.shortcuts import shortcut_report

    probs = calibrated_probs(card, raw)
    Y, M = stacked(samples, "labels"), stacked(samples, "known")
    report = classification_report(card.labels, samples, probs, operating_points(card))
    report["evidence"] = split_evidence(probs, Y, M, card.labels, operating_points(card))
    if images is not None and len({s.source for s in samples}) > 1:
        report["shortcuts"] = shortcut_report([s.source for s in samples], normal_rows(Y, M), images,
                                              probs, operating_points(card), card.labels)
    return report


def commonest_findings(per_label: dict[str, dict[str, Any]], k: int = 5, score: str = "auroc") -> list[str]:
    """The k findings with most positives among those that have a ``score`` (rare ones are noise)."""
    ranked = sorted((v["n_pos"], name) for name, v in per_label.items() if v[score] is not None)
    return [name for _, name in ranked[::-1][:k]]


def commonest_mean(per_label: dict[str, dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """Mean AUROC over the k findings with most positives in this set."""
    top = commonest_findings(per_label, k)
    values = [per_label[name]["auroc"] for name in top]
    return {f"commonest{k}": top, f"mean_auroc_commonest{k}": float(np.mean(values)) if values else None}


def baseline_report(labels: list[str], train: XrayDataset, images: np.ndarray,
                    samples: list[Sample]) -> dict[str, Any]:
    """Logistic regression on 32×32 thumbnails, fitted on the same training split."""
    from training.baseline import thumbnail_logistic_regression

    probs = thumbnail_logistic_regression(train.images, stacked(train.samples, "labels"),
                                          stacked(train.samples, "known"), images)
    per = metrics.per_label_auroc(stacked(samples, "labels"), probs, stacked(samples, "known"), labels)
    values = [v["auroc"] for v in per.values() if v["auroc"] is not None]
    return {"method": "logistic regression on 32x32 thumbnails (same training split)",
            "mean_auroc": float(np.mean(values)) if values else None, "per_label": per,
            **commonest_mean(per)}


def roc_curves(labels: list[str], samples: list[Sample],
               probs: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{label: (fpr, tpr, auroc)} of ``probs`` against the samples' labels (for the ROC plot)."""
    return metrics.per_label_roc_curves(stacked(samples, "labels"), probs, stacked(samples, "known"), labels)


def image_top_losses(samples: list[Sample], probs: np.ndarray, k: int = 10) -> list[dict[str, Any]]:
    """The images the model disagrees with most (masked BCE per image): often label errors."""
    Y, M = stacked(samples, "labels"), stacked(samples, "known")
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    bce = -(Y * np.log(p) + (1 - Y) * np.log(1 - p)) * M
    losses = bce.sum(1) / np.maximum(M.sum(1), 1)
    return [{"path": path, "loss": loss}
            for path, loss in metrics.top_losses(losses, [s.path for s in samples], k=k)]


def single_label_report(card: ModelCard, samples: list[Sample], probs: np.ndarray,
                        mappings: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Confusion matrix for folder-per-class sets: each image belongs to exactly one class.

    A class is predicted from the labels its folder maps to: the positive class whose
    best label probability (calibrated) is highest, if that label passes its validated
    operating point; otherwise the "normal" class (mapped with ``"*": 0``), when the set has one.
    """
    classes = sorted({s.group for s in samples if s.group})
    normal = next((c for c in classes if mappings.get(c, {}).get("*") == 0), None)
    positive = {c: [card.labels.index(lab) for lab, v in mappings.get(c, {}).items()
                    if v == 1 and lab in card.labels] for c in classes}
    predicted: list[str | None] = []
    for row in probs:
        best, best_score, passes = normal, -1.0, False
        for c, idx in positive.items():
            for j in idx:
                if row[j] > best_score:
                    best, best_score = c, float(row[j])
                    threshold = card.threshold(card.labels[j])
                    passes = threshold is not None and row[j] >= threshold
        predicted.append(best if passes or normal is None else normal)
    index: dict[str | None, int] = {c: i for i, c in enumerate(classes)}
    cm = metrics.confusion_matrix([index[s.group] for s in samples],
                                  [index[p] if p in index else index[classes[0]] for p in predicted],
                                  len(classes))
    return {"classes": classes, "confusion_matrix": cm.tolist(),
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "most_confused": [list(t) for t in metrics.most_confused(cm, classes, k=5)]}

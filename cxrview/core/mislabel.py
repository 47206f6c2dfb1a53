"""Triage and "most likely mislabelled first" scores from stored model predictions.

* Triage score: the highest probability among the model's *validated* findings (those
  with an operating point; a not-validated finding's number ranks nothing). None when
  the model has none.
* Mislabel score: how badly the current labels (human decision, else dataset)
  disagree with an out-of-sample model probability, from cleanlab's
  multi-label label-quality scores (``1 - quality``; per finding,
  self-confidence: the probability the model gives to the label as it
  stands). The finding with the lowest per-finding quality is the suspect,
  shown as e.g. "labelled Pneumothorax, model 0.03".

Only out-of-sample predictions (the model did not train on that image's
patient) give a mislabel score: a model that saw the label during training
agrees with it, right or wrong. In-sample images keep their triage score.
Uncertain labels are left out of the disagreement (they already ask for review).

Probabilities are first centred on each finding's operating threshold
(piecewise linear, threshold → 0.5): models trained with class weights are
not calibrated (a rare finding's 0.9 may be below its threshold), and
label quality must be judged against what the model actually decides.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cxrview.core.findings import ABSENT, NIH_FINDINGS, PRESENT
from cxrview.core.workspace import ImageRecord, Workspace

THRESHOLDS_META = "score_thresholds:"  # + model identity: the operating points its scores used


def label_quality(labels: list[list[int]], probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-image quality (N,), per-finding quality (N, K)) in [0, 1]; lower = more likely wrong."""
    from cleanlab.multilabel_classification.rank import (
        get_label_quality_scores,
        get_label_quality_scores_per_class,
    )

    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-6, 1 - 1e-6)
    # cleanlab infers the class count from the labels and refuses a set where no image has any
    # positive label (e.g. a handful of normals). These scores are per image (self-confidence,
    # aggregated per row), so one sentinel row with every class present fixes the count without
    # changing any other row's score; it is dropped again.
    k = probs.shape[1]
    labels = [*labels, list(range(k))]
    probs = np.vstack([probs, np.full((1, k), 0.5)])
    per_image = get_label_quality_scores(labels, probs)[:-1]
    per_class = get_label_quality_scores_per_class(labels, probs)[:-1]
    return np.asarray(per_image, dtype=np.float64), np.asarray(per_class, dtype=np.float64)


def out_of_sample_flags(training: dict[str, Any] | None, records: list[ImageRecord]
                        ) -> dict[int, bool | None]:
    """Per image: did the model (its card's ``training`` section) neither train nor tune on
    this image's patient? None when the card records no split or the patient is unknown."""
    split = (training or {}).get("split_patients") or {}
    seen = set(split.get("train", [])) | set(split.get("val", []))
    return {r.id: None if not split or r.patient_id is None else f"nih:{r.patient_id}" not in seen
            for r in records}


def centre_on_thresholds(probs: np.ndarray, thresholds: list[float]) -> np.ndarray:
    """Monotone per-finding map with threshold → 0.5, 0 → 0 and 1 → 1."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.clip(np.asarray(thresholds, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.where(p < t, 0.5 * p / t, 0.5 + 0.5 * (p - t) / (1 - t))


def score_records(records: list[ImageRecord], probs: dict[int, list[float]],
                  out_of_sample: dict[int, bool | None], thresholds: dict[str, float]
                  ) -> dict[int, dict[str, Any]]:
    """Scores per image id for images with predictions (see module docstring).

    ``thresholds`` are the model's operating points, one per validated finding: only
    those findings rank (triage) and count as decisions (``disagreements``).
    """
    out: dict[int, dict[str, Any]] = {}
    labelled: list[ImageRecord] = []
    for record in records:
        p = probs.get(record.id)
        if p is None:
            continue
        ranked = [k for k, name in enumerate(NIH_FINDINGS) if name in thresholds]
        triage = max((float(p[k]) for k in ranked), default=None)
        decisions = 0
        for k in ranked:
            name = NIH_FINDINGS[k]
            current = record.current_value(name)
            if current in (PRESENT, ABSENT):
                decided = p[k] >= thresholds[name]
                decisions += int(decided != (current == PRESENT))
        out[record.id] = {"triage": triage, "mislabel": None, "finding": None, "label": None,
                          "probability": None, "disagreements": decisions}
        known = record.dataset_labelled or record.human_mask
        if known and out_of_sample.get(record.id) is not False:
            labelled.append(record)
    if not labelled:
        return out
    label_lists = [[k for k, name in enumerate(NIH_FINDINGS) if r.current_value(name) == PRESENT]
                   for r in labelled]
    matrix = np.array([probs[r.id] for r in labelled], dtype=np.float64)
    centred = centre_on_thresholds(matrix, [thresholds.get(name, 0.5) for name in NIH_FINDINGS])
    per_image, per_class = label_quality(label_lists, centred)
    for i, record in enumerate(labelled):
        k = int(np.argmin(per_class[i]))
        name = NIH_FINDINGS[k]
        out[record.id].update(mislabel=float(1.0 - per_image[i]), finding=name,
                              label=PRESENT if k in label_lists[i] else ABSENT,
                              probability=float(matrix[i, k]))
    return out


def rescore(ws: Workspace, model: str, thresholds: dict[str, float], image_ids: list[int] | None = None
            ) -> int:
    """Recompute and store the scores from ``model``'s stored predictions: of every image it predicted,
    or of ``image_ids`` only (an image's scores depend on its own prediction and labels alone, so
    rescoring a few equals rescoring all for those). Returns how many images were scored."""
    stored = ws.predictions_for(model, image_ids)
    if not stored:
        return 0
    ids = sorted(stored)
    records = ws.images(ids)
    scores = score_records(records, {i: p for i, (p, _) in stored.items()},
                           {i: oos for i, (_, oos) in stored.items()}, thresholds)
    ws.store_scores(model, scores)
    kept = json.dumps(thresholds, sort_keys=True)  # for refresh_scores; written only when it changes
    if ws.meta(THRESHOLDS_META + model) != kept:
        ws.set_meta(THRESHOLDS_META + model, kept)
    return len(scores)


def refresh_scores(ws: Workspace, image_id: int) -> bool:
    """After an edit of ``image_id``'s labels: its scores (mislabel score, suspect) anew, from the
    predictions and operating points it was last scored with. False when it was never scored
    (or scored before the operating points were kept)."""
    record = ws.image(image_id)
    if record.scored_model is None:
        return False
    stored = ws.meta(THRESHOLDS_META + record.scored_model)
    if stored is None:
        return False
    return rescore(ws, record.scored_model, json.loads(stored), [image_id]) > 0

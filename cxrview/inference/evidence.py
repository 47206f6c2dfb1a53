"""From a classifier's raw outputs to what each finding row may say.

Three rules, all read from the model card so that any bundle (shipped,
recalibrated, fine-tuned) behaves the same:

* **Calibrated probabilities.** Networks trained with class weights rate a
  rare finding's 0.3 as "high". ``card.calibration`` (fitted on the
  validation split by ``training.evidence``) maps the raw sigmoid output to a
  probability that means what it says; that is the number people see.
* **Validated or not.** A finding is called positive only at an operating
  point chosen on data the model never trained on, from enough positives to
  mean something (``card.evidence``). Without that evidence it is "not
  validated": its probability is shown greyed and it is never positive.
* **Evidence travels with the call.** Each finding carries the operating
  point's sensitivity and specificity with their intervals, the AUROC and
  the number of validation positives, so the reader can judge it.

Numpy only (no torch, no Qt): the CLI, the GUI and training share it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cxrview.inference.card import ModelCard

CALIBRATION_METHODS = ("platt",)
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(q / (1.0 - q))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def platt_parameters(calibration: dict[str, Any] | None, labels: list[str]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Per-label (scale, bias) on the logit, in label order; identity for labels without them."""
    per_label = (calibration or {}).get("per_label") or {}
    scale = np.array([float((per_label.get(name) or (1.0, 0.0))[0]) for name in labels])
    bias = np.array([float((per_label.get(name) or (1.0, 0.0))[1]) for name in labels])
    return scale, bias


def check_calibration(calibration: dict[str, Any] | None, labels: list[str]) -> None:
    """Raise ValueError for a calibration block this code cannot apply (used by ModelCard)."""
    if not calibration:
        return
    method = calibration.get("method")
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r} (known: {', '.join(CALIBRATION_METHODS)})")
    for name, pair in (calibration.get("per_label") or {}).items():
        if name not in labels:
            raise ValueError(f"calibration for unknown label {name!r}")
        if len(pair) != 2 or not all(np.isfinite(float(v)) for v in pair) or float(pair[0]) <= 0:
            raise ValueError(f"calibration of {name!r} must be [scale > 0, bias], got {pair!r}")


def apply_calibration(calibration: dict[str, Any] | None, labels: list[str], raw: np.ndarray) -> np.ndarray:
    """Calibrated probabilities from raw sigmoid outputs, shape (..., n_labels), float32.

    Monotone per label (scale > 0), so AUROCs are unchanged and an operating
    point moves with the probabilities. ``calibration=None``: the raw outputs.
    """
    raw = np.asarray(raw, dtype=np.float64)
    if not calibration:
        return raw.astype(np.float32)
    scale, bias = platt_parameters(calibration, labels)
    return sigmoid(scale * logit(raw) + bias).astype(np.float32)


def calibrate(card: ModelCard, raw: np.ndarray) -> np.ndarray:
    """:func:`apply_calibration` with the card's block (what people are shown)."""
    return apply_calibration(card.calibration, card.labels, raw)


def _rounded(value: Any, digits: int = 4) -> Any:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_rounded(v, digits) for v in value]
    return round(float(value), digits)


def not_validated_note(card: ModelCard, label: str) -> str:
    entry = (card.evidence.get("per_label") or {}).get(label) or {}
    if not card.evidence:
        return "not validated: the model card records no validation evidence"
    reason = entry.get("reason") or "no operating point on the validation split"
    return f"not validated: {reason}"


def finding_entry(card: ModelCard, label: str, probability: float) -> dict[str, Any]:
    """One finding of ``Prediction.findings`` (the JSON schema of ``cxrview predict``)."""
    entry = (card.evidence.get("per_label") or {}).get(label) or {}
    threshold = card.threshold(label)
    validated = threshold is not None
    return {
        "probability": round(float(probability), 4),
        "validated": validated,
        "positive": bool(threshold is not None and probability >= threshold),
        "threshold": _rounded(threshold),
        "sensitivity": _rounded(entry.get("sensitivity")) if validated else None,
        "sensitivity_ci": _rounded(entry.get("sensitivity_ci")) if validated else None,
        "specificity": _rounded(entry.get("specificity")) if validated else None,
        "specificity_ci": _rounded(entry.get("specificity_ci")) if validated else None,
        "auroc": _rounded(entry.get("auroc")),
        "auroc_ci": _rounded(entry.get("auroc_ci")),
        "n_positives": int(entry.get("n_pos") or 0),
        "note": "" if validated else not_validated_note(card, label),
    }


def findings_from_probabilities(card: ModelCard, calibrated: np.ndarray) -> dict[str, dict[str, Any]]:
    """``{label: finding_entry}`` for one image's calibrated probabilities (label order)."""
    values = np.asarray(calibrated, dtype=np.float64).reshape(-1)
    if values.shape[0] != len(card.labels):
        raise ValueError(f"{values.shape[0]} probabilities for {len(card.labels)} labels")
    return {label: finding_entry(card, label, float(values[i])) for i, label in enumerate(card.labels)}


def validated_labels(card: ModelCard) -> list[str]:
    return [label for label in card.labels if card.is_validated(label)]


def operating_points(card: ModelCard) -> dict[str, float]:
    """``{finding: threshold}`` for the validated findings only (what may be called positive)."""
    return {label: float(card.thresholds[label]) for label in validated_labels(card)}

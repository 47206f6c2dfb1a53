"""Model-card evidence for test bundles: which findings count as validated."""

from __future__ import annotations

from typing import Any


def evidence_for(labels: list[str], validated: list[str], *, n_pos: int = 20) -> dict[str, Any]:
    """A card ``evidence`` block in which exactly ``validated`` have operating points."""
    per_label = {}
    for label in labels:
        ok = label in validated
        per_label[label] = {"validated": ok, "reason": None if ok else "3 positives on validation (needs 15)",
                            "n_pos": n_pos if ok else 3, "n_neg": 100, "auroc": 0.8, "auroc_ci": [0.7, 0.9],
                            "sensitivity": 0.6 if ok else None, "sensitivity_ci": [0.4, 0.8] if ok else None,
                            "specificity": 0.9 if ok else None,
                            "specificity_ci": [0.85, 0.94] if ok else None,
                            "specificity_floor": 0.9}
    return {"split": "val", "n_images": 120, "rule": {"specificity_floor": 0.9, "min_positives": 15},
            "per_label": per_label}

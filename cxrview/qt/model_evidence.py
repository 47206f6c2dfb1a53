"""A model card's validation evidence as text, for Model › Models… (and anything else that
shows a bundle's trustworthiness).

Reads ``card.json`` as plain JSON rather than through ``ModelCard`` so an older or newer
card still shows what it has. ``evidence`` (card format 2) says, per finding, whether
there was enough validation evidence to give it an operating point; a card without it
has every finding shown as not validated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NO_EVIDENCE = "No validation evidence recorded: every finding is shown as not validated"


def read_card_json(bundle: Any) -> dict[str, Any]:
    """A bundle's card.json as plain JSON (tolerant of fields this version does not know)."""
    with open(Path(bundle) / "card.json", encoding="utf-8") as handle:
        card = json.load(handle)
    if not isinstance(card, dict):
        raise ValueError("card.json does not hold an object")
    return card


def _num(value: Any, ci: Any = None) -> str:
    """``0.88 [0.84, 0.91]``; ``—`` when unknown."""
    if value is None:
        return "—"
    text = f"{float(value):.2f}"
    if ci and len(ci) == 2 and ci[0] is not None and ci[1] is not None:
        text += f" [{float(ci[0]):.2f}, {float(ci[1]):.2f}]"
    return text


def evidence_lines(card: dict[str, Any]) -> list[str]:
    """The model card's validation evidence as fixed-width text: the rule, the calibration and
    one row per finding (validated?, positives, AUROC, sensitivity and specificity, 95% CIs)."""
    evidence = card.get("evidence") or {}
    per_label: dict[str, dict[str, Any]] = evidence.get("per_label") or {}
    if not per_label:
        return ["Validation evidence:", NO_EVIDENCE]
    n_images, n_normals = evidence.get("n_images"), evidence.get("n_normals")
    split = f"split {evidence.get('split', '?')}"
    if n_images is not None:
        split += f", {n_images} images"
    if n_normals is not None:
        split += f" ({n_normals} with no finding)"
    lines = [f"Validation evidence ({split}):"]
    rule = dict(evidence.get("rule") or {})
    parts = []
    if rule.get("min_positives") is not None:
        parts.append(f"validated with ≥ {rule.pop('min_positives')} positives")
    if rule.get("specificity_floor") is not None:
        parts.append(f"operating point at specificity ≥ {float(rule.pop('specificity_floor')):.2f}")
    parts += [f"{k} {v}" for k, v in rule.items()]
    if parts:
        lines.append("rule: " + "; ".join(parts))
    calibration = evidence.get("calibration") or card.get("calibration") or {}
    if isinstance(calibration, dict) and calibration.get("method"):
        text = f"calibration: {calibration['method']}"
        if calibration.get("ece_raw") is not None and calibration.get("ece") is not None:
            text += f" (ECE {float(calibration['ece_raw']):.3f} raw → {float(calibration['ece']):.3f})"
        lines.append(text)
    else:
        lines.append("calibration: none (raw model outputs)")
    normal = evidence.get("positives_per_normal")
    if normal is not None:
        lines.append(f"films with no finding: {float(normal):.2f} positive findings per image on average")
    for key, title in (("test", "held-out test split"), ("reserved_nih", "reserved NIH patients")):
        held = evidence.get(key) or {}
        if held.get("n_images"):
            text = f"{title} ({held['n_images']} images)"
            if held.get("positives_per_normal") is not None:
                text += (f": {float(held['positives_per_normal']):.2f} positive findings per film with no "
                         f"finding ({held.get('n_normals')} films)")
            if held.get("ece") is not None:
                text += f"; ECE {float(held['ece']):.3f}"
            lines.append(text)
    width = max(22, *(len(n) for n in per_label))
    lines.append(f"{'finding':{width}s} {'valid':5s} {'n+':>4s} {'n−':>5s}  {'AUROC [95% CI]':19s}  "
                 f"{'sensitivity [CI]':19s}  {'specificity [CI]':19s}  {'thr':>4s}")
    n_validated = 0
    for name, e in per_label.items():
        validated = bool(e.get("validated"))
        n_validated += validated
        threshold = e.get("threshold")
        row = (f"{name:{width}s} {'yes' if validated else 'no':5s} {int(e.get('n_pos') or 0):4d} "
               f"{int(e.get('n_neg') or 0):5d}  {_num(e.get('auroc'), e.get('auroc_ci')):19s}  ")
        if validated:
            row += (f"{_num(e.get('sensitivity'), e.get('sensitivity_ci')):19s}  "
                    f"{_num(e.get('specificity'), e.get('specificity_ci')):19s}  "
                    f"{f'{float(threshold):.2f}' if threshold is not None else '—':>4s}")
        else:  # no operating point: the reason where its numbers would be
            row += f"not validated: {e.get('reason') or 'too little evidence'}"
        lines.append(row.rstrip())
    lines.append(f"{n_validated} of {len(per_label)} findings validated; the others are never shown "
                 "as positive.")
    return lines

"""What of a prediction people get to see: the gate between the models and the reader.

A prediction is always computed in full (and cached in full), so that "Show AI
output anyway" needs no second run. What leaves the process — the CLI's
output, the findings dock, the overlays, batch triage — goes through
:func:`presented`: when the input check withheld the film (not a frontal
adult chest radiograph, see ``validity``), findings, boxes, contours, the
CTR and the thorax outline are removed unless the caller was asked to force
them. The reasons always stay.

Not-validated findings (too few positives on the model's validation split
for an operating point to mean anything) are never positive, whatever the
probability; that rule is applied where the findings are built
(``evidence.findings_from_probabilities``) and checked again here, so a
hand-edited or old cache entry cannot smuggle a positive through.
"""

from __future__ import annotations

from typing import Any

WITHHELD_KEYS = ("findings", "boxes", "masks", "ctr", "thorax")


def is_withheld(data: dict[str, Any]) -> bool:
    """True when the input check says the AI output must not be shown by default."""
    validity = data.get("validity") or {}
    return bool(data.get("withheld", validity.get("withheld", False)))


def withheld_reasons(data: dict[str, Any]) -> list[str]:
    validity = data.get("validity") or {}
    return [str(r) for r in (validity.get("reasons") or [])]


def presented(data: dict[str, Any], *, force: bool = False) -> dict[str, Any]:
    """A copy of ``Prediction.to_dict()`` output as it may be shown.

    Always carries ``withheld`` (bool) and ``forced`` (bool: output shown although
    withheld). Withheld and not forced: ``findings`` {}, ``boxes`` [], ``masks`` {},
    ``ctr`` None, ``thorax`` None.
    """
    out = dict(data)
    withheld = is_withheld(data)
    out["withheld"] = withheld
    out["forced"] = bool(withheld and force)
    if withheld and not force:
        out.update(findings={}, boxes=[], masks={}, ctr=None, thorax=None)
        return out
    findings = {}
    for name, f in (data.get("findings") or {}).items():
        f = dict(f)
        if not f.get("validated", False):
            f["positive"] = False
        findings[name] = f
    out["findings"] = findings
    return out


def positive_findings(data: dict[str, Any]) -> list[str]:
    """Validated findings above their operating point, in the model's label order."""
    return [name for name, f in (data.get("findings") or {}).items()
            if f.get("validated", False) and f.get("positive", False)]

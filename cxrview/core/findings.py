"""The vocabulary of review: NIH findings, tri-state label values, review states, reason codes."""

from __future__ import annotations

NIH_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Effusion", "Emphysema", "Fibrosis",
    "Hernia", "Infiltration", "Mass", "Nodule", "Pleural_Thickening", "Pneumonia", "Pneumothorax",
)
FINDING_BIT = {name: 1 << i for i, name in enumerate(NIH_FINDINGS)}
NO_FINDING = "No Finding"
NIH_BOX_FRAME = 1024  # BBox_List coordinates are pixels of NIH's 1024 × 1024 PNGs, whatever the local size

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
LABEL_VALUES = (PRESENT, ABSENT, UNCERTAIN)

UNREVIEWED, CONFIRMED, CORRECTED, FLAGGED = "unreviewed", "confirmed", "corrected", "flagged"
REVIEW_STATES = (UNREVIEWED, CONFIRMED, CORRECTED, FLAGGED)

# Why a human decision differs from the dataset label (stored as the key).
REASON_CODES = {
    "not_visible": "not visible on the image",
    "report_only": "report-only finding",
    "support_device": "support device, not disease",
    "poor_quality": "poor image quality",
    "lateral_view": "lateral view",
    "missed": "visible but not labelled",
    "other": "other (see note)",
}


def mask_of(findings: list[str] | tuple[str, ...] | set[str]) -> int:
    """Bit mask of known findings (unknown names are ignored)."""
    mask = 0
    for name in findings:
        mask |= FINDING_BIT.get(name, 0)
    return mask


def findings_of(mask: int) -> list[str]:
    return [name for name in NIH_FINDINGS if mask & FINDING_BIT[name]]


def parse_finding_labels(text: str) -> list[str]:
    """NIH ``Finding Labels`` ("Effusion|Mass" or "No Finding") → finding names."""
    text = (text or "").strip()
    if not text or text == NO_FINDING:
        return []
    return [part.strip() for part in text.split("|") if part.strip() and part.strip() != NO_FINDING]


def format_finding_labels(findings: list[str]) -> str:
    """Finding names → NIH ``Finding Labels`` (NIH order, "No Finding" when empty)."""
    ordered = [name for name in NIH_FINDINGS if name in findings]
    return "|".join(ordered) if ordered else NO_FINDING

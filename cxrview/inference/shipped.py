"""Where the shipped default bundles live (``resources/models/<name>``), no set-up needed."""

from __future__ import annotations

import os
from pathlib import Path

CLASSIFIER = "classifier"
SEGMENTER = "segmenter"


def models_root() -> Path:
    """``$CXRVIEW_MODELS`` if set, else ``resources/models`` of this checkout/installation."""
    override = os.environ.get("CXRVIEW_MODELS")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "resources" / "models"


def shipped_bundle(name: str) -> Path:
    return models_root() / name


PREVIOUS = "previous"


def previous_bundles(name: str) -> list[Path]:
    """Earlier shipped versions kept for rollback: ``<models root>/previous/<name>-<version>/``."""
    folder = models_root() / PREVIOUS
    return sorted(p for p in folder.glob(f"{name}-*") if p.is_dir()) if folder.is_dir() else []

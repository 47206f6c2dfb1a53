"""The model card: the contract between a bundle's weights, training and the app.

A bundle is a folder holding ``card.json`` and the weights in safetensors.
Everything that decides how an image becomes a tensor (input size, channels,
normalisation) lives here, so training and inference cannot disagree
(torchxrayvision #89 shows what happens when they do). This module imports
neither torch nor Qt: the GUI and the CLI read cards without loading models.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FORMAT = 2  # 2: calibration, evidence (validated operating points) and ood statistics
TASKS = ("multilabel-classification", "segmentation")


class BundleError(Exception):
    """A bundle that cannot be used: message says which file and why."""


@dataclass(frozen=True)
class Normalization:
    """Applied to display-ready grey pixels in [0, 1]: (x - mean) / std."""

    mean: float = 0.5
    std: float = 0.25
    # Per-image contrast stretch between these percentiles before mean/std, or None.
    # Makes a model indifferent to how washed-out a source's images are (JSRT vs NIH).
    stretch_percentiles: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError("normalization std must be positive")
        if self.stretch_percentiles is not None:
            lo, hi = self.stretch_percentiles
            if not 0 <= lo < hi <= 100:
                raise ValueError("stretch_percentiles must satisfy 0 <= low < high <= 100")
            object.__setattr__(self, "stretch_percentiles", (float(lo), float(hi)))


@dataclass
class ModelCard:
    name: str
    version: str
    task: str
    architecture: str
    labels: list[str]
    input_size: int
    channels: int = 1
    architecture_args: dict[str, Any] = field(default_factory=dict)
    normalization: Normalization = field(default_factory=Normalization)
    thresholds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    weights_file: str = WEIGHTS_FILE
    # Storage precision of floating tensors; float16 halves the bundle, the model runs in float32.
    weights_dtype: str = "float32"
    weights_sha256: str = ""
    parent_version: str | None = None
    # Maps raw sigmoid outputs to calibrated probabilities (``evidence.calibrate``); None = identity.
    calibration: dict[str, Any] | None = None
    # Validation evidence per finding (training.evidence): which findings are validated, their
    # operating points and intervals. Empty (old cards): every finding is "not validated".
    evidence: dict[str, Any] = field(default_factory=dict)
    # Feature statistics for the out-of-distribution score (``validity``); None = not available.
    ood: dict[str, Any] | None = None
    # The classifier reads a square crop around the segmenter's lungs and heart instead of the
    # whole film: {"method": "thorax", "margin": 0.08, "segmenter": {...}}; None = whole film.
    crop: dict[str, Any] | None = None
    format: int = CARD_FORMAT

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be a non-empty list of distinct names")
        if not (8 <= int(self.input_size) <= 4096):
            raise ValueError(f"input_size {self.input_size} out of range")
        if self.weights_dtype not in ("float32", "float16"):
            raise ValueError(f"weights_dtype must be float32 or float16, got {self.weights_dtype!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        unknown = set(self.thresholds) - set(self.labels)
        if unknown:
            raise ValueError(f"thresholds for unknown labels: {sorted(unknown)}")
        if any(not 0.0 <= t <= 1.0 for t in self.thresholds.values()):
            raise ValueError("thresholds must be probabilities in [0, 1]")
        from cxrview.inference.evidence import check_calibration

        check_calibration(self.calibration, self.labels)
        if self.crop is not None and self.crop.get("method") != "thorax":
            raise ValueError(f"unknown crop method {self.crop.get('method')!r} (known: thorax)")

    def is_validated(self, label: str) -> bool:
        """Enough validation evidence for this finding to be called positive (card evidence)."""
        entry = (self.evidence.get("per_label") or {}).get(label) or {}
        return bool(entry.get("validated", False)) and label in self.thresholds

    def threshold(self, label: str) -> float | None:
        """The operating point (calibrated probability) of a validated finding, else None."""
        return float(self.thresholds[label]) if self.is_validated(label) else None

    def decision_digest(self) -> str:
        """Hash of everything in the card that changes what a prediction says (not the weights):
        a recalibrated card keeps the weights' sha256 but must not reuse cached decisions (the
        findings carry the evidence too)."""
        import hashlib

        parts = {k: getattr(self, k) for k in ("labels", "input_size", "channels", "thresholds",
                                                "calibration", "ood", "evidence", "crop")}
        parts["normalization"] = asdict(self.normalization)
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "format": CARD_FORMAT}  # what this code writes is the current format

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        data = dict(data)
        if int(data.get("format", CARD_FORMAT)) > CARD_FORMAT:
            raise ValueError(f"card format {data['format']} is newer than this cxrview supports")
        norm = data.pop("normalization", None) or {}
        known = set(cls.__dataclass_fields__)
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown card fields: {sorted(extra)}")
        return cls(normalization=Normalization(**norm), **data)

    @classmethod
    def read(cls, bundle_dir: str | os.PathLike[str]) -> ModelCard:
        path = Path(bundle_dir) / CARD_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise BundleError(f"{path}: model card not found (is this a model folder?)") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{path}: unreadable model card ({exc})") from exc
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{path}: invalid model card ({exc})") from exc

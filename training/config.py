"""Run configuration: one dataclass, filled from a JSON file and/or command-line flags."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training.sources import NIH_FINDINGS, SEGMENTATION_STRUCTURES

CLASSIFICATION = "multilabel-classification"
SEGMENTATION = "segmentation"


@dataclass
class TrainConfig:
    """Everything that defines a run; saved as ``config.json`` in the run folder."""

    task: str = CLASSIFICATION
    architecture: str = "resnet18"
    architecture_args: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    # Each source: {"type": "nih", "images": [dirs], "data_entry": csv}
    #            | {"type": "folders", "root": dir, "mapping": {class: {label: 0/1}}}
    #            | {"type": "masks", "images": dir, "masks": dir}
    sources: list[dict[str, Any]] = field(default_factory=list)
    input_size: int = 224
    sizes: list[int] = field(default_factory=list)  # progressive resizing, e.g. [64, 128, 224]
    channels: int = 1
    normalization: dict[str, Any] = field(default_factory=lambda: {"mean": 0.5, "std": 0.25})
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "one-cycle"  # or "constant"
    freeze_blocks: int = 0
    unfreeze_epoch: int | None = None  # epoch (0-based) at which frozen blocks thaw
    imbalance: str = "pos_weight"  # "pos_weight" | "sampler" | "none"
    # Each epoch draws these shares of its images from the named sources (with replacement;
    # other sources share the rest by size), e.g. {"rsna-normal": 0.35}: thousands of extra
    # normal films must not drown the few hundred positives. epoch_size: draws per epoch.
    source_mix: dict[str, float] = field(default_factory=dict)
    epoch_size: int | None = None
    augment: bool | str = True  # True/"mild", "robust" (+ scanner/processing variety), False
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    # Patient split seed; None = ``seed``. A second ensemble member keeps the first one's split
    # (so its test patients stay unseen) while drawing a different initialisation and data order.
    split_seed: int | None = None
    # Keep another model's patient split (its card.json, or a split.json) for the patients it
    # names; only new patients are split by the fractions (paired comparisons with that model).
    split_from: str | None = None
    # Classifiers: read the thorax square found by this segmenter bundle instead of the whole
    # film ({"segmenter": "resources/models/segmenter", "margin": 0.08}); None = whole film.
    crop: dict[str, Any] | None = None
    patience: int | None = None  # early stopping: epochs without val-loss improvement
    device: str = "auto"
    amp: bool = True  # mixed precision, used on CUDA only
    out: str = "runs/latest"
    resume: bool = False
    weights: str | None = None  # a .safetensors file or a bundle folder to start from
    weights_member: int | None = None  # start from this member of an ensemble bundle
    name: str = "cxrview-model"
    version: str = "0.1.0"
    # Superseded by the evidence rule below (kept so saved configs and cards still load).
    threshold_method: str = "youden"
    target_sensitivity: float = 0.9
    # Operating points (training.evidence): a finding is validated with at least min_positives
    # validation positives and an AUROC interval above min_auroc_lower; its threshold reaches
    # specificity_floor (per finding in specificity_floors) on validation; with
    # max_normal_positives the common floor rises until validation's normal films get at most
    # that many positive calls on average.
    specificity_floor: float = 0.90
    specificity_floors: dict[str, float] = field(default_factory=dict)
    min_positives: int = 15
    min_auroc_lower: float = 0.6
    max_normal_positives: float | None = None
    max_minutes: float | None = None  # wall-clock budget; stops cleanly after an epoch
    limit: int | None = None  # use only the first N samples (smoke tests)
    num_workers: int = 0
    cache_dir: str | None = None
    log_every: int = 10  # steps between "step" events
    weights_dtype: str = "float32"  # bundle storage precision ("float16" halves shipped bundles)
    evaluate_reserved: bool = False  # final, one-off metrics on reserved NIH patients

    def __post_init__(self) -> None:
        if self.task not in (CLASSIFICATION, SEGMENTATION):
            raise ValueError(f"task must be {CLASSIFICATION!r} or {SEGMENTATION!r}")
        if (self.task == SEGMENTATION) != (self.architecture == "unet"):
            raise ValueError(f"architecture {self.architecture!r} does not fit task {self.task!r} "
                             "(segmentation uses unet; classification the others)")
        if not self.labels:
            self.labels = list(NIH_FINDINGS if self.task == CLASSIFICATION else SEGMENTATION_STRUCTURES)
        if not self.sizes:
            self.sizes = [self.input_size]
        if self.sizes[-1] != self.input_size:
            raise ValueError("the last progressive size must equal input_size")
        if self.imbalance not in ("pos_weight", "sampler", "none"):
            raise ValueError("imbalance must be pos_weight, sampler or none")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if not 0 <= self.val_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise ValueError("split fractions must be in [0, 1)")
        if self.augment not in (True, False, "mild", "robust"):
            raise ValueError("augment must be true, false, \"mild\" or \"robust\"")
        floors = [self.specificity_floor, *self.specificity_floors.values()]
        if not all(0.0 < float(f) < 1.0 for f in floors):
            raise ValueError("specificity floors must be in (0, 1)")
        if self.min_positives < 1:
            raise ValueError("min_positives must be at least 1")

    def evidence_rule(self) -> dict[str, Any]:
        return {"specificity_floor": self.specificity_floor, "floors": dict(self.specificity_floors),
                "min_positives": self.min_positives, "min_auroc_lower": self.min_auroc_lower,
                "max_normal_positives": self.max_normal_positives}

    @property
    def effective_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    @property
    def run_dir(self) -> Path:
        return Path(self.out).expanduser()

    @property
    def cache_root(self) -> Path:
        """Where image caches go: ``cache_dir`` (shared between runs) or the run's own folder."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else self.run_dir / "cache"

    def size_for_epoch(self, epoch: int) -> int:
        """Progressive resizing: the epochs are shared evenly among the sizes, small first."""
        per = max(1, self.epochs // len(self.sizes))
        return self.sizes[min(epoch // per, len(self.sizes) - 1)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

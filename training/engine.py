"""The training loop: one code path for CPU, CUDA (AMP) and torchrun (DDP).

A run folder holds config.json, split.json, checkpoint.pt (resumable: model,
optimiser, scheduler, epoch, best score, early-stopping state) and, at the end,
the published bundle. Checkpoints are written atomically every epoch so a
cut-off run loses at most one epoch. Checkpoints are our own files and are read
back with ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cxrview.inference.architectures import feature_blocks
from cxrview.inference.card import ModelCard, Normalization
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.events import EventLog
from training.sources import (
    Sample,
    apply_split,
    folder_samples,
    list_samples,
    manifest_samples,
    mask_samples,
    nih_samples,
    patient_split,
)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_pref: str) -> DistInfo:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_nccl = device_pref in ("auto", "cuda") and torch.cuda.is_available()
    if use_nccl:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local)


def pick_training_device(pref: str, info: DistInfo) -> torch.device:
    from cxrview.inference.bundle import pick_device

    device = pick_device(pref)
    if device.type == "cuda" and info.world > 1:
        return torch.device("cuda", info.local_rank)
    return device


PATH_KEYS = ("images", "masks", "data_entry", "root", "path")


def _expanded(source: dict[str, Any]) -> dict[str, Any]:
    """``~`` in a source's paths means the home folder (configs are shared between machines)."""
    out = dict(source)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str):
            out[key] = os.path.expanduser(value)
        elif isinstance(value, list):
            out[key] = [os.path.expanduser(v) if isinstance(v, str) else v for v in value]
    return out


def collect_samples(config: TrainConfig, *, reserved_only: bool = False) -> list[Sample]:
    samples: list[Sample] = []
    for source in map(_expanded, config.sources):
        kind = source.get("type")
        first = len(samples)
        if kind == "nih":
            dirs = source["images"] if isinstance(source["images"], list) else [source["images"]]
            samples += nih_samples(dirs, source["data_entry"], config.labels,
                                   exclude_reserved=not reserved_only, only_reserved=reserved_only)
        elif kind == "masks" and source.get("reserved_every"):
            samples += mask_samples(source["images"], source["masks"], config.labels,
                                    source=source.get("name", "masks"),
                                    reserved_every=int(source["reserved_every"]), only_reserved=reserved_only)
        elif reserved_only:
            continue  # only NIH and position-reserved mask sets (Wingspan) have reserved images
        elif kind == "folders":
            samples += folder_samples(source["root"], config.labels, source["mapping"],
                                      source=source.get("name", "folders"),
                                      max_per_class=source.get("max_per_class"), seed=config.seed)
        elif kind == "manifest":
            samples += manifest_samples(source["path"], config.labels,
                                        include_uncertain=bool(source.get("include_uncertain", False)),
                                        reviewed_only=bool(source.get("reviewed_only", False)),
                                        exclude_reserved=bool(source.get("exclude_reserved", True)),
                                        replay=int(source.get("replay", 0) or 0), seed=config.seed)
        elif kind == "list":
            samples += list_samples(source["path"], config.labels, key=source.get("key", "train"),
                                    meaning=source.get("meaning"), source=source.get("name", "list"))
        elif kind == "masks":
            samples += mask_samples(source["images"], source["masks"], config.labels,
                                    source=source.get("name", "masks"))
        else:
            raise ValueError(f"unknown source type {kind!r}")
        if source.get("train_only"):
            for sample in samples[first:]:
                sample.train_only = True
    if config.limit:
        samples = samples[: config.limit]
    return samples


def make_card(config: TrainConfig) -> ModelCard:
    norm = dict(config.normalization)
    if norm.get("stretch_percentiles") is not None:
        norm["stretch_percentiles"] = tuple(norm["stretch_percentiles"])
    return ModelCard(name=config.name, version=config.version, task=config.task,
                     architecture=config.architecture, labels=list(config.labels),
                     input_size=config.input_size, channels=config.channels,
                     architecture_args=dict(config.architecture_args),
                     normalization=Normalization(**norm), weights_dtype=config.weights_dtype,
                     crop=crop_block(config))


def crop_block(config: TrainConfig) -> dict[str, Any] | None:
    """The card's ``crop`` block for ``config.crop`` ({"segmenter": bundle, "margin": 0.08})."""
    if not config.crop or config.task != CLASSIFICATION:
        return None
    from training.crops import crop_spec

    segmenter = os.path.expanduser(str(config.crop["segmenter"]))
    return crop_spec(segmenter, float(config.crop.get("margin", 0.08)))


def load_initial_weights(model: nn.Module, weights: str, log: EventLog, *, member: int | None = None) -> None:
    """Start from local safetensors (a file, or a bundle folder); the head may differ in size.

    ``member``: start a single network from that member of an ensemble bundle.
    """
    from safetensors.torch import load_file

    path = Path(weights).expanduser()
    if path.is_dir():
        path = path / ModelCard.read(path).weights_file
    state = load_file(str(path))
    if member is not None:
        prefix = f"members.{member}."
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise ValueError(f"{path}: no ensemble member {member}")
    own = model.state_dict()
    if not any(k in own for k in state) and any(k.startswith("encoder.") for k in state):
        # a U-Net bundle: its encoder is the same backbone the classifier uses
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    log.say(f"initialised {len(usable)}/{len(own)} tensors from {path}")


def set_frozen(model: nn.Module, blocks: int, frozen: bool) -> None:
    for block in feature_blocks(model)[:blocks]:
        for p in block.parameters():
            p.requires_grad = not frozen


def masked_bce(logits: torch.Tensor, labels: torch.Tensor, known: torch.Tensor,
               pos_weight: torch.Tensor | None) -> torch.Tensor:
    """BCE over known labels only: unknown labels neither reward nor punish the model."""
    loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="none", pos_weight=pos_weight)
    return (loss * known).sum() / known.sum().clamp_min(1.0)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice per structure: Dice keeps the small heart from being drowned by background."""
    bce = F.binary_cross_entropy_with_logits(logits, masks)
    probs = torch.sigmoid(logits)
    inter = (probs * masks).sum(dim=(2, 3))
    union = probs.sum(dim=(2, 3)) + masks.sum(dim=(2, 3))
    dice = 1.0 - ((2 * inter + 1.0) / (union + 1.0)).mean()
    return bce + dice


def compute_loss(config: TrainConfig, model: nn.Module, batch: dict[str, torch.Tensor],
                 device: torch.device, pos_weight: torch.Tensor | None) -> torch.Tensor:
    images = batch["image"].to(device, non_blocking=True)
    logits = model(images)
    if config.task == CLASSIFICATION:
        return masked_bce(logits.float(), batch["labels"].to(device), batch["known"].to(device),
                          pos_weight)
    return segmentation_loss(logits.float(), batch["masks"].to(device))


def class_pos_weight(samples: list[Sample], weights: np.ndarray | None = None) -> torch.Tensor:
    """neg/pos per label over the known labels, as the loader will draw them (``weights``:
    per-sample draw weights of a weighted sampler; None = every sample once)."""
    labels = np.stack([s.labels for s in samples])
    known = np.stack([s.known for s in samples])
    w = np.ones(len(samples)) if weights is None else np.asarray(weights, dtype=np.float64)
    pos = (labels * known * w[:, None]).sum(0)
    neg = ((1 - labels) * known * w[:, None]).sum(0)
    floor = float(w[w > 0].min()) if (w > 0).any() else 1.0
    return torch.tensor(np.clip(neg / np.maximum(pos, floor), 1.0, 50.0), dtype=torch.float32)


def source_mix_weights(samples: list[Sample], mix: dict[str, float]) -> np.ndarray:
    """Per-sample draw weights giving each source its share of an epoch: ``mix`` names shares
    for some sources (e.g. {"rsna-normal": 0.35}); the other sources share the rest in
    proportion to their sizes. Mean weight 1."""
    sources = [s.source for s in samples]
    counts: dict[str, int] = {}
    for name in sources:
        counts[name] = counts.get(name, 0) + 1
    unknown = set(mix) - set(counts)
    if unknown:
        raise ValueError(f"source_mix names sources without training images: {sorted(unknown)}")
    named = sum(float(v) for v in mix.values())
    if not 0 < named <= 1:
        raise ValueError("source_mix shares must add up to at most 1")
    rest = [name for name in counts if name not in mix]
    rest_total = sum(counts[name] for name in rest)
    share = {name: float(mix[name]) for name in mix}
    for name in rest:
        share[name] = (1 - named) * counts[name] / rest_total if rest_total else 0.0
    w = np.array([share[name] / counts[name] for name in sources], dtype=np.float64)
    weights: np.ndarray = w * len(w) / w.sum()
    return weights


def sampler_weights(samples: list[Sample]) -> torch.Tensor:
    """Per-image weight = inverse frequency of its rarest positive finding (1 for normals)."""
    labels = np.stack([s.labels * s.known for s in samples])
    freq = labels.mean(0)
    weights = np.ones(len(samples))
    for i, row in enumerate(labels):
        positives = freq[row > 0]
        if positives.size:
            weights[i] = 1.0 / max(float(positives.min()), 1e-3)
    return torch.tensor(weights / weights.mean(), dtype=torch.float64)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def predict(model: nn.Module, dataset: XrayDataset, device: torch.device, batch_size: int,
            task: str, *, features: bool = False) -> dict[str, np.ndarray]:
    """Raw probabilities (N, L) for classification, or probability masks (N, S, H, W) + losses.

    Classifier probabilities are the network's sigmoid outputs, *not* calibrated (the
    card's calibration is applied by the caller: ``cxrview.inference.evidence.calibrate``).
    ``features=True`` adds the pooled features (N, D) of the out-of-distribution score.
    """
    import contextlib

    from cxrview.inference.features import card_input_shape, feature_tap

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    tap: contextlib.AbstractContextManager[list[Any]] = (
        feature_tap(model, card_input_shape(dataset.card)) if features else contextlib.nullcontext([]))
    with tap as pooled:
        result = _predict_batches(model, loader, device, task)
    if features:
        result["features"] = np.concatenate(pooled)
    return result


def _predict_batches(model: nn.Module, loader: DataLoader[dict[str, torch.Tensor]], device: torch.device,
                     task: str) -> dict[str, np.ndarray]:
    outputs: list[np.ndarray] = []
    losses: list[float] = []
    masks: list[np.ndarray] = []
    n = 0
    for batch in loader:
        n += len(batch["image"])
        logits = model(batch["image"].to(device)).float()
        if task == CLASSIFICATION:
            outputs.append(torch.sigmoid(logits).cpu().numpy())
            losses.append(masked_bce(logits, batch["labels"].to(device), batch["known"].to(device),
                                     None).item() * len(logits))
        else:
            outputs.append(torch.sigmoid(logits).cpu().numpy().astype(np.float16))
            if "masks" in batch:  # images from sources without reference masks have no loss
                masks.append(batch["masks"].numpy().astype(bool))
                losses.append(segmentation_loss(logits, batch["masks"].to(device)).item() * len(logits))
    result = {"probs": np.concatenate(outputs), "loss": np.array(sum(losses) / max(n, 1))}
    if masks:
        result["masks"] = np.concatenate(masks)
    return result


def validation_score(config: TrainConfig, preds: dict[str, np.ndarray], samples: list[Sample]) -> float:
    """Mean AUROC (classification) or mean Dice (segmentation) for progress reports."""
    from training import metrics

    if config.task == CLASSIFICATION:
        Y = np.stack([s.labels for s in samples])
        M = np.stack([s.known for s in samples])
        per = metrics.per_label_auroc(Y, preds["probs"], M, config.labels)
        values = [v["auroc"] for v in per.values() if v["auroc"] is not None]
        return float(np.mean(values)) if values else float("nan")
    dice = metrics.dice_per_structure(preds["probs"] > 0.5, preds["masks"], config.labels)
    return float(np.mean(list(dice.values())))


def prepare_run(config: TrainConfig, log: EventLog,
                info: DistInfo) -> tuple[dict[str, list[Sample]], dict[str, list[str]]]:
    """Samples, patient-level split (saved, or reloaded on resume) and image caches."""
    run = config.run_dir
    samples = collect_samples(config)
    if not samples:
        raise ValueError("no training images found in the configured sources")
    # Extra sources marked train_only add training images without moving the main
    # source's patients between splits, and never dilute validation or test.
    extra = [s for s in samples if s.train_only]
    samples = [s for s in samples if not s.train_only]
    if not samples:
        raise ValueError("every source is train_only: validation and test need at least one other source")
    split_file = run / "split.json"
    if config.resume and split_file.is_file():
        split = json.loads(split_file.read_text())
    elif all(s.split in ("train", "val") for s in samples):
        # A manifest carries its own patient-level split (made when it was exported, with the
        # locked evaluation patients already taken out): honour it instead of re-splitting.
        split = {name: sorted({s.patient for s in samples if s.split == name}) for name in ("val", "train")}
        split["test"] = []
        if info.is_main:
            split_file.write_text(json.dumps(split))
    else:
        split = split_keeping(config, samples)
        if info.is_main:
            split_file.write_text(json.dumps(split))
    parts = apply_split(samples, split)
    parts["train"] = parts.get("train", []) + extra
    counts = {k: len(v) for k, v in parts.items()}
    log.say(f"images: {counts} from {len(samples)} ({len({s.patient for s in samples})} patients)")
    log.emit("phase", name="data", images=counts, patients={k: len(v) for k, v in split.items()})
    return parts, split


def split_keeping(config: TrainConfig, samples: list[Sample]) -> dict[str, list[str]]:
    """The patient split: ``config.split_from``'s (a card.json or split.json) for the patients it
    names — so a new model's test patients are the old one's and comparisons stay paired — and a
    seeded split of the fractions for every other patient."""
    fresh: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    kept: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    if config.split_from:
        data = json.loads(Path(config.split_from).read_text(encoding="utf-8"))
        base = (data.get("training") or {}).get("split_patients") if "training" in data else data
        if not base:
            raise ValueError(f"{config.split_from}: no patient split recorded")
        where = {patient: name for name, patients in base.items() for patient in patients}
        present = {s.patient for s in samples}
        for patient, name in where.items():
            if patient in present:
                kept.setdefault(name, []).append(patient)
        samples = [s for s in samples if s.patient not in where]
    if samples:
        fresh = patient_split(samples, val_fraction=config.val_fraction,
                              test_fraction=config.test_fraction, seed=config.effective_split_seed)
    return {name: sorted(set(kept.get(name, [])) | set(fresh.get(name, [])))
            for name in ("train", "val", "test")}


def _cache_progress(log: EventLog, split: str, done: int, total: int) -> None:
    log.emit("phase", name="cache", split=split, done=done, total=total)


def caches_for(config: TrainConfig, parts: dict[str, list[Sample]],
               log: EventLog) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    structures = config.labels if config.task != CLASSIFICATION else None
    cache_dir = config.cache_root
    crop = crop_block(config)
    out = {}
    for name, samples in parts.items():
        if not samples:
            continue
        log.say(f"caching {len(samples)} {name} images at {max(config.sizes)} px")
        out[name] = build_cache(samples, max(config.sizes), structures, cache_dir=cache_dir, crop=crop,
                                progress=functools.partial(_cache_progress, log, name))
    return out

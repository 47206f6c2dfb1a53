"""``python -m training ensemble``: one bundle whose logits are the mean of several classifiers'.

The members must have been trained on the same patient split (same sources,
same ``split_patients`` in their cards), so the test split is unseen by every
member and the ensemble's test metrics are as honest as each member's. The
ensemble's calibration and validated operating points are chosen afresh on the
shared validation split (``training.evidence``), its
metrics measured on the shared test split (and, once, on the reserved NIH
patients when asked), through the same ``publish`` as ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxrview.inference.architectures import Ensemble
from cxrview.inference.bundle import LoadedModel, load_bundle, pick_device
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset
from training.engine import caches_for, collect_samples, make_card
from training.events import EventLog
from training.publishing import publish
from training.sources import apply_split


def _check_compatible(members: list[LoadedModel]) -> None:
    first = members[0].card
    for loaded in members:
        card = loaded.card
        where = loaded.path
        if card.task != CLASSIFICATION:
            raise ValueError(f"{where}: only classifiers can be ensembled (task {card.task!r})")
        if card.architecture == "ensemble":
            raise ValueError(f"{where}: is already an ensemble; list its members instead")
        if card.labels != first.labels:
            raise ValueError(f"{where}: labels differ from {members[0].path}'s")
        if card.channels != first.channels or card.normalization != first.normalization:
            raise ValueError(f"{where}: preprocessing (channels/normalisation) differs from "
                             f"{members[0].path}'s; one bundle has one preprocessing")
        split = card.training.get("split_patients")
        if not split or split != first.training.get("split_patients"):
            raise ValueError(f"{where}: trained on a different patient split than {members[0].path}; "
                             "the ensemble's test split would not be held out from every member")


def build_ensemble(member_dirs: list[Path], out: Path, *, name: str | None, version: str,
                   rule: dict[str, Any] | None = None, evaluate_reserved: bool = False,
                   cache_dir: str | None = None, batch_size: int = 32, device: str = "auto",
                   weights_dtype: str = "float16", log: EventLog) -> Path:
    """Publish the ensemble as ``out`` (a bundle folder); report and ROC go to ``out``-run beside it.

    ``rule``: operating-point config keys (``specificity_floor`` …) over the first member's."""
    if len(member_dirs) < 2:
        raise ValueError("an ensemble needs at least two member bundles")
    members = [load_bundle(d, device="cpu") for d in member_dirs]
    _check_compatible(members)
    base = members[0].card
    size = max(m.card.input_size for m in members)
    args = {"input_size": size, "members": [
        {"architecture": m.card.architecture, "architecture_args": dict(m.card.architecture_args),
         "input_size": m.card.input_size, "name": m.card.name, "version": m.card.version,
         "weights_sha256": m.card.weights_sha256} for m in members]}
    target = pick_device(device)
    model = Ensemble([m.model for m in members], [m.card.input_size for m in members], size)
    model.to(target).eval()

    config = TrainConfig.from_dict({
        **dict(base.training.get("config", {})), "architecture": "ensemble", "architecture_args": args,
        "input_size": size, "sizes": [size], "out": str(out.parent / f"{out.name}-run"),
        "resume": False, "weights": None, **(rule or {}),
        "evaluate_reserved": evaluate_reserved, "name": name or base.name, "version": version,
        "cache_dir": cache_dir, "batch_size": batch_size, "weights_dtype": weights_dtype})
    card = make_card(config)
    split = base.training["split_patients"]
    parts = apply_split(collect_samples(config), split)
    if not parts.get("val") or not parts.get("test"):
        raise ValueError("the members' validation or test images were not found in their sources")
    config.run_dir.mkdir(parents=True, exist_ok=True)
    datasets = {part: XrayDataset(parts[part], images, card)
                for part, (images, _) in caches_for(config, parts, log).items()}
    log.say(f"ensemble of {len(members)} at {size} px: operating points on {len(parts['val'])} validation "
            f"images, metrics on {len(parts['test'])} test images")
    members_record = [{
        "path": str(m.path), "name": m.card.name, "version": m.card.version,
        "input_size": m.card.input_size, "weights_sha256": m.card.weights_sha256,
        "seconds": m.card.training.get("seconds"), "command": m.card.training.get("command"),
        "config": m.card.training.get("config"),
        "metrics": {part: {k: (m.card.metrics.get(part) or {}).get(k)
                           for k in ("mean_auroc", "mean_auroc_commonest5")}
                    for part in ("test", "reserved_nih") if m.card.metrics.get(part)}}
        for m in members]
    return publish(config, model, card, datasets, split, target, log,
                   trained_seconds=sum(float(m.card.training.get("seconds") or 0) for m in members),
                   stopped_reason="ensemble of published members", bundle_dir=out,
                   training_extra={"members": members_record})

"""``python -m training ensemble``: one bundle whose logits are the mean of several classifiers'.

The members must have been trained on the same patient split (same sources,
same ``split_patients`` in their cards), so the test split is unseen by every
member and the ensemble's test metrics are as honest as each member's. The
ensemble's thresholds are chosen afresh on the shared validation split, its
metrics measured on the shared test split (and, once, on the reserved NIH
patients when asked), exactly as ``train`` publishes a single model.
"""

from __future__ import annotations

import datetime as dt
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from cxrview.inference.architectures import Ensemble
from cxrview.inference.bundle import LoadedModel, load_bundle, pick_device, save_bundle
from cxrview.inference.card import ModelCard
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.evaluation import (
    _roc_curves,
    baseline_report,
    choose_thresholds,
    classification_report,
    reserved_report,
    round_to_storage_precision,
)
from training.events import EventLog
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
                   threshold_method: str = "f1", evaluate_reserved: bool = False,
                   cache_dir: str | None = None, batch_size: int = 32, device: str = "auto",
                   weights_dtype: str = "float16", log: EventLog) -> Path:
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
    model = Ensemble([m.model for m in members], [m.card.input_size for m in members], size)
    target = pick_device(device)
    model.to(target).eval()

    saved = dict(base.training.get("config", {}))
    config = TrainConfig.from_dict({
        **saved, "architecture": "ensemble", "architecture_args": args, "input_size": size,
        "sizes": [size], "out": str(out), "resume": False, "weights": None,
        "threshold_method": threshold_method, "evaluate_reserved": evaluate_reserved,
        "name": name or base.name, "version": version, "cache_dir": cache_dir,
        "weights_dtype": weights_dtype})
    card = ModelCard(name=config.name, version=version, task=CLASSIFICATION, architecture="ensemble",
                     labels=list(base.labels), input_size=size, channels=base.channels,
                     architecture_args=args, normalization=base.normalization,
                     weights_dtype=config.weights_dtype)

    round_to_storage_precision(model, card)  # metrics below are then exactly the bundle's
    split = base.training["split_patients"]
    parts = apply_split(collect_samples(config), split)
    if not parts.get("val") or not parts.get("test"):
        raise ValueError("the members' validation or test images were not found in their sources")
    cache = Path(cache_dir) if cache_dir else out.parent / f".{out.name}-cache"
    datasets = {}
    for part in ("train", "val", "test"):
        images, _ = build_cache(parts[part], size, None, cache_dir=cache)
        datasets[part] = XrayDataset(parts[part], images, card)
        datasets[part].set_epoch(0, size)
    log.say(f"ensemble of {len(members)} at {size} px: thresholds on {len(parts['val'])} validation "
            f"images, metrics on {len(parts['test'])} test images")

    val = predict(model, datasets["val"], target, batch_size, CLASSIFICATION)
    card.thresholds = choose_thresholds(config, parts["val"], val["probs"], fallback=dict(base.thresholds))
    test = predict(model, datasets["test"], target, batch_size, CLASSIFICATION)
    metrics: dict[str, Any] = {
        "test": classification_report(card.labels, parts["test"], test["probs"], card.thresholds)}
    metrics["test"]["baseline"] = baseline_report(card.labels, datasets["train"],
                                                  datasets["test"].images, parts["test"])
    val_report = classification_report(card.labels, parts["val"], val["probs"], card.thresholds)
    metrics["val"] = {k: val_report[k] for k in ("mean_auroc", "mean_auroc_commonest5", "n_images")
                      if k in val_report}
    if evaluate_reserved:
        config.cache_dir = str(cache)
        metrics["reserved_nih"] = reserved_report(config, model, card, datasets, target)
    metrics["members"] = {f"{m.card.name} {m.card.version}": {
        split_name: {k: (m.card.metrics.get(split_name) or {}).get(k)
                     for k in ("mean_auroc", "mean_auroc_commonest5")}
        for split_name in ("test", "reserved_nih") if m.card.metrics.get(split_name)}
        for m in members}
    for split_name in ("val", "test", "reserved_nih"):
        if metrics.get(split_name):
            log.emit("metric", split=split_name, mean_auroc=metrics[split_name].get("mean_auroc"),
                     mean_auroc_commonest5=metrics[split_name].get("mean_auroc_commonest5"))
    card.metrics = metrics
    card.training = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "config": config.to_dict(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "members": [{"path": str(m.path), "name": m.card.name, "version": m.card.version,
                     "input_size": m.card.input_size, "weights_sha256": m.card.weights_sha256,
                     "seconds": m.card.training.get("seconds"), "command": m.card.training.get("command"),
                     "config": m.card.training.get("config")} for m in members],
        "seconds": round(sum(float(m.card.training.get("seconds") or 0) for m in members), 1),
        "images": {k: len(v) for k, v in parts.items()},
        "split_patients": split,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "device": str(target)},
    }
    from training.report import write_json_report, write_roc_png

    bundle = save_bundle(out, model.to("cpu"), card)
    write_roc_png(out.parent / f"{out.name}-roc_test.png",
                  _roc_curves(card.labels, parts["test"], test["probs"]),
                  f"{card.name} {card.version}: test split")
    write_json_report(out.parent / f"{out.name}-report.json", {"card_metrics": metrics})
    log.say(f"ensemble bundle written to {bundle}")
    return bundle

"""Publishing a trained model: evidence from validation, metrics on the held-out splits, the bundle.

Thresholds are chosen on the validation split only; the test split (and, once, the reserved
NIH patients) is touched only to report (``training.classification_reports``,
``training.segmentation_reports``).
"""

from __future__ import annotations

import datetime as dt
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cxrview.inference.bundle import save_bundle
from cxrview.inference.card import ModelCard
from training.classification_reports import (
    baseline_report,
    classification_report,
    held_out_report,
    roc_curves,
    stacked,
)
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.events import EventLog
from training.segmentation_reports import segmentation_report


def attach_evidence(card: ModelCard, model: nn.Module, datasets: dict[str, XrayDataset],
                    device: torch.device, batch_size: int, rule: dict[str, Any], log: EventLog
                    ) -> np.ndarray:
    """Fit the card's calibration, validated operating points and OOD statistics on the
    validation split (OOD statistics on the training split); returns the calibrated
    validation probabilities."""
    from cxrview.inference.evidence import apply_calibration
    from training.evidence import choose_operating_points, fit_calibration, ood_block, reliability

    val = datasets["val"]
    out = predict(model, val, device, batch_size, CLASSIFICATION, features=True)
    Y, M = stacked(val.samples, "labels"), stacked(val.samples, "known")
    card.calibration = fit_calibration(out["probs"], Y, M, card.labels)
    calibrated = apply_calibration(card.calibration, card.labels, out["probs"])
    card.thresholds, card.evidence = choose_operating_points(calibrated, Y, M, card.labels, rule)
    card.evidence["calibration"] = {"method": card.calibration["method"],
                                    "ece_raw": reliability(out["probs"], Y, M)["ece"],
                                    "ece": reliability(calibrated, Y, M)["ece"]}
    if "train" in datasets and len(datasets["train"]):
        train = datasets["train"]
        plain = XrayDataset(train.samples, train.images, card)  # unaugmented view, same arrays
        plain.set_epoch(0, card.input_size)
        features = predict(model, plain, device, batch_size, CLASSIFICATION, features=True)["features"]
        card.ood = ood_block(features, out["features"])
    validated = [k for k, v in card.evidence["per_label"].items() if v["validated"]]
    load = card.evidence.get("positives_per_normal") or 0.0
    log.say(f"validated findings ({len(validated)}): {', '.join(validated) or 'none'}; "
            f"validation normals get {load:.2f} positive calls each")
    return calibrated


def reserved_report(config: TrainConfig, model: nn.Module, card: ModelCard,
                    datasets: dict[str, XrayDataset], device: torch.device) -> dict[str, Any] | None:
    """One-off metrics on the reserved NIH evaluation patients, beside the baseline's."""
    samples = collect_samples(config, reserved_only=True)
    if not samples:
        return None
    cache_dir = config.cache_root
    images, _ = build_cache(samples, config.input_size, None, cache_dir=cache_dir, crop=card.crop)
    dataset = XrayDataset(samples, images, card)
    preds = predict(model, dataset, device, config.batch_size, config.task)
    report = held_out_report(card, samples, preds["probs"])
    report["baseline"] = baseline_report(config.labels, datasets["train"], images, samples)
    return report


def round_to_storage_precision(model: nn.Module, card: ModelCard) -> None:
    """Make the in-memory weights exactly what the bundle will store (float16 bundles).

    Metrics measured afterwards are then reproducible from the saved bundle.
    """
    if getattr(card, "weights_dtype", "float32") != "float16":
        return
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def publish(
    config: TrainConfig,
    model: nn.Module,
    card: ModelCard,
    datasets: dict[str, XrayDataset],
    split: dict[str, list[str]],
    device: torch.device,
    log: EventLog,
    *,
    trained_seconds: float,
    stopped_reason: str,
    bundle_dir: Path | None = None,
    training_extra: dict[str, Any] | None = None,
) -> Path:
    """Evidence on val (calibration, validated operating points, OOD statistics), metrics on
    test (+ baseline, + reserved once), then write the bundle.

    ``bundle_dir`` defaults to the run's ``bundle`` folder; ``training_extra`` is merged into
    the card's training record (an ensemble's members). Without a validation split no finding
    is validated: the bundle still works, but calls nothing positive.
    """
    from training.report import write_json_report, write_roc_png

    round_to_storage_precision(model, card)  # metrics below are then exactly the bundle's
    run = config.run_dir
    size = config.input_size
    for ds in datasets.values():
        ds.set_epoch(0, size)
    evaluation: dict[str, Any] = {}
    if config.task == CLASSIFICATION:
        card.calibration, card.thresholds, card.evidence, card.ood = None, {}, {}, None
        if "val" in datasets:
            val = attach_evidence(card, model, datasets, device, config.batch_size,
                                  config.evidence_rule(), log)
            val_report = classification_report(config.labels, datasets["val"].samples, val,
                                               card.thresholds)
            # the summary the operating points (and, for ensembles, the members) were chosen on
            evaluation["val"] = {k: val_report[k] for k in ("mean_auroc", "mean_auroc_commonest5",
                                                            "n_images") if k in val_report}
        if "test" in datasets:
            test = predict(model, datasets["test"], device, config.batch_size, config.task)
            evaluation["test"] = held_out_report(card, datasets["test"].samples, test["probs"],
                                                 datasets["test"].images)
            card.evidence["test"] = evaluation["test"]["evidence"]
            write_roc_png(
                run / "roc_test.png",
                roc_curves(config.labels, datasets["test"].samples, test["probs"]),
                f"{config.name} {config.version}: test split",
            )
            evaluation["test"]["baseline"] = baseline_report(
                config.labels, datasets["train"], datasets["test"].images, datasets["test"].samples)
        if config.evaluate_reserved:
            evaluation["reserved_nih"] = reserved_report(config, model, card, datasets, device)
            if evaluation["reserved_nih"]:
                card.evidence["reserved_nih"] = evaluation["reserved_nih"]["evidence"]
    else:
        for name in ("val", "test"):
            if name in datasets:
                preds = predict(model, datasets[name], device, config.batch_size, config.task)
                evaluation[name] = segmentation_report(config.labels, datasets[name].samples, preds)
        if config.evaluate_reserved:
            # the position-reserved films of mask sets (Wingspan's every third), once, at publication
            samples = collect_samples(config, reserved_only=True)
            if samples:
                cache_dir = config.cache_root
                images, masks = build_cache(samples, config.input_size, config.labels, cache_dir=cache_dir)
                preds = predict(model, XrayDataset(samples, images, card, masks=masks), device,
                                config.batch_size, config.task)
                evaluation["reserved"] = segmentation_report(config.labels, samples, preds)
    for name, report in evaluation.items():
        if report:
            log.emit(
                "metric",
                split=name,
                **{k: v for k, v in report.items() if k in ("mean_auroc", "dice", "ctr_abs_error")},
            )
    card.metrics = evaluation
    card.training = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "config": config.to_dict(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(trained_seconds, 1),
        "stopped": stopped_reason,
        "images": {k: len(v.samples) for k, v in datasets.items()},
        "split_patients": split,
        "host": {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)},
        **(training_extra or {}),
    }
    bundle = save_bundle(bundle_dir or run / "bundle", model.to("cpu"), card)
    model.to(device)
    write_json_report(run / "report.json", {"card_metrics": evaluation})
    log.say(f"bundle written to {bundle}")
    return bundle

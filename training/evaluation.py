"""Metrics on held-out data, thresholds from validation, and publishing the bundle.

Thresholds are chosen on the validation split only; the test split (and, once,
the reserved NIH patients) is touched only to report. ``evaluate`` recomputes
the same figures from a published bundle, so a card's numbers can be checked.
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
from cxrview.inference.evidence import operating_points
from training import metrics
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.events import EventLog
from training.sources import Sample, apply_split


def _stack(samples: list[Sample], attr: str) -> np.ndarray:
    return np.stack([getattr(s, attr) for s in samples])


def calibrated_probs(card: ModelCard, raw: np.ndarray) -> np.ndarray:
    """The card's calibrated probabilities for raw network outputs (what people are shown)."""
    from cxrview.inference.evidence import calibrate

    return calibrate(card, raw)


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
    Y, M = _stack(val.samples, "labels"), _stack(val.samples, "known")
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


def classification_report(
    labels: list[str], samples: list[Sample], probs: np.ndarray, thresholds: dict[str, float]
) -> dict[str, Any]:
    """Metrics at ``thresholds`` (the validated operating points; other findings get AUROC only),
    with the over-calling figures on films with no finding."""
    from training.evidence import positives_on_normals

    Y, M = _stack(samples, "labels"), _stack(samples, "known")
    report = metrics.summarize_multilabel(Y, probs, M, labels, thresholds=thresholds)
    report["n_images"] = len(samples)
    report["n_patients"] = len({s.patient for s in samples})
    report.update(commonest_mean(report["per_label"]))
    report.update(positives_on_normals(probs, Y, M, labels, thresholds))
    return report


def held_out_report(card: ModelCard, samples: list[Sample], raw: np.ndarray,
                    images: np.ndarray | None = None) -> dict[str, Any]:
    """A held-out split's report at the card's operating points, its ``evidence`` (rates with
    intervals) and calibration error; with the cached ``images``, the shortcut probes when the
    split mixes sources (``training.shortcuts``)."""
    from training.evidence import normal_rows, split_evidence
    from training.shortcuts import shortcut_report

    probs = calibrated_probs(card, raw)
    Y, M = _stack(samples, "labels"), _stack(samples, "known")
    report = classification_report(card.labels, samples, probs, operating_points(card))
    report["evidence"] = split_evidence(probs, Y, M, card.labels, operating_points(card))
    if images is not None and len({s.source for s in samples}) > 1:
        report["shortcuts"] = shortcut_report([s.source for s in samples], normal_rows(Y, M), images,
                                              probs, operating_points(card), card.labels)
    return report


def commonest_findings(per_label: dict[str, dict[str, Any]], k: int = 5, score: str = "auroc") -> list[str]:
    """The k findings with most positives among those that have a ``score`` (rare ones are noise)."""
    ranked = sorted((v["n_pos"], name) for name, v in per_label.items() if v[score] is not None)
    return [name for _, name in ranked[::-1][:k]]


def commonest_mean(per_label: dict[str, dict[str, Any]], k: int = 5) -> dict[str, Any]:
    """Mean AUROC over the k findings with most positives in this set."""
    top = commonest_findings(per_label, k)
    values = [per_label[name]["auroc"] for name in top]
    return {f"commonest{k}": top, f"mean_auroc_commonest{k}": float(np.mean(values)) if values else None}


CTR_STRUCTURES = ("heart", "right_lung", "left_lung")


def _ctr(masks: np.ndarray, index: dict[str, int]) -> Any:
    """measure_ctr on one image's (S, H, W) mask stack; ``index`` maps CTR_STRUCTURES to rows."""
    from cxrview.inference.ctr import measure_ctr

    return measure_ctr(*(masks[index[name]] for name in CTR_STRUCTURES))


def cleaned_stack(masks: np.ndarray, labels: list[str]) -> np.ndarray:
    """``anatomy.clean_masks`` on one image's (S, H, W) stack (what the app draws and measures)."""
    from cxrview.inference.anatomy import clean_masks

    if not all(name in labels for name in CTR_STRUCTURES):
        return masks
    cleaned = clean_masks({name: masks[labels.index(name)] for name in CTR_STRUCTURES})
    out = masks.copy()
    for name in CTR_STRUCTURES:
        out[labels.index(name)] = cleaned[name]
    return out


def segmentation_report(labels: list[str], samples: list[Sample], preds: dict[str, np.ndarray]) -> dict:
    """Dice and CTR error of the masks as the app uses them (anatomically cleaned), with the
    network's raw masks' Dice beside them."""
    raw_masks = preds["probs"] > 0.5
    pred_masks = np.stack([cleaned_stack(m, labels) for m in raw_masks])
    true_masks = preds["masks"]
    report: dict[str, Any] = {
        "dice": metrics.dice_per_structure(pred_masks, true_masks, labels),
        "dice_raw": metrics.dice_per_structure(raw_masks, true_masks, labels),
        "n_images": len(samples),
    }
    idx = {name: labels.index(name) for name in CTR_STRUCTURES if name in labels}
    if len(idx) == len(CTR_STRUCTURES):
        errors, failures = [], 0
        for p, t in zip(pred_masks, true_masks, strict=True):
            mp, mt = _ctr(p, idx), _ctr(t, idx)
            if mt is None:
                continue
            if mp is None:
                failures += 1
                continue
            errors.append(abs(mp.value - mt.value))
        report["ctr_abs_error"] = {
            "mean": float(np.mean(errors)) if errors else None,
            "median": float(np.median(errors)) if errors else None,
            "p90": float(np.percentile(errors, 90)) if errors else None,
            "n": len(errors),
            "failed": failures,
            "measured_share": len(errors) / (len(errors) + failures) if errors or failures else None,
        }
    return report


def baseline_report(labels: list[str], train: XrayDataset, images: np.ndarray,
                    samples: list[Sample]) -> dict[str, Any]:
    """Logistic regression on 32×32 thumbnails, fitted on the same training split."""
    from training.baseline import thumbnail_logistic_regression

    probs = thumbnail_logistic_regression(train.images, _stack(train.samples, "labels"),
                                          _stack(train.samples, "known"), images)
    per = metrics.per_label_auroc(_stack(samples, "labels"), probs, _stack(samples, "known"), labels)
    values = [v["auroc"] for v in per.values() if v["auroc"] is not None]
    return {"method": "logistic regression on 32x32 thumbnails (same training split)",
            "mean_auroc": float(np.mean(values)) if values else None, "per_label": per,
            **commonest_mean(per)}


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


def _roc_curves(labels: list[str], samples: list[Sample], probs: np.ndarray) -> dict[str, tuple]:
    return metrics.per_label_roc_curves(_stack(samples, "labels"), probs, _stack(samples, "known"), labels)


def image_top_losses(samples: list[Sample], probs: np.ndarray, k: int = 10) -> list[dict[str, Any]]:
    """The images the model disagrees with most (masked BCE per image): often label errors."""
    Y, M = _stack(samples, "labels"), _stack(samples, "known")
    p = np.clip(probs, 1e-6, 1 - 1e-6)
    bce = -(Y * np.log(p) + (1 - Y) * np.log(1 - p)) * M
    losses = bce.sum(1) / np.maximum(M.sum(1), 1)
    return [{"path": path, "loss": loss}
            for path, loss in metrics.top_losses(losses, [s.path for s in samples], k=k)]


def single_label_report(card: ModelCard, samples: list[Sample], probs: np.ndarray,
                        mappings: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Confusion matrix for folder-per-class sets: each image belongs to exactly one class.

    A class is predicted from the labels its folder maps to: the positive class whose
    best label probability (calibrated) is highest, if that label passes its validated
    operating point; otherwise the "normal" class (mapped with ``"*": 0``), when the set has one.
    """
    classes = sorted({s.group for s in samples if s.group})
    normal = next((c for c in classes if mappings.get(c, {}).get("*") == 0), None)
    positive = {c: [card.labels.index(lab) for lab, v in mappings.get(c, {}).items()
                    if v == 1 and lab in card.labels] for c in classes}
    predicted = []
    for row in probs:
        best, best_score, passes = normal, -1.0, False
        for c, idx in positive.items():
            for j in idx:
                if row[j] > best_score:
                    best, best_score = c, float(row[j])
                    threshold = card.threshold(card.labels[j])
                    passes = threshold is not None and row[j] >= threshold
        predicted.append(best if passes or normal is None else normal)
    index = {c: i for i, c in enumerate(classes)}
    cm = metrics.confusion_matrix([index[s.group] for s in samples],
                                  [index[p] if p in index else index[classes[0]] for p in predicted],
                                  len(classes))
    return {"classes": classes, "confusion_matrix": cm.tolist(),
            "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "most_confused": [list(t) for t in metrics.most_confused(cm, classes, k=5)]}


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
                _roc_curves(config.labels, datasets["test"].samples, test["probs"]),
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


def measure_ctrs(loaded: Any, samples: list[Sample], *, cache_dir: Path, batch_size: int = 16) -> np.ndarray:
    """The CTR a segmenter bundle measures on each sample (NaN where none could be measured)."""
    card = loaded.card
    images, _ = build_cache(samples, card.input_size, None, cache_dir=cache_dir, crop=card.crop)
    preds = predict(loaded.model, XrayDataset(samples, images, card), loaded.device, batch_size, card.task)
    where = {name: card.labels.index(name) for name in CTR_STRUCTURES}
    values = []
    for masks in preds["probs"] > 0.5:
        m = _ctr(cleaned_stack(masks, card.labels), where)
        values.append(np.nan if m is None else m.value)
    return np.array(values, dtype=np.float64)


def external_ctr_report(loaded: Any, sources: list[dict[str, Any]], *, out: Path, batch_size: int,
                        log: EventLog) -> dict[str, Any]:
    """A segmenter on another source without reference masks: does its CTR track cardiomegaly?

    On NIH images (non-reserved patients) we measure the CTR from the predicted masks and
    report how often a CTR could be measured and how well it separates images labelled
    Cardiomegaly from the rest (AUROC), which a segmenter that fails off its training
    source cannot do.
    """
    from training.report import write_json_report
    from training.sources import nih_samples

    samples: list[Sample] = []
    for src in sources:
        dirs = src["images"] if isinstance(src["images"], list) else [src["images"]]
        samples += nih_samples(dirs, src["data_entry"], ["Cardiomegaly"], exclude_reserved=True)
    if not samples:
        raise ValueError("no NIH images found in the given sources")
    out.mkdir(parents=True, exist_ok=True)
    ctrs = measure_ctrs(loaded, samples, cache_dir=out / "cache", batch_size=batch_size)
    measured = ~np.isnan(ctrs)
    failed = int((~measured).sum())
    v = ctrs[measured]
    y = np.array([int(s.labels[0]) for s in samples])[measured]
    report = {
        "source": "NIH ChestX-ray14, non-reserved patients (no reference masks)",
        "n_images": len(samples), "ctr_measured": len(v), "ctr_failed": failed,
        "cardiomegaly_auroc_of_ctr": metrics.auroc(y, v) if 0 < y.sum() < len(y) else None,
        "n_cardiomegaly": int(y.sum()),
        "median_ctr": {"cardiomegaly": float(np.median(v[y == 1])) if y.sum() else None,
                       "other": float(np.median(v[y == 0])) if (y == 0).any() else None},
        "fraction_ctr_above_0_5": {"cardiomegaly": float((v[y == 1] > 0.5).mean()) if y.sum() else None,
                                   "other": float((v[y == 0] > 0.5).mean()) if (y == 0).any() else None},
        "bundle": str(loaded.path),
    }
    write_json_report(out / "report.json", report)
    log.emit("metric", split="external_nih", cardiomegaly_auroc_of_ctr=report["cardiomegaly_auroc_of_ctr"],
             ctr_failed=failed)
    return report


EVIDENCE_KEYS = ("n_pos", "auroc", "auroc_ci", "sensitivity", "sensitivity_ci", "specificity",
                 "specificity_ci")


def card_agreement(card: ModelCard, split: str, evidence: dict[str, Any]) -> dict[str, Any] | None:
    """How far this evaluation's evidence is from what the card records for the same split
    (``val``: the operating points' own evidence; ``test``/``reserved``: the publication
    report). None when the card has nothing for that split."""
    recorded = card.evidence if split == "val" else card.evidence.get(
        "reserved_nih" if split == "reserved" else split)
    if not recorded or "per_label" not in recorded:
        return None
    worst, compared = 0.0, 0
    for label, mine in evidence["per_label"].items():
        theirs = recorded["per_label"].get(label) or {}
        for key in EVIDENCE_KEYS:
            a, b = mine.get(key), theirs.get(key)
            if a is None or b is None:
                if (a is None) != (b is None) and key in ("n_pos", "auroc"):
                    worst = float("inf")
                continue
            pairs = zip(a, b, strict=True) if isinstance(a, list) else [(a, b)]
            for x, y in pairs:
                worst = max(worst, abs(float(x) - float(y)))
                compared += 1
    return {"max_abs_difference": worst, "values_compared": compared, "reproduces": worst <= 1e-6}


def evaluate_bundle(
    bundle_dir: Path,
    *,
    sources: list[dict[str, Any]] | None,
    split: str,
    out: Path,
    batch_size: int,
    device: str,
    log: EventLog,
) -> dict[str, Any]:
    """Recompute a bundle's metrics on a split ("test", "val", "all" or "reserved")."""
    from cxrview.inference.bundle import load_bundle
    from training.report import write_json_report, write_roc_png

    loaded = load_bundle(bundle_dir, device=device)
    card = loaded.card
    saved = dict(card.training.get("config", {}))
    config = TrainConfig.from_dict(
        {
            **saved,
            "sources": sources or saved.get("sources", []),
            "out": str(out),
            "resume": False,
            "limit": saved.get("limit"),
        }
    )
    if card.task != CLASSIFICATION and config.sources and all(
            src.get("type") == "nih" for src in config.sources):
        return external_ctr_report(loaded, config.sources, out=out, batch_size=batch_size, log=log)
    if split == "reserved":
        samples = collect_samples(config, reserved_only=True)
    else:
        samples = collect_samples(config)
        if split != "all":
            samples = apply_split(samples, card.training["split_patients"])[split]
    if not samples:
        raise ValueError(f"no images for split {split!r} in the given sources")
    out.mkdir(parents=True, exist_ok=True)
    structures = card.labels if card.task != CLASSIFICATION else None
    images, masks = build_cache(samples, card.input_size, structures, cache_dir=out / "cache",
                                crop=card.crop)
    dataset = XrayDataset(samples, images, card, masks=masks)
    preds = predict(loaded.model, dataset, loaded.device, batch_size, card.task)
    if card.task == CLASSIFICATION:
        from training.evidence import reliability
        from training.report import write_reliability_png

        probs = calibrated_probs(card, preds["probs"])
        report = held_out_report(card, samples, preds["probs"], images)
        report["top_losses"] = image_top_losses(samples, probs)
        if all(s.group is not None for s in samples):
            mappings = {k: v for src in config.sources if src.get("type") == "folders"
                        for k, v in src["mapping"].items()}
            report["single_label"] = single_label_report(card, samples, probs, mappings)
        Y, M = _stack(samples, "labels"), _stack(samples, "known")
        calibration = reliability(probs, Y, M)
        report["calibration"] = {"ece": calibration["ece"], "bins": calibration["bins"],
                                 "ece_raw": reliability(preds["probs"], Y, M)["ece"]}
        report["card_agreement"] = card_agreement(card, split, report["evidence"])
        write_roc_png(
            out / "roc.png",
            _roc_curves(card.labels, samples, probs),
            f"{card.name} {card.version}: {split}",
        )
        write_reliability_png(out / "reliability.png", calibration["bins"],
                              f"{card.name} {card.version}: {split}, ECE {calibration['ece']:.3f}")
    else:
        report = segmentation_report(card.labels, samples, preds)
    report["split"] = split
    report["bundle"] = str(bundle_dir)
    write_json_report(out / "report.json", report)
    log.emit(
        "metric",
        split=split,
        **{k: v for k, v in report.items() if k in ("mean_auroc", "dice", "ctr_abs_error")},
    )
    return report

"""Evaluating a published bundle: its metrics recomputed on a split, so a card's numbers can be checked.

``python -m training evaluate`` runs ``evaluate_bundle``; ``card_agreement`` says how far the
recomputed evidence is from what the card records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxrview.inference.card import ModelCard
from training.classification_reports import (
    calibrated_probs,
    held_out_report,
    image_top_losses,
    roc_curves,
    single_label_report,
    stacked,
)
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.events import EventLog
from training.segmentation_reports import external_ctr_report, segmentation_report
from training.sources import apply_split

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
        Y, M = stacked(samples, "labels"), stacked(samples, "known")
        calibration = reliability(probs, Y, M)
        report["calibration"] = {"ece": calibration["ece"], "bins": calibration["bins"],
                                 "ece_raw": reliability(preds["probs"], Y, M)["ece"]}
        report["card_agreement"] = card_agreement(card, split, report["evidence"])
        write_roc_png(
            out / "roc.png",
            roc_curves(card.labels, samples, probs),
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

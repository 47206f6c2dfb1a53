"""``python -m training recalibrate``: new evidence for a published classifier, same weights.

How a finding earns the right to be called positive (calibration, validated
operating points under a specificity floor, the input check's feature
statistics; ``training.evidence``) must be changeable without retraining: this
reloads the bundle, predicts the validation split saved in its card (and the
training split, for the out-of-distribution statistics), chooses everything
there, recomputes the threshold-dependent figures on the test split and, if
the card has them, on the reserved NIH patients, and writes a new bundle.
Weights, AUROCs and baselines are unchanged; the card records what was done.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cxrview.inference.bundle import load_bundle, save_card_with_weights_of
from training.classification_reports import classification_report, held_out_report
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.events import EventLog
from training.publishing import attach_evidence
from training.sources import Sample, apply_split

RULE_KEYS = ("specificity_floor", "specificity_floors", "min_positives", "min_auroc_lower",
             "max_normal_positives")


def recalibrate_bundle(bundle_dir: Path, out: Path, *, rule: dict[str, Any] | None = None,
                       sources: list[dict[str, Any]] | None = None, batch_size: int = 32,
                       device: str = "auto", version: str | None = None, cache_dir: str | None = None,
                       log: EventLog) -> Path:
    """Write ``out``: ``bundle_dir``'s weights with evidence chosen on its validation split.

    ``rule`` holds operating-point config keys (``RULE_KEYS``) over those saved in the card.
    """
    loaded = load_bundle(bundle_dir, device=device)
    card = loaded.card
    if card.task != CLASSIFICATION:
        raise ValueError(f"{bundle_dir}: only classifiers have operating points to recalibrate")
    saved = dict(card.training.get("config", {}))
    split = card.training.get("split_patients")
    if not split or not split.get("val"):
        raise ValueError(f"{bundle_dir}: the card records no validation split to recalibrate on")
    scratch = Path(tempfile.mkdtemp(prefix="cxrview-recalibrate-"))
    try:
        config = TrainConfig.from_dict({**saved, **(rule or {}), "out": str(scratch), "resume": False,
                                        "sources": sources or saved.get("sources", [])})
        parts = apply_split(collect_samples(config), split)
        if not parts.get("val"):
            raise ValueError("none of the validation images were found in the given sources")
        cache = Path(cache_dir) if cache_dir else scratch / "cache"

        def dataset(samples: list[Sample]) -> XrayDataset:
            images, _ = build_cache(samples, card.input_size, None, cache_dir=cache, crop=card.crop)
            return XrayDataset(samples, images, card)

        datasets = {name: dataset(parts[name]) for name in ("train", "val") if parts.get(name)}
        previous = {"version": card.version, "thresholds": dict(card.thresholds),
                    "calibration": card.calibration,
                    "validated": [k for k, v in (card.evidence.get("per_label") or {}).items()
                                  if v.get("validated")]}
        log.say(f"choosing operating points on {len(parts['val'])} validation images")
        val = attach_evidence(card, loaded.model, datasets, loaded.device, batch_size,
                              config.evidence_rule(), log)
        metrics = dict(card.metrics)
        val_report = classification_report(card.labels, parts["val"], val, card.thresholds)
        metrics["val"] = {**(metrics.get("val") or {}),
                          **{k: val_report[k] for k in ("mean_auroc", "mean_auroc_commonest5", "n_images")}}
        evaluated = {"test": parts.get("test") or []}
        if "reserved_nih" in metrics:
            evaluated["reserved_nih"] = collect_samples(config, reserved_only=True)
        for name, samples in evaluated.items():
            if not samples:
                continue
            raw = predict(loaded.model, dataset(samples), loaded.device, batch_size, card.task)["probs"]
            report = held_out_report(card, samples, raw)
            if isinstance(metrics.get(name), dict) and "baseline" in metrics[name]:
                report["baseline"] = metrics[name]["baseline"]
            metrics[name] = report
            card.evidence[name] = report["evidence"]
            log.emit("metric", split=name, mean_auroc=report.get("mean_auroc"),
                     positives_per_normal=report.get("positives_per_normal"))
        card.metrics = metrics
        if version:
            # a new version: cached predictions (keyed by name@version#sha+card) carry the old decisions
            card.parent_version, card.version = card.version, version
        card.training = {**card.training,
                         "config": {**saved, **{k: getattr(config, k) for k in RULE_KEYS}},
                         "recalibrated": {
                             "rule": config.evidence_rule(),
                             "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                             "validation_images": len(parts["val"]), "previous": previous}}
        return save_card_with_weights_of(out, bundle_dir, card)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

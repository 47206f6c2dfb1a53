"""``python -m training recalibrate``: new operating thresholds for a published bundle.

A model's per-finding thresholds are chosen on its validation split. Changing
how they are chosen (e.g. Youden → F1, because Youden calls a third of all
films positive for rare findings), or choosing them for a fine-tuned candidate
before it is compared and activated, must not need retraining: this reloads
the bundle, predicts the validation split saved in its card, picks new
thresholds there, recomputes the threshold-dependent figures (precision,
recall, F1 at the thresholds) on the test split and, if the card has them, on
the reserved NIH patients, and writes a new bundle. Weights, AUROCs and
baselines are unchanged; the card records what was done.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cxrview.inference.bundle import load_bundle, save_card_with_weights_of
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.evaluation import choose_thresholds, classification_report
from training.events import EventLog
from training.sources import Sample, apply_split


def recalibrate_bundle(bundle_dir: Path, out: Path, *, method: str, target: float = 0.9,
                       sources: list[dict[str, Any]] | None = None, batch_size: int = 32,
                       device: str = "auto", version: str | None = None, log: EventLog) -> Path:
    loaded = load_bundle(bundle_dir, device=device)
    card = loaded.card
    if card.task != CLASSIFICATION:
        raise ValueError(f"{bundle_dir}: only classifiers have thresholds to recalibrate")
    saved = dict(card.training.get("config", {}))
    split = card.training.get("split_patients")
    if not split or not split.get("val"):
        raise ValueError(f"{bundle_dir}: the card records no validation split to recalibrate on")
    scratch = Path(tempfile.mkdtemp(prefix="cxrview-recalibrate-"))
    try:
        config = TrainConfig.from_dict({**saved, "sources": sources or saved.get("sources", []),
                                        "out": str(scratch), "resume": False,
                                        "threshold_method": method, "target_sensitivity": target})
        parts = apply_split(collect_samples(config), split)
        if not parts.get("val"):
            raise ValueError("none of the validation images were found in the given sources")

        def probs(samples: list[Sample]):
            images, _ = build_cache(samples, card.input_size, None, cache_dir=scratch / "cache")
            return predict(loaded.model, XrayDataset(samples, images, card), loaded.device,
                           batch_size, card.task)["probs"]

        log.say(f"choosing {method} thresholds on {len(parts['val'])} validation images")
        old = dict(card.thresholds)
        card.thresholds = choose_thresholds(config, parts["val"], probs(parts["val"]), fallback=old)
        metrics = dict(card.metrics)
        evaluated = {"test": parts.get("test") or []}
        if "reserved_nih" in metrics:
            evaluated["reserved_nih"] = collect_samples(config, reserved_only=True)
        for name, samples in evaluated.items():
            if not samples:
                continue
            report = classification_report(card.labels, samples, probs(samples), card.thresholds)
            if isinstance(metrics.get(name), dict) and "baseline" in metrics[name]:
                report["baseline"] = metrics[name]["baseline"]
            metrics[name] = report
            log.emit("metric", split=name, mean_auroc=report.get("mean_auroc"),
                     positives_per_image=_positives_per_image(report))
        card.metrics = metrics
        if version:
            # a new version: cached predictions (keyed by name@version#sha) carry the old decisions
            card.parent_version, card.version = card.version, version
        card.training = {**card.training, "recalibrated": {
            "method": method, "target": target if method in ("sensitivity", "specificity") else None,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "validation_images": len(parts["val"]), "previous_thresholds": old}}
        return save_card_with_weights_of(out, bundle_dir, card)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _positives_per_image(report: dict[str, Any]) -> float | None:
    """Mean number of findings called positive per image at the thresholds (alarm burden)."""
    per = report.get("per_label") or {}
    n = report.get("n_images") or report.get("n_samples")
    calls = [(v.get("tp") or 0) + (v.get("fp") or 0) for v in per.values() if isinstance(v, dict)]
    return float(sum(calls) / n) if n and calls else None

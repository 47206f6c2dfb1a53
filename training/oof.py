"""``python -m training oof``: k-fold out-of-sample predictions, folds by patient.

Mislabel scores need a model that never saw the image's label: here every image
is predicted by the fold model trained without its patient. Patients are split
into ``folds`` seeded groups; for fold k a model trains on the other groups
(with a patient-level validation split for early stopping and thresholds) and
predicts group k. Each fold is a normal run folder (checkpointed, resumable:
a finished fold is skipped on a re-run). The result is one JSON line per image,
``{"image", "patient", "fold", "probabilities": {finding: p}, "thresholds": {…}}``,
which ``cxrview score W --predictions FILE`` stores as out-of-sample predictions.
Reserved NIH patients are excluded as in every run.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from cxrview.core.export import atomic_write_bytes
from cxrview.inference.bundle import load_bundle
from cxrview.inference.evidence import calibrate, operating_points
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset, build_cache
from training.engine import collect_samples, predict
from training.events import EventLog
from training.sources import Sample


def fold_of_patients(patients: list[str], folds: int, seed: int) -> dict[str, int]:
    order = sorted(set(patients))
    rng = np.random.default_rng(seed)
    return {order[i]: n % folds for n, i in enumerate(rng.permutation(len(order)))}


def out_of_fold(config: TrainConfig, folds: int, log: EventLog) -> Path:
    from training.loop import train

    if config.task != CLASSIFICATION:
        raise ValueError("out-of-fold predictions are for classifiers")
    if folds < 2:
        raise ValueError("--folds must be at least 2")
    run = config.run_dir
    run.mkdir(parents=True, exist_ok=True)
    samples = collect_samples(config)
    if not samples:
        raise ValueError("no images found in the configured sources")
    fold = fold_of_patients([s.patient for s in samples], folds, config.seed)
    lines: list[str] = []
    for k in range(folds):
        fold_dir = run / f"fold{k}"
        done_file = fold_dir / "predictions.jsonl"
        held = [s for s in samples if fold[s.patient] == k]
        if not done_file.is_file():
            rest = sorted({s.patient for s in samples if fold[s.patient] != k})
            rng = np.random.default_rng(config.seed + k)
            n_val = max(1, round(len(rest) * config.val_fraction)) if len(rest) > 2 else 0
            val = set(rng.choice(rest, n_val, replace=False).tolist()) if n_val else set()
            split = {"test": [], "val": sorted(val), "train": [p for p in rest if p not in val]}
            fold_dir.mkdir(parents=True, exist_ok=True)
            (fold_dir / "split.json").write_text(json.dumps(split))
            log.emit("phase", name="fold", fold=k, folds=folds, held_out=len(held),
                     train_patients=len(split["train"]))
            cfg = dataclasses.replace(config, out=str(fold_dir), resume=True, evaluate_reserved=False,
                                      test_fraction=0.0)
            bundle = train(cfg, log)
            assert bundle is not None
            done_file.write_text("".join(_predict_lines(bundle, held, k, fold_dir)), encoding="utf-8")
        lines += done_file.read_text(encoding="utf-8").splitlines(keepends=True)
    out = run / "oof_predictions.jsonl"
    atomic_write_bytes(out, "".join(lines).encode("utf-8"))
    log.emit("done", predictions=str(out), images=len(lines), folds=folds)
    return out


def _predict_lines(bundle: Path, samples: list[Sample], k: int, fold_dir: Path) -> list[str]:
    loaded = load_bundle(bundle, device="cpu")
    card = loaded.card
    images, _ = build_cache(samples, card.input_size, None, cache_dir=fold_dir / "cache-held-out",
                            crop=card.crop)
    raw = predict(loaded.model, XrayDataset(samples, images, card), loaded.device, 32, card.task)["probs"]
    probs = calibrate(card, raw)
    out = []
    for sample, p in zip(samples, probs, strict=True):
        out.append(json.dumps({"image": Path(sample.path).name, "patient": sample.patient, "fold": k,
                               "probabilities": {name: round(float(v), 6) for name, v in zip(card.labels, p,
                                                                                               strict=True)},
                               "thresholds": operating_points(card)}) + "\n")
    return out

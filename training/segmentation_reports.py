"""Segmenter metrics: Dice and CTR error against reference masks, and CTRs measured without them.

Masks are judged as the app uses them (anatomically cleaned); on a source with no reference
masks (NIH) the measured CTR is checked against the Cardiomegaly labels instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training import metrics
from training.datasets import XrayDataset, build_cache
from training.engine import predict
from training.events import EventLog
from training.sources import Sample

CTR_STRUCTURES = ("heart", "right_lung", "left_lung")


def ctr_of_stack(masks: np.ndarray, index: dict[str, int]) -> Any:
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


def segmentation_report(labels: list[str], samples: list[Sample],
                        preds: dict[str, np.ndarray]) -> dict[str, Any]:
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
            mp, mt = ctr_of_stack(p, idx), ctr_of_stack(t, idx)
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


def measure_ctrs(loaded: Any, samples: list[Sample], *, cache_dir: Path, batch_size: int = 16) -> np.ndarray:
    """The CTR a segmenter bundle measures on each sample (NaN where none could be measured)."""
    card = loaded.card
    images, _ = build_cache(samples, card.input_size, None, cache_dir=cache_dir, crop=card.crop)
    preds = predict(loaded.model, XrayDataset(samples, images, card), loaded.device, batch_size, card.task)
    where = {name: card.labels.index(name) for name in CTR_STRUCTURES}
    values = []
    for masks in preds["probs"] > 0.5:
        m = ctr_of_stack(cleaned_stack(masks, card.labels), where)
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

"""``python -m training compare``: a candidate model against the active one on the locked set.

Both classifiers predict the same images (each with its own card's
preprocessing); per finding we report both AUROCs, the paired-bootstrap
difference with its 95 % interval, and the number of positives behind it. A
finding with no positive (or no negative) image on the locked set has no AUROC
and is reported as such, never as 0.5. The verdict is deliberately plain:
"better" only when the mean-AUROC difference's interval lies above zero.

The mean-AUROC intervals resample patients, not images: one patient's follow-up
films are not independent evidence. The same comparison runs on the reserved
NIH patients (``--reserved-from CONFIG``) for one-off acceptance reports; there
it also summarises the five findings with most positives, where AUROC is stable.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cxrview.inference.bundle import load_bundle
from cxrview.inference.evidence import operating_points
from training import metrics
from training.classification_reports import commonest_findings
from training.config import CLASSIFICATION
from training.datasets import XrayDataset, build_cache
from training.engine import predict
from training.events import EventLog
from training.sources import Sample, manifest_samples


def _probs(bundle: Path, samples: list[Sample], device: str, batch_size: int, cache: Path) -> tuple[Any, Any]:
    loaded = load_bundle(bundle, device=device)
    card = loaded.card
    if card.task != CLASSIFICATION:
        raise ValueError(f"{bundle}: not a classifier")
    images, _ = build_cache(samples, card.input_size, None, cache_dir=cache / f"{card.input_size}",
                            crop=card.crop)
    out = predict(loaded.model, XrayDataset(samples, images, card), loaded.device, batch_size, card.task)
    return card, out["probs"]


def compare_bundles(candidate: Path, baseline: Path, samples: list[Sample], *, device: str = "auto",
                    batch_size: int = 32, n_boot: int = 1000, locked_set: str = "",
                    log: EventLog | None = None) -> dict[str, Any]:
    if not samples:
        raise ValueError("the locked evaluation set is empty: nothing to compare on")
    with tempfile.TemporaryDirectory(prefix="cxrview-compare-") as tmp:
        card_c, pc = _probs(candidate, samples, device, batch_size, Path(tmp))
        card_b, pb = _probs(baseline, samples, device, batch_size, Path(tmp))
    labels = [name for name in card_c.labels if name in card_b.labels]
    y = np.stack([s.labels for s in samples])
    known = np.stack([s.known for s in samples])
    per: dict[str, Any] = {}
    aurocs_c, aurocs_b = [], []
    for name in labels:
        jc, jb = card_c.labels.index(name), card_b.labels.index(name)
        keep = known[:, jc] > 0  # samples carry labels in the candidate's order
        yy = y[keep, jc]
        entry: dict[str, Any] = {"n_pos": int(yy.sum()), "n_neg": int(len(yy) - yy.sum())}
        if 0 < yy.sum() < len(yy):
            diff, lo, hi = metrics.bootstrap_auroc_diff_ci(yy, pc[keep, jc], pb[keep, jb], n=n_boot)
            entry.update(candidate=metrics.auroc(yy, pc[keep, jc]), baseline=metrics.auroc(yy, pb[keep, jb]),
                         diff=diff, ci=[lo, hi])
            aurocs_c.append(entry["candidate"])
            aurocs_b.append(entry["baseline"])
        else:
            entry.update(candidate=None, baseline=None, diff=None, ci=None)
        per[name] = entry
    mean_c = float(np.mean(aurocs_c)) if aurocs_c else None
    mean_b = float(np.mean(aurocs_b)) if aurocs_b else None
    groups = np.array([s.patient for s in samples])
    mean_ci = _mean_diff_ci(y, known, pc, pb, card_c.labels, card_b.labels, labels, n_boot, groups)
    top = commonest_findings(per, 5, score="candidate")
    commonest = {
        "findings": top, "candidate": float(np.mean([per[n]["candidate"] for n in top])) if top else None,
        "baseline": float(np.mean([per[n]["baseline"] for n in top])) if top else None,
        "diff_ci": _mean_diff_ci(y, known, pc, pb, card_c.labels, card_b.labels, top, n_boot, groups)}
    verdict = "not comparable (no finding has both positives and negatives)"
    if mean_ci is not None:
        verdict = ("better" if mean_ci[0] > 0 else "worse" if mean_ci[1] < 0 else
                   "no clear difference")
    report = {
        "locked_set": locked_set, "n_images": len(samples),
        "n_patients": len({s.patient for s in samples}),
        "candidate": {"name": card_c.name, "version": card_c.version, "mean_auroc": mean_c,
                      "thresholds": operating_points(card_c)},
        "baseline_model": {"name": card_b.name, "version": card_b.version, "mean_auroc": mean_b},
        "mean_auroc_diff_ci": mean_ci, "verdict": verdict, "commonest5": commonest, "per_label": per,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if log is not None:
        log.emit("metric", split="locked", candidate_mean_auroc=mean_c, baseline_mean_auroc=mean_b,
                 verdict=verdict)
    return report


def _mean_diff_ci(y: np.ndarray, known: np.ndarray, pc: np.ndarray, pb: np.ndarray, labels_c: list[str],
                  labels_b: list[str], labels: list[str], n_boot: int,
                  groups: np.ndarray | None = None) -> list[float] | None:
    """Paired bootstrap of the mean-AUROC difference: whole patients (``groups``) are resampled,
    each with all of its images, and both models are scored on the same resample."""
    usable = [n for n in labels
              if 0 < y[known[:, labels_c.index(n)] > 0, labels_c.index(n)].sum()
              < (known[:, labels_c.index(n)] > 0).sum()]
    if not usable:
        return None
    rng = np.random.default_rng(0)
    if groups is None:
        groups = np.arange(len(y))
    patients, inverse = np.unique(groups, return_inverse=True)
    rows_of = [np.flatnonzero(inverse == i) for i in range(len(patients))]
    diffs = []
    for _ in range(max(50, n_boot // 5)):
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, len(patients), len(patients))])
        values = []
        for name in usable:
            jc, jb = labels_c.index(name), labels_b.index(name)
            keep = known[idx, jc] > 0
            yy = y[idx, jc][keep]
            if 0 < yy.sum() < len(yy):
                auroc_c, auroc_b = metrics.auroc(yy, pc[idx, jc][keep]), metrics.auroc(yy, pb[idx, jb][keep])
                if auroc_c is not None and auroc_b is not None:  # always, with both classes present
                    values.append(auroc_c - auroc_b)
        if values:
            diffs.append(float(np.mean(values)))
    if not diffs:
        return None
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return [float(lo), float(hi)]


def summary_line(report: dict[str, Any]) -> str:
    """One human line for the CLI: both means, the five commonest, their intervals, the verdict."""
    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    def ci(v: list[float] | None) -> str:
        return f"[{v[0]:+.3f}, {v[1]:+.3f}]" if v else "n/a"

    top = report["commonest5"]
    return (f"{report['n_images']} images of {report['n_patients']} patients: mean AUROC "
            f"{num(report['candidate']['mean_auroc'])} vs {num(report['baseline_model']['mean_auroc'])} "
            f"(difference 95% CI {ci(report['mean_auroc_diff_ci'])}); five commonest "
            f"{num(top['candidate'])} vs {num(top['baseline'])} (CI {ci(top['diff_ci'])}): "
            f"{report['verdict']}")


def locked_samples(manifest: Path, labels: list[str]) -> list[Sample]:
    return manifest_samples(manifest, labels, splits=("locked",), exclude_reserved=True)


def reserved_samples(config_path: Path, labels: list[str]) -> list[Sample]:
    """The reserved NIH patients' images in a training config's sources (acceptance reports only)."""
    from training.config import TrainConfig
    from training.engine import collect_samples

    config = TrainConfig.from_json(config_path)
    config.labels = list(labels)
    return collect_samples(config, reserved_only=True)

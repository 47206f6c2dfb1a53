"""Segmenters on the reserved Wingspan third and on JSRT's test films, side by side.

The Wingspan CTR set (259 adult frontal films from Chinese, Korean and Japanese
hospitals, expert heart/lung masks, MIT) is another source than JSRT's digitised
films; its sorted positions 0, 3, 6, … (87 films) are reserved for acceptance
and never trained or tuned on. For each bundle this reports, on those films and
on JSRT's test split (the first bundle's card names it): Dice per structure of
the masks as the app uses them (anatomically cleaned) and of the raw network
output, the CTR's absolute error against the masks' CTR and against Wingspan's
published ground-truth CTRs (``ctr_ground_truth.csv``, 71 of the reserved films),
and the share of films with a measurable CTR; and the paired per-film Dice
difference of the first bundle against each other one, with a bootstrap interval.

    .venv/bin/python benchmarks/segmenter_wingspan.py NEW_BUNDLE OLD_BUNDLE \\
        [--wingspan ~/cxrdata/wingspan/wingspan] [--jsrt ~/cxrdata/jsrt/JSRT] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_image_dice(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    inter = np.logical_and(pred, true).sum(axis=(2, 3), dtype=np.float64)
    total = pred.sum(axis=(2, 3), dtype=np.float64) + true.sum(axis=(2, 3), dtype=np.float64)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def run(bundle: Path, samples: list, cache: Path, truth: dict[str, float]) -> tuple[dict, np.ndarray]:
    from cxrview.inference.bundle import load_bundle
    from training.datasets import XrayDataset, build_cache
    from training.engine import predict
    from training.segmentation_reports import CTR_STRUCTURES, cleaned_stack, ctr_of_stack, segmentation_report

    loaded = load_bundle(bundle, device="cpu")
    card = loaded.card
    images, masks = build_cache(samples, card.input_size, card.labels, cache_dir=cache)
    dataset = XrayDataset(samples, images, card, masks=masks)
    preds = predict(loaded.model, dataset, loaded.device, 8, card.task)
    report = segmentation_report(card.labels, samples, preds)
    cleaned = np.stack([cleaned_stack(m, card.labels) for m in preds["probs"] > 0.5])
    if truth:  # the dataset's published CTRs, not only our reading of its masks
        where = {name: card.labels.index(name) for name in CTR_STRUCTURES}
        errors, missing = [], 0
        for sample, m in zip(samples, cleaned, strict=True):
            name = Path(sample.path).name
            if name not in truth:
                continue
            measured = ctr_of_stack(m, where)
            if measured is None:
                missing += 1
            else:
                errors.append(abs(measured.value - truth[name]))
        report["ctr_vs_published"] = {"n": len(errors), "failed": missing,
                                      "mean": float(np.mean(errors)) if errors else None,
                                      "median": float(np.median(errors)) if errors else None}
    return report, per_image_dice(cleaned, preds["masks"])


def main() -> int:
    from cxrview.inference.card import ModelCard
    from training.sources import apply_split, mask_samples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--wingspan", type=Path, default=Path("~/cxrdata/wingspan/wingspan").expanduser())
    parser.add_argument("--jsrt", type=Path, default=Path("~/cxrdata/jsrt/JSRT").expanduser())
    parser.add_argument("--json")
    args = parser.parse_args()

    sets = {"Wingspan reserved third": mask_samples(args.wingspan / "png", args.wingspan / "mask",
                                                    source="wingspan", reserved_every=3, only_reserved=True)}
    split = ModelCard.read(args.bundles[0]).training.get("split_patients") or {}
    # The card names JSRT by the source name its config gave it ("jsrt", or "masks" for a config
    # that kept 1.0.0's split); read it from the split's ids (JSRT films are named JPC…).
    jsrt_names = {key.split(":", 1)[0] for ids in split.values() for key in ids
                  if ":" in key and key.split(":", 1)[1].startswith("JPC")}
    jsrt = mask_samples(args.jsrt / "jsrt_images" / "images", args.jsrt / "masks" / "masks",
                        source=next(iter(jsrt_names), "jsrt"))
    test = apply_split(jsrt, split).get("test") if split else None
    if test:
        sets["JSRT test split"] = test
    truth: dict[str, float] = {}
    for csv_path in (args.wingspan / "ctr_ground_truth.csv", args.wingspan.parent / "ctr_ground_truth.csv"):
        if csv_path.is_file():
            import csv

            with open(csv_path, newline="") as handle:
                truth = {row["id"]: float(row["ctr"]) for row in csv.DictReader(handle)}
            break
    report: dict = {}
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="cxrview-seg-bench-") as tmp:
        for name, samples in sets.items():
            print(f"\n{name}: {len(samples)} films")
            results = {str(b): run(b, samples, Path(tmp) / b.name, truth if "Wingspan" in name else {})
                       for b in args.bundles}
            report[name] = {b: r for b, (r, _) in results.items()}
            for bundle, (r, _) in results.items():
                card = ModelCard.read(bundle)
                ctr = r.get("ctr_abs_error") or {}
                dice = " ".join(f"{k} {v:.3f}" for k, v in r["dice"].items())
                raw = " ".join(f"{v:.3f}" for v in r["dice_raw"].values())
                nan = float("nan")
                print(f"  {card.name} {card.version}: Dice {dice} (raw {raw}); CTR error mean "
                      f"{ctr.get('mean') or nan:.4f}, median {ctr.get('median') or nan:.4f}, "
                      f"measured on {ctr.get('measured_share') or 0:.1%} ({ctr.get('failed')} failed)")
                if r.get("ctr_vs_published"):
                    pub = r["ctr_vs_published"]
                    print(f"    CTR vs the published ground truth ({pub['n']} films): mean error "
                          f"{pub['mean'] or nan:.4f}, median {pub['median'] or nan:.4f}; "
                          f"{pub['failed']} not measured")
            first, (_, base) = str(args.bundles[0]), results[str(args.bundles[0])]
            labels = ModelCard.read(args.bundles[0]).labels
            for other in args.bundles[1:]:
                diff = base - results[str(other)][1]
                boots = [diff[rng.integers(0, len(diff), len(diff))].mean(axis=0) for _ in range(2000)]
                lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
                parts = [f"{lab} {diff[:, j].mean():+.4f} [{lo[j]:+.4f}, {hi[j]:+.4f}]" for j, lab in
                         enumerate(labels)]
                print(f"  paired Dice difference {Path(first).name} − {other.name}: " + "; ".join(parts))
                report[name][f"dice_diff_vs_{other}"] = {
                    lab: [float(diff[:, j].mean()), float(lo[j]), float(hi[j])]
                    for j, lab in enumerate(labels)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

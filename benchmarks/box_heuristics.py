"""How well do Grad-CAM boxes land on NIH's official boxes? Compare box heuristics.

For every local NIH image with an official box (BBox_List_2017) whose patient is
NOT reserved (ID divisible by 5), compute the classifier's Grad-CAM for the boxed
finding and the boxes of several heuristics; report the mean IoU of each
heuristic's top box with the official one and the hit rate (IoU ≥ 0.1 / 0.3).
NIH boxes are in the 1024-px frame; they are scaled to the local image.

    .venv/bin/python benchmarks/box_heuristics.py --images DIR [--images DIR2] [--model BUNDLE]

Note: the shipped classifier trained on most of these images (their labels, not
their boxes), so this measures localisation, not classification.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    from cxrview.core import load_image
    from cxrview.inference.boxes import Box, _iou, boxes_from_cam, load_priors
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import shipped_bundle

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", action="append", required=True)
    parser.add_argument("--bbox", default=str(REPO.parent / "shared/data/nih/BBox_List_2017.csv.gz"))
    parser.add_argument("--model", default=str(shipped_bundle("classifier")))
    parser.add_argument("--min-cam-side", type=int, help="override gradcam.MIN_CAM_SIDE (1 = last block)")
    args = parser.parse_args()
    if args.min_cam_side is not None:
        from cxrview.inference import gradcam

        gradcam.MIN_CAM_SIDE = args.min_cam_side

    local = {p.name: p for d in args.images for p in Path(d).rglob("*.png")}
    truth: dict[str, list[tuple[str, float, float, float, float]]] = {}
    with gzip.open(args.bbox, "rt", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row in reader:
            name, finding = row[0], row[1].replace("Infiltrate", "Infiltration")
            if name in local and int(name.split("_")[0]) % 5 != 0:
                truth.setdefault(name, []).append((finding, *map(float, row[2:6])))
    predictor = Predictor(args.model, None, device="cpu")
    priors = load_priors()
    variants = {
        "size prior, 3 levels (shipped)": dict(priors=priors),
        "heat only, 3 levels": dict(priors={}),
        "size prior, 0.5 only": dict(priors=priors, thresholds=(0.5,)),
        "heat only, 0.5 only": dict(priors={}, thresholds=(0.5,)),
    }
    ious: dict[str, list[float]] = {k: [] for k in variants}
    start = time.perf_counter()
    n = 0
    for name, boxes in sorted(truth.items()):
        image = load_image(local[name])
        scale_x, scale_y = image.width / 1024.0, image.height / 1024.0
        for finding, x, y, w, h in boxes:
            if finding not in predictor.card.labels:
                continue
            cam = predictor.cam(image, finding)
            gt = Box(finding, x * scale_x, y * scale_y, w * scale_x, h * scale_y, 1.0)
            for label, kw in variants.items():
                found = boxes_from_cam(cam, finding, (image.width, image.height), **kw)
                ious[label].append(_iou(found[0], gt) if found else 0.0)
            n += 1
    print(f"{n} official boxes on {len(truth)} non-reserved local images, model {predictor.card.name} "
          f"{predictor.card.version} ({time.perf_counter() - start:.0f} s)")
    for label, values in ious.items():
        if values:
            hit1 = sum(v >= 0.1 for v in values) / len(values)
            hit3 = sum(v >= 0.3 for v in values) / len(values)
            mean = statistics.mean(values)
            print(f"  {label:32s} mean IoU {mean:.3f}  IoU≥0.1 {hit1:.0%}  IoU≥0.3 {hit3:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

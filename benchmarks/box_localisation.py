"""Localisation against NIH's official boxes, with and without the thorax bound.

For every local NIH image with an official box (BBox_List_2017, 1024-px frame,
scaled to the local image) whose patient is NOT reserved (ID divisible by 5),
the classifier's Grad-CAM map and boxes for the boxed finding are computed
twice — as shipped (maps and boxes restricted to the segmenter's thorax) and
unrestricted — and scored as Wang et al. 2017 (ChestX-ray8, CVPR) score weakly
supervised localisation:

* **peak hit**: the map's maximum lies inside the official box;
* **IoBB ≥ T** for T = 0.1, 0.25, 0.5: intersection over the *predicted* box's
  area, for the top box and for the best of the (up to 3) boxes;
* mean IoU of the top box; share of boxes entirely inside the thorax outline;
  share of peaks outside the thorax.

Per finding and overall. The classifier trained on most of these images'
labels (never on boxes), so this measures where the evidence sits, not whether
the finding is detected: maps are asked for the boxed finding whatever the
classifier's probability.

    .venv/bin/python benchmarks/box_localisation.py --images ~/cxrdata/nih1000 \\
        --images ../shared/data/nih/images_256 [--model BUNDLE] [--segmenter BUNDLE] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

THRESHOLDS = (0.1, 0.25, 0.5)


def iobb(pred: tuple[float, float, float, float], gt: tuple[float, float, float, float]) -> float:
    """Intersection over the predicted box's area (Wang et al. 2017)."""
    px, py, pw, ph = pred
    gx, gy, gw, gh = gt
    ix = max(0.0, min(px + pw, gx + gw) - max(px, gx))
    iy = max(0.0, min(py + ph, gy + gh) - max(py, gy))
    return ix * iy / (pw * ph) if pw * ph > 0 else 0.0


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    union = a[2] * a[3] + b[2] * b[3] - ix * iy
    return ix * iy / union if union > 0 else 0.0


def score(prediction, finding: str, gt: tuple[float, float, float, float]) -> dict:
    from cxrview.inference.thorax import box_inside, polygon_region

    cam = prediction.cam_at_original(finding)
    peak_y, peak_x = np.unravel_index(int(np.argmax(cam)), cam.shape)
    gx, gy, gw, gh = gt
    row = {"peak_hit": gx <= peak_x + 0.5 <= gx + gw and gy <= peak_y + 0.5 <= gy + gh}
    thorax = prediction.thorax
    if thorax:
        region = polygon_region(thorax, prediction.image_size, cam.shape)
        row["peak_outside_thorax"] = bool(region is not None and not region[peak_y, peak_x])
    boxes = [(b.x, b.y, b.w, b.h) for b in prediction.boxes if b.finding == finding]
    row["n_boxes"] = len(boxes)
    row["top_iou"] = iou(boxes[0], gt) if boxes else 0.0
    for t in THRESHOLDS:
        row[f"top_iobb_{t}"] = bool(boxes) and iobb(boxes[0], gt) >= t
        row[f"any_iobb_{t}"] = any(iobb(b, gt) >= t for b in boxes)
    if thorax and boxes:
        row["boxes_inside_thorax"] = all(box_inside(b, thorax) for b in prediction.boxes
                                         if b.finding == finding)
    return row


def summarise(rows: list[dict]) -> dict:
    out = {"n": len(rows), "mean_top_iou": statistics.mean(r["top_iou"] for r in rows) if rows else None}
    for key in ("peak_hit", *(f"{k}_iobb_{t}" for k in ("top", "any") for t in THRESHOLDS),
                "boxes_inside_thorax", "peak_outside_thorax"):
        values = [r[key] for r in rows if key in r]
        out[key] = sum(values) / len(values) if values else None
    return out


def main() -> int:
    from cxrview.core import load_image
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import shipped_bundle
    from training.sources import is_reserved_patient, read_bbox_list

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", action="append", required=True)
    parser.add_argument("--bbox", default=str(REPO.parent / "shared/data/nih/BBox_List_2017.csv.gz"))
    parser.add_argument("--model", default=str(shipped_bundle("classifier")))
    parser.add_argument("--segmenter", default=str(shipped_bundle("segmenter")))
    parser.add_argument("--json", help="write per-finding results here")
    args = parser.parse_args()

    local = {p.name: p for d in args.images for p in sorted(Path(d).expanduser().rglob("*.png"))}
    official = read_bbox_list(args.bbox)
    truth = {name: boxes for name, boxes in official.items()
             if name in local and not is_reserved_patient(int(name.split("_")[0]))}
    variants = {"thorax-bound (shipped)": Predictor(args.model, args.segmenter, device="cpu"),
                "unrestricted": Predictor(args.model, args.segmenter, device="cpu", thorax_bound=False)}
    labels = variants["unrestricted"].card.labels
    rows: dict[str, list[tuple[str, dict]]] = {k: [] for k in variants}
    start = time.perf_counter()
    for name, boxes in sorted(truth.items()):
        image = load_image(local[name])
        sx, sy = image.width / 1024.0, image.height / 1024.0
        wanted = sorted({finding for finding, *_ in boxes if finding in labels})
        if not wanted:
            continue
        for label, predictor in variants.items():
            prediction = predictor.predict(image, cam_for=wanted)
            for finding, x, y, w, h in boxes:
                if finding in labels:
                    gt = (x * sx, y * sy, w * sx, h * sy)
                    rows[label].append((finding, score(prediction, finding, gt)))
    elapsed = time.perf_counter() - start
    first = next(iter(variants.values()))
    n = len(next(iter(rows.values())))
    print(f"{n} official boxes on {len(truth)} non-reserved local images; classifier {first.card.name} "
          f"{first.card.version}, segmenter {first.segmenter_card.name} {first.segmenter_card.version} "
          f"({elapsed:.0f} s)")
    report: dict = {"n_boxes": n, "n_images": len(truth), "model": first.model_info(), "variants": {}}
    header = (f"  {'':24s} {'n':>4s} {'peak in':>8s} "
              + " ".join(f"{'IoBB≥' + str(t):>9s}" for t in THRESHOLDS)
              + f" {'any≥0.1':>8s} {'IoU':>6s} {'in thorax':>9s} {'peak out':>8s}")
    for label, found in rows.items():
        overall = summarise([r for _, r in found])
        per = {f: summarise([r for g, r in found if g == f]) for f in sorted({g for g, _ in found})}
        report["variants"][label] = {"overall": overall, "per_finding": per}
        print(f"\n{label}\n{header}")
        for finding, s in [("all", overall), *per.items()]:
            def pct(v: float | None) -> str:
                return "      -" if v is None else f"{v:7.0%}"
            print(f"  {finding:24s} {s['n']:4d} {pct(s['peak_hit']):>8s} "
                  + " ".join(f"{pct(s[f'top_iobb_{t}']):>9s}" for t in THRESHOLDS)
                  + f" {pct(s['any_iobb_0.1']):>8s} {s['mean_top_iou']:6.3f}"
                  f" {pct(s['boxes_inside_thorax']):>9s} {pct(s['peak_outside_thorax']):>8s}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

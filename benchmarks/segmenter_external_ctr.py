"""Two lung/heart segmenters, paired, on NIH images that have no reference masks.

JSRT test Dice says how well a segmenter fits the films it was trained on; this
says whether it holds up on another source. For every NIH image of a
non-reserved patient (ID not divisible by 5) both segmenters measure the
cardiothoracic ratio; on the images where both succeed we report how well each
CTR separates images labelled Cardiomegaly from the rest (AUROC), the paired
bootstrap interval of the difference, and how often the two CTRs disagree.

    .venv/bin/python benchmarks/segmenter_external_ctr.py A_BUNDLE B_BUNDLE \\
        --images DIR [--images DIR2] --data-entry Data_Entry_2017_v2020.csv.gz
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from cxrview.inference.bundle import load_bundle
from training.metrics import auroc
from training.segmentation_reports import measure_ctrs
from training.sources import nih_samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--images", action="append", required=True, help="NIH image folder (repeatable)")
    parser.add_argument("--data-entry", required=True)
    parser.add_argument("--boot", type=int, default=2000)
    args = parser.parse_args()

    samples = nih_samples(args.images, args.data_entry, ["Cardiomegaly"], exclude_reserved=True)
    y = np.array([int(s.labels[0]) for s in samples])
    with tempfile.TemporaryDirectory(prefix="cxrview-ctr-") as tmp:
        a, b = (measure_ctrs(load_bundle(bundle, device="cpu"), samples, cache_dir=Path(tmp))
                for bundle in (args.a, args.b))
    both = ~np.isnan(a) & ~np.isnan(b)
    print(f"{len(samples)} images; no CTR: A {int(np.isnan(a).sum())}, B {int(np.isnan(b).sum())}; "
          f"measured by both on {int(both.sum())} ({int(y[both].sum())} labelled Cardiomegaly)")
    y, a, b = y[both], a[both], b[both]
    print(f"Cardiomegaly AUROC of the CTR: A {auroc(y, a):.3f}  B {auroc(y, b):.3f}")
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.boot):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            diffs.append(auroc(y[i], a[i]) - auroc(y[i], b[i]))
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    print(f"A - B: 95% CI [{lo:+.3f}, {hi:+.3f}] (paired bootstrap over images)")
    print(f"median CTR A {np.median(a):.3f}  B {np.median(b):.3f}; "
          f"correlation {np.corrcoef(a, b)[0, 1]:.3f}; "
          f"|A - B| > 0.05 on {100 * np.mean(np.abs(a - b) > 0.05):.1f}% of images")


if __name__ == "__main__":
    main()

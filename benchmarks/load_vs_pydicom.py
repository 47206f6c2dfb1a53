"""Load-to-display-ready time of a real chest DICOM vs bare pydicom, in one process.

    .venv/bin/python benchmarks/load_vs_pydicom.py [PATH] [--repeat N]

"Ours" = cxrview.core.load_image (header, decode, modality LUT, presets from the
histogram, content hash, metadata) + render_display (VOI + MONOCHROME1 -> uint8),
i.e. everything before the GUI makes a pixmap. "Bare" = pydicom.dcmread(path).pixel_array,
which only decodes. Runs alternate so both see the same cache and CPU state.
Goal from the foundation issue: ratio <= 1.3.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pydicom

from cxrview.core import load_image, render_display

DEFAULT = Path(__file__).resolve().parents[2] / "shared/data/dicom/chest_cr_mono1_15bit_jpeg2000_lossy.dcm"


def bare(path: Path) -> None:
    pydicom.dcmread(path).pixel_array  # noqa: B018 - the decode is the point


def ours(path: Path) -> None:
    render_display(load_image(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    bare(args.path)  # warm imports and decoder plugins for both
    ours(args.path)
    times: dict[str, list[float]] = {"bare pydicom .pixel_array": [], "cxrview load+display": []}
    for _ in range(args.repeat):
        for name, fn in (("bare pydicom .pixel_array", bare), ("cxrview load+display", ours)):
            start = time.perf_counter()
            fn(args.path)
            times[name].append((time.perf_counter() - start) * 1000)
    for name, values in times.items():
        print(f"{name:28s} median {statistics.median(values):7.1f} ms   "
              f"min {min(values):7.1f}   max {max(values):7.1f}   (n={len(values)})")
    ratio = statistics.median(times["cxrview load+display"]) / statistics.median(
        times["bare pydicom .pixel_array"])
    print(f"ratio (median ours / median bare): {ratio:.2f}x   goal <= 1.3x")


if __name__ == "__main__":
    main()

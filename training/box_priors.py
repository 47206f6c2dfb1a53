"""Per-finding typical box size from NIH's BBox_List_2017 → ``resources/box_priors.json``.

``python -m training.box_priors ../shared/data/nih/BBox_List_2017.csv.gz [--out FILE]``

Grad-CAM blobs come in every size; radiologists' boxes for a finding do not
(a nodule is small, an effusion wide). The app's box heuristic prefers CAM
components close to the finding's median size, so the medians live in a small
JSON shipped with the app, normalised to the image size (NIH boxes are in the
1024 × 1024 pixels of the original PNGs) so they apply at any resolution.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from training.sources import read_bbox_list

NIH_IMAGE_SIZE = 1024.0
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "resources" / "box_priors.json"


def _quartiles(v: list[float]) -> list[float]:
    """First and third quartiles, rounded (the one value twice when there is only one)."""
    if len(v) > 1:
        return [round(q, 4) for q in statistics.quantiles(v, n=4)[::2]]
    return [round(v[0], 4)] * 2


def box_priors(csv_path: str | Path) -> dict[str, Any]:
    """{"source", "image_size", "findings": {name: {"w", "h", "n", "w_q", "h_q"}}} (w/h as fractions)."""
    sizes: dict[str, list[tuple[float, float]]] = {}
    for boxes in read_bbox_list(csv_path).values():
        for finding, _x, _y, w, h in boxes:
            if w > 0 and h > 0:
                sizes.setdefault(finding, []).append((w / NIH_IMAGE_SIZE, h / NIH_IMAGE_SIZE))
    findings: dict[str, Any] = {}
    for finding in sorted(sizes):
        ws = sorted(w for w, _ in sizes[finding])
        hs = sorted(h for _, h in sizes[finding])
        findings[finding] = {"w": round(statistics.median(ws), 4), "h": round(statistics.median(hs), 4),
                             "n": len(ws), "w_q": _quartiles(ws), "h_q": _quartiles(hs)}
    return {"source": Path(csv_path).name, "image_size": int(NIH_IMAGE_SIZE),
            "note": "median box width/height per finding as a fraction of the image; w_q/h_q = "
                    "first and third quartiles", "findings": findings}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.box_priors", description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="BBox_List_2017.csv(.gz)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    try:
        priors = box_priors(args.csv)
    except (OSError, ValueError) as exc:
        print(f"box_priors: error: {args.csv}: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in priors["findings"].items())
    head = json.dumps({k: v for k, v in priors.items() if k != "findings"}, indent=2)[:-2]
    out.write_text(f'{head},\n  "findings": {{\n{rows}\n  }}\n}}\n', encoding="utf-8")
    counts = ", ".join(f"{k} {v['n']}" for k, v in priors["findings"].items())
    print(f"wrote {out}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

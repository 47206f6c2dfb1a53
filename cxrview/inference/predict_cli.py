"""``cxrview predict PATH... [--json|--csv] [--model DIR] [--segmenter DIR] [--device D] [--no-cache]``.

Batch scoring without the GUI, with the same ``Predictor`` the viewer uses.
Output goes to stdout (text, one JSON object per line, or CSV); every problem
is one line on stderr naming the file. An unreadable image does not stop the
run (a folder of 10 000 films must not die on file 17); the exit code is 2 at
the end if any image failed. A missing or broken bundle stops at once with
exit code 2. Results are cached (``cache.py``) unless ``--no-cache``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cxrview.inference.predict import Predictor

from cxrview.cli_errors import EXIT_FAILED, EXIT_OK, print_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``predict`` subcommand's options (for ``cxrview/cli.py``'s subparser)."""
    from cxrview.inference.bundle import DEVICE_CHOICES

    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders of images")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per image per line")
    fmt.add_argument("--csv", action="store_true", help="CSV: path, probability per finding, ctr, validity")
    parser.add_argument("--model", metavar="DIR", help="classifier bundle (default: the shipped one)")
    parser.add_argument("--segmenter", metavar="DIR", help="lung/heart bundle (default: the shipped one)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: auto")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")
    parser.add_argument("--cache-db", metavar="FILE", help=argparse.SUPPRESS)  # tests / custom location



def _expand(paths: Sequence[str], failures: list[str]) -> Iterator[Path]:
    """Files as given; folders → their images (natural order). An empty folder counts as a failure."""
    from cxrview.core import find_images

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = find_images(path)
            if not found:
                print_error(f"{path}: no images in this folder")
                failures.append(str(path))
            yield from found
        else:
            yield path


def _text(d: dict[str, Any]) -> str:
    lines = [f"{d['path']}  ({d['image_size'][0]}×{d['image_size'][1]})"
             + ("  [cached]" if d.get("cached") else "")]
    width = max(len(n) for n in d["findings"])
    boxes: dict[str, list[dict[str, Any]]] = {}
    for box in d["boxes"]:
        boxes.setdefault(box["finding"], []).append(box)
    for name, f in d["findings"].items():
        mark = "POSITIVE" if f["positive"] else ""
        where = "".join(f"  box {b['x']:.0f},{b['y']:.0f} {b['w']:.0f}×{b['h']:.0f}"
                        for b in boxes.get(name, [])[:1])
        lines.append(f"  {name:<{width}}  {f['probability']:.3f}  (threshold {f['threshold']:.2f})  "
                     f"{mark}{where}".rstrip())
    ctr = d["ctr"]
    if ctr is None:
        lines.append("  CTR: not measurable" if d["model"].get("segmenter") else "  CTR: no segmenter")
    else:
        lines.append(f"  CTR: {ctr['value']:.3f}" + (f"  ({ctr['flag']})" if ctr["flag"] else ""))
    validity = d["validity"]
    lines.append("  Input check: ok" if validity["ok"] else
                 "  Input check: " + "; ".join(validity["warnings"]))
    return "\n".join(lines)


def _predictor(args: argparse.Namespace) -> Predictor:
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle

    classifier = Path(args.model) if args.model else shipped_bundle(CLASSIFIER)
    segmenter = Path(args.segmenter) if args.segmenter else shipped_bundle(SEGMENTER)
    return Predictor(classifier, segmenter, device=args.device)


def run_predict(args: argparse.Namespace) -> int:
    """Predict every image named in ``args``; 0 when all succeeded, 2 otherwise."""
    from cxrview.core import ImageLoadError, load_image
    from cxrview.inference.card import BundleError

    try:
        predictor = _predictor(args)
    except BundleError as exc:
        print_error(str(exc))
        return EXIT_FAILED
    except (ImportError, OSError, RuntimeError) as exc:  # torch missing, unreadable folder, bad weights
        print_error(f"cannot load the models ({type(exc).__name__}: {exc})")
        return EXIT_FAILED
    cache = None
    if not getattr(args, "no_cache", False):
        from cxrview.inference.cache import ResultCache

        cache = ResultCache(getattr(args, "cache_db", None))
    labels = list(predictor.card.labels)
    writer = None
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["path", *labels, "ctr", "validity_ok"])
    failures: list[str] = []
    for path in _expand(args.paths, failures):
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            print_error(str(exc))
            failures.append(str(path))
            continue
        key = predictor.cache_key(image) if cache is not None else None
        data = cache.get(key) if cache is not None and key is not None else None
        if data is not None:
            data = {**data, "path": image.path, "cached": True}
        else:
            try:
                data = predictor.predict(image).to_dict()
            except (RuntimeError, ValueError, MemoryError) as exc:
                print_error(f"{path}: prediction failed ({type(exc).__name__}: {exc})")
                failures.append(str(path))
                continue
            if cache is not None and key is not None:
                cache.put(key, data)
        if writer is not None:
            ctr = data["ctr"]["value"] if data["ctr"] else ""
            writer.writerow([data["path"], *(data["findings"][n]["probability"] for n in labels), ctr,
                             int(bool(data["validity"]["ok"]))])
        elif args.json:
            print(json.dumps(data))
        else:
            print(_text(data))
        sys.stdout.flush()
    return EXIT_FAILED if failures else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry (``python -m cxrview.inference.predict_cli``) until ``cxrview predict`` is wired."""
    parser = argparse.ArgumentParser(prog="cxrview predict", description=__doc__.split("\n\n")[1])
    add_arguments(parser)
    try:
        return run_predict(parser.parse_args(argv))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

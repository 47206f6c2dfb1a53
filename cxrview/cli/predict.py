"""``cxrview predict PATH... [--json|--csv] [--model DIR] [--segmenter DIR] [--device D] [--force]``.

Batch scoring without the GUI, with the same ``Predictor`` and the same
cache-first path (``scoring.predict_cached``) the viewer uses. Output goes to
stdout (text, one JSON object per line, or CSV); every problem is one line on
stderr naming the file. An unreadable image does not stop the run (a folder of
10 000 films must not die on file 17); the exit code is 2 at the end if any
image failed. A missing or broken bundle stops at once with exit code 2.
Results are cached (``cache.py``) unless ``--no-cache``.

What is printed goes through the gate (``gate.presented``): a film the input
check withholds (not a frontal adult chest radiograph) is reported with
``"withheld": true`` and its reasons, and its probabilities, boxes, contours
and CTR are printed only with ``--force``. Not-validated findings are marked
and never positive.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrview.cli.errors import EXIT_FAILED, EXIT_OK, print_error

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from cxrview.inference.predict import Predictor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``predict`` subcommand's options."""
    from cxrview.inference.bundle import DEVICE_CHOICES

    parser.add_argument("paths", nargs="+", metavar="PATH", help="images or folders of images")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="one JSON object per image per line")
    fmt.add_argument("--csv", action="store_true", help="CSV: path, probability per finding, ctr, validity")
    parser.add_argument("--model", metavar="DIR",
                        help="classifier bundle (default: the active model, see `cxrview models`)")
    parser.add_argument("--segmenter", metavar="DIR", help="lung/heart bundle (default: the shipped one)")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="default: auto")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the results cache")
    parser.add_argument("--force", action="store_true",
                        help="print the AI output even for films the input check withholds")
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


def _interval(ci: list[float] | None) -> str:
    return f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else ""


def _text(d: dict[str, Any]) -> str:
    lines = [f"{d['path']}  ({d['image_size'][0]}×{d['image_size'][1]})"
             + ("  [cached]" if d.get("cached") else "")]
    reasons = (d.get("validity") or {}).get("reasons") or []
    if d.get("withheld") and not d.get("forced"):
        lines.append("  AI output withheld: not a frontal adult chest radiograph")
        lines += [f"    - {reason}" for reason in reasons]
        lines.append("    (--force prints the model's output anyway)")
        return "\n".join(lines)
    if d.get("forced"):
        lines.append("  SHOWN ON REQUEST (--force): input check failed: " + "; ".join(reasons))
    findings = d["findings"]
    width = max((len(n) for n in findings), default=0)
    boxes: dict[str, list[dict[str, Any]]] = {}
    for box in d["boxes"]:
        boxes.setdefault(box["finding"], []).append(box)
    validated = [n for n, f in findings.items() if f.get("validated")]
    ordered = sorted(validated, key=lambda n: (not findings[n]["positive"], -findings[n]["probability"]))
    for name in ordered:
        f = findings[name]
        mark = "POSITIVE" if f["positive"] else ""
        where = "".join(f"  box {b['x']:.0f},{b['y']:.0f} {b['w']:.0f}×{b['h']:.0f}"
                        for b in boxes.get(name, [])[:1])
        evidence = (f"operating point {f['threshold']:.2f}: sensitivity {f['sensitivity']:.2f}"
                    f"{_interval(f.get('sensitivity_ci'))}, specificity {f['specificity']:.2f}"
                    f"{_interval(f.get('specificity_ci'))}")
        lines.append(f"  {name:<{width}}  {f['probability']:.3f}  ({evidence})  {mark}{where}".rstrip())
    others = [n for n in findings if n not in validated]
    if others:
        lines.append("  not validated (never called positive): " + ", ".join(
            f"{n} {findings[n]['probability']:.3f} ({findings[n].get('n_positives', 0)} positives)"
            for n in others))
    ctr = d["ctr"]
    if ctr is None:
        lines.append("  CTR: not measurable" if d["model"].get("segmenter") else "  CTR: no segmenter")
    else:
        lines.append(f"  CTR: {ctr['value']:.3f}" + (f"  ({ctr['flag']})" if ctr["flag"] else ""))
    validity = d["validity"]
    lines.append("  Input check: ok" if validity["ok"] else
                 "  Input check: " + "; ".join(validity["warnings"]))
    lines.append("  AI: research use, not for diagnosis")
    return "\n".join(lines)


def default_classifier() -> Path:
    """The registry's active classifier (``cxrview models activate``; the shipped one until a
    fine-tuned version is activated), as the GUI uses; the shipped bundle without a registry."""
    from cxrview.inference.registry import ModelRegistry, RegistryError
    from cxrview.inference.shipped import CLASSIFIER, shipped_bundle

    try:
        return Path(ModelRegistry().active_path(CLASSIFIER))
    except (RegistryError, OSError, ValueError):
        return shipped_bundle(CLASSIFIER)


def _predictor(args: argparse.Namespace) -> Predictor:
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import SEGMENTER, shipped_bundle

    classifier = Path(args.model) if args.model else default_classifier()
    segmenter = Path(args.segmenter) if args.segmenter else shipped_bundle(SEGMENTER)
    return Predictor(classifier, segmenter, device=args.device)


def run(args: argparse.Namespace) -> int:
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
    from cxrview.inference.gate import presented
    from cxrview.inference.scoring import predict_cached

    force = bool(getattr(args, "force", False))
    labels = list(predictor.card.labels)
    writer = None
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["path", *labels, "ctr", "validity_ok", "withheld"])
    failures: list[str] = []
    for path in _expand(args.paths, failures):
        try:
            image = load_image(path)
        except ImageLoadError as exc:
            print_error(str(exc))
            failures.append(str(path))
            continue
        try:
            scored = predict_cached(predictor, image, cache=cache)
        except (RuntimeError, ValueError, MemoryError) as exc:
            print_error(f"{path}: prediction failed ({type(exc).__name__}: {exc})")
            failures.append(str(path))
            continue
        data = presented(scored.data, force=force)
        if scored.cached:
            data["cached"] = True
        if writer is not None:
            ctr = data["ctr"]["value"] if data["ctr"] else ""
            writer.writerow([data["path"], *(data["findings"][n]["probability"] if n in data["findings"]
                                             else "" for n in labels), ctr,
                             int(bool(data["validity"]["ok"])), int(bool(data["withheld"]))])
        elif args.json:
            print(json.dumps(data))
        else:
            print(_text(data))
        sys.stdout.flush()
    return EXIT_FAILED if failures else EXIT_OK


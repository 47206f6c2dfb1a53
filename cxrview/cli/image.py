"""``cxrview info`` and ``cxrview render``: what the loader understood, and the 8-bit image as shown.

Neither imports Qt nor torch unless ``render --overlay`` asks for the AI overlays, which
are drawn by the viewer's own layers (``cxrview.qt.render``) so that the picture is
exactly what the viewer shows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrview.cli.errors import EXIT_OK, print_error

if TYPE_CHECKING:
    import numpy as np

    from cxrview.core import Window, XrayImage
    from cxrview.qt.render import OverlayRequest


def add_info_arguments(info: argparse.ArgumentParser) -> None:
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="one JSON object on stdout")
    info.add_argument("--allow-large", action="store_true", help="lift the 100-megapixel limit")


def _parse_window(text: str) -> Window:
    from cxrview.core import Window

    try:
        center, width = (float(part) for part in text.split(","))
        return Window(center=center, width=width)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--window expects CENTER,WIDTH with a positive width, got {text!r}") from exc


def add_render_arguments(render: argparse.ArgumentParser) -> None:
    render.add_argument("path")
    render.add_argument("-o", "--output", required=True, help="output PNG")
    group = render.add_mutually_exclusive_group()
    group.add_argument("--preset", help="a preset name from `cxrview info` (e.g. lung, bone)")
    group.add_argument("--window", type=_parse_window, metavar="CENTER,WIDTH")
    render.add_argument("--invert", action="store_true", help="invert on top of the file's own")
    render.add_argument("--allow-large", action="store_true", help="lift the 100-megapixel limit")
    render.add_argument("--overlay", action="append", default=[], metavar="NAME",
                        help="AI overlay drawn as the viewer draws it: heatmap:FINDING, boxes, masks, "
                             "ctr (repeatable)")
    render.add_argument("--model", metavar="DIR", help="classifier bundle for overlays (default: shipped)")
    render.add_argument("--segmenter", metavar="DIR", help="lung/heart bundle for overlays")
    render.add_argument("--device", default="auto", help="device for overlays: auto, cpu, cuda, mps")
    render.add_argument("--force", action="store_true",
                        help="draw AI overlays even on a film the input check withholds")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None: JSON has no NaN or Infinity, and
    ``info --json`` must print valid JSON whatever the file held."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _info_dict(image: XrayImage) -> dict[str, Any]:
    from cxrview.core import render_display

    displayed = render_display(image)
    lo, hi = image.modality_range()
    return {
        "path": image.path,
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "bits_stored": image.bits_stored,
        "photometric": image.photometric,
        "transfer_syntax": image.transfer_syntax,
        "transfer_syntax_name": image.transfer_syntax_name,
        "modality": image.modality,
        "view_position": image.view_position,
        "body_part": image.body_part,
        "spacing_mm": [image.spacing.row_mm, image.spacing.col_mm] if image.spacing else None,
        "spacing_source": image.spacing_source.value,
        "presets": {name: [w.center, w.width] for name, w in image.presets.items()},
        "default_preset": image.default_preset,
        "stored_range": list(image.stored_range()),
        "modality_range": [lo, hi],
        "display_range": [int(displayed.min()), int(displayed.max())],
        "content_hash": image.content_hash,
        "notices": list(image.notices),
    }


def _print_info(info: dict[str, Any]) -> None:
    spacing = ("unknown" if info["spacing_mm"] is None
               else f"{info['spacing_mm'][0]:g} × {info['spacing_mm'][1]:g} mm")
    ts = info["transfer_syntax"]
    rows = [
        ("File", info["path"]),
        ("Format", info["format"]),
        ("Size", f"{info['width']} × {info['height']} px"),
        ("Bits stored", info["bits_stored"]),
        ("Photometric", info["photometric"]),
        ("Transfer syntax", f"{info['transfer_syntax_name']} ({ts})" if ts else "n/a (not DICOM)"),
        ("Modality", info["modality"] or "-"),
        ("View position", info["view_position"] or "-"),
        ("Body part", info["body_part"] or "-"),
        ("Pixel spacing", f"{spacing} (source: {info['spacing_source']})"),
        ("Stored values", "{} … {}".format(*info["stored_range"])),
        ("Modality values", "{:g} … {:g}".format(*info["modality_range"])),
        ("Display (8-bit)", "{} … {}".format(*info["display_range"])),
        ("Content hash", info["content_hash"]),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("Window presets (center / width):")
    for name, (center, w) in info["presets"].items():
        marker = "  (default)" if name == info["default_preset"] else ""
        print(f"  {name:<{width}}{center:>12.1f} / {w:<10.1f}{marker}")
    for notice in info["notices"]:
        print(f"Notice: {notice}")


def run_info(args: argparse.Namespace) -> int:
    from cxrview.core import ImageLoadError, load_image

    try:
        image = load_image(args.path, allow_large=args.allow_large)
    except ImageLoadError as exc:
        return print_error(str(exc))
    info = _info_dict(image)
    if args.json:
        print(json.dumps(json_safe(info), allow_nan=False))
    else:
        _print_info(info)
    return EXIT_OK


def run_render(args: argparse.Namespace) -> int:
    from cxrview.core import ImageLoadError, load_image, render_display
    from cxrview.core.export import write_png

    request = None
    if args.overlay:
        from cxrview.qt.render import parse_overlays  # Qt only when overlays are asked for

        try:
            request = parse_overlays(args.overlay)
        except ValueError as exc:
            return print_error(str(exc))
    try:
        image = load_image(args.path, allow_large=args.allow_large)
    except ImageLoadError as exc:
        return print_error(str(exc))
    window = args.window
    if args.preset is not None:
        if args.preset not in image.presets:
            names = ", ".join(image.presets)
            return print_error(f"{args.path}: no preset {args.preset!r} (available: {names})")
        window = image.presets[args.preset]
    pixels = render_display(image, window, invert=args.invert)
    if request is not None:
        try:
            pixels = _overlay(image, pixels, request, args)
        except (ValueError, RuntimeError, OSError, ImportError) as exc:
            return print_error(f"{args.path}: cannot draw overlays ({exc})")
    try:
        write_png(Path(args.output), pixels)
    except OSError as exc:
        return print_error(f"{args.output}: cannot write ({exc.strerror or exc})")
    return EXIT_OK


def _overlay(image: XrayImage, pixels: np.ndarray, request: OverlayRequest,
             args: argparse.Namespace) -> np.ndarray:
    from cxrview.inference.predict import Predictor
    from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle
    from cxrview.qt.render import render_with_overlays

    classifier = Path(args.model) if args.model else shipped_bundle(CLASSIFIER)
    segmenter = Path(args.segmenter) if args.segmenter else shipped_bundle(SEGMENTER)
    predictor = Predictor(classifier, segmenter if segmenter.is_dir() else None, device=args.device)
    rendered, data = render_with_overlays(image, pixels, predictor, request, force=args.force)
    if data["withheld"] and not data["forced"]:
        reasons = "; ".join(data["validity"]["reasons"])
        print(f"cxrview: {args.path}: AI overlays withheld ({reasons}); --force draws them anyway",
              file=sys.stderr)
    return rendered

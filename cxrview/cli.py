"""The ``cxrview`` command.

``cxrview [PATH ...]`` opens the GUI; ``cxrview info`` and ``cxrview render``
are headless and import neither Qt nor torch, so they start fast and run on
servers. Unreadable input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrview.cli_errors import EXIT_OK, print_error

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cxrview.core import Window, XrayImage

SUBCOMMANDS = ("info", "render", "predict", "import-nih", "score", "worklist", "export", "finetune", "models")


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


def _parse_window(text: str) -> Window:
    from cxrview.core import Window

    try:
        center, width = (float(part) for part in text.split(","))
        return Window(center=center, width=width)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--window expects CENTER,WIDTH with a positive width, got {text!r}") from exc


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrview", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="show what the loader understood about an image")
    info.add_argument("path")
    info.add_argument("--json", action="store_true", help="one JSON object on stdout")
    info.add_argument("--allow-large", action="store_true", help="lift the 100-megapixel limit")

    render = sub.add_parser("render", help="write the 8-bit image exactly as the viewer shows it")
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
    from cxrview.inference.predict_cli import add_arguments  # no torch at import time

    add_arguments(sub.add_parser("predict", help="findings, Grad-CAM boxes, lung/heart masks and CTR"))
    from cxrview.workspace_cli import add_subcommands

    add_subcommands(sub)
    from cxrview.models_cli import add_subcommands as add_models

    add_models(sub)
    ft = sub.add_parser("finetune", help="fine-tune the active classifier on a workspace's corrections; "
                                         "JSON lines on stdout; registers (never activates) the candidate")
    ft.add_argument("workspace", metavar="W")
    ft.add_argument("--epochs", type=int, default=1)
    ft.add_argument("--freeze", type=int, default=2, help="frozen blocks from the input (default 2)")
    ft.add_argument("--replay", type=int, default=200, help="unreviewed images mixed in (default 200)")
    ft.add_argument("--all-images", action="store_true", help="train on all labelled images")
    ft.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ft.add_argument("--lr", type=float, default=1e-4)
    return parser


def _run_info(args: argparse.Namespace) -> int:
    from cxrview.core import ImageLoadError, load_image

    try:
        image = load_image(args.path, allow_large=args.allow_large)
    except ImageLoadError as exc:
        return print_error(str(exc))
    info = _info_dict(image)
    if args.json:
        print(json.dumps(info))
    else:
        _print_info(info)
    return EXIT_OK


def _run_render(args: argparse.Namespace) -> int:
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


def _overlay(image: XrayImage, pixels: Any, request: Any, args: argparse.Namespace) -> Any:
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


def _display_problem() -> str | None:
    """Qt aborts the process without a display; say so in one line instead."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display found (DISPLAY is not set): run cxrview on a desktop session, or use "
            "`cxrview info` / `cxrview render` for headless work")


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*SUBCOMMANDS, "-h", "--help"):
        problem = _display_problem()
        if problem:
            return print_error(problem)
        from cxrview.qt.app import run_gui  # only the GUI pays for importing Qt

        return run_gui(args_list)
    args = _build_parser().parse_args(args_list)
    try:
        if args.command == "info":
            return _run_info(args)
        if args.command == "models":
            from cxrview.models_cli import run as run_models

            return run_models(args)
        if args.command == "finetune":
            from cxrview.finetune import FinetuneOptions, run_cli
            from cxrview.inference.registry import ModelRegistry

            options = FinetuneOptions(epochs=args.epochs, freeze_blocks=args.freeze, replay=args.replay,
                                      reviewed_only=not args.all_images, device=args.device, lr=args.lr)
            return run_cli(args.workspace, options, ModelRegistry())
        if args.command in ("import-nih", "score", "worklist", "export"):
            from cxrview.workspace_cli import run

            return run(args)
        if args.command == "predict":
            from cxrview.inference.predict_cli import run_predict

            return run_predict(args)
        return _run_render(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

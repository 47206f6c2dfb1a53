"""``python -m training train|finetune|evaluate|lr-find`` — flags or ``--config run.json``.

Flags override the JSON config. Progress: human lines on stderr, JSON lines on
stdout. Exit codes: 0 done, 1 failed (an ``error`` event says why), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.events import EventLog

if TYPE_CHECKING:
    from training.config import TrainConfig


def _data_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data sources (added to any in --config)")
    g.add_argument("--nih-images", action="append", default=[], metavar="DIR",
                   help="folder with NIH images (searched recursively; repeatable)")
    g.add_argument("--data-entry", metavar="CSV", help="Data_Entry_2017 csv (.gz ok)")
    g.add_argument("--folders", metavar="ROOT", help="folder-per-class layout")
    g.add_argument("--folder-map", metavar="JSON",
                   help='class → labels, e.g. \'{"PNEUMONIA": {"Pneumonia": 1}, "NORMAL": {"*": 0}}\'')
    g.add_argument("--images", metavar="DIR", help="segmentation images (with --masks)")
    g.add_argument("--masks", metavar="DIR", help="mask root with one folder per structure")


def _train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="JSON", help="run configuration file")
    parser.add_argument("--task", choices=["multilabel-classification", "segmentation"])
    parser.add_argument("--arch", dest="architecture",
                        choices=["resnet18", "resnet34", "resnet50", "densenet121", "small-cnn", "unet"])
    parser.add_argument("--size", dest="input_size", type=int, help="final input size (px)")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="progressive resizing, e.g. 64,128,224")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float, help="max learning rate (one-cycle)")
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--schedule", choices=["one-cycle", "constant"])
    parser.add_argument("--freeze", dest="freeze_blocks", type=int, help="freeze the first N blocks")
    parser.add_argument("--unfreeze-epoch", type=int)
    parser.add_argument("--imbalance", choices=["pos_weight", "sampler", "none"])
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    parser.add_argument("--val-fraction", type=float)
    parser.add_argument("--test-fraction", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--split-seed", type=int,
                        help="patient-split seed (default: --seed); ensemble members share one split")
    parser.add_argument("--patience", type=int, help="early stopping on validation loss")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--no-amp", dest="amp", action="store_false", default=None)
    parser.add_argument("--out", help="run folder (config, split, checkpoints, bundle)")
    parser.add_argument("--resume", action="store_true", default=None)
    parser.add_argument("--weights", help="local .safetensors file or bundle to start from")
    parser.add_argument("--name")
    parser.add_argument("--version")
    _evidence_flags(parser)
    parser.add_argument("--max-minutes", type=float, help="stop cleanly after this wall time")
    parser.add_argument("--limit", type=int, help="use only the first N images (smoke tests)")
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--cache-dir")
    parser.add_argument("--log-every", type=int)
    parser.add_argument("--weights-dtype", choices=["float32", "float16"],
                        help="bundle storage precision (float16 halves the file)")
    parser.add_argument("--evaluate-reserved", action="store_true", default=None,
                        help="report metrics once on reserved NIH patients (final runs only)")
    _data_flags(parser)


def _floor(text: str) -> tuple[str, float]:
    name, _, value = text.partition("=")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected FINDING=FLOOR (e.g. Pneumonia=0.95), got {text!r}") \
            from None


def _evidence_flags(parser: argparse.ArgumentParser) -> None:
    """How operating points are chosen on validation (training.evidence)."""
    g = parser.add_argument_group("operating points (chosen on the validation split)")
    g.add_argument("--specificity-floor", type=float,
                   help="validation specificity every operating point reaches (default 0.90)")
    g.add_argument("--floor", dest="specificity_floors", type=_floor, action="append",
                   metavar="FINDING=FLOOR", help="a finding's own specificity floor (repeatable)")
    g.add_argument("--min-positives", type=int,
                   help="validation positives a finding needs to be validated (default 15)")
    g.add_argument("--min-auroc-lower", type=float,
                   help="lower end of the validation AUROC interval a validated finding needs (0.6)")
    g.add_argument("--max-normal-positives", type=float,
                   help="raise the common floor until validation films with no finding get at most "
                        "this many positive calls on average")


def rule_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The operating-point config keys given on the command line (on top of a saved config's)."""
    out: dict[str, Any] = {key: getattr(args, key) for key in
                           ("specificity_floor", "min_positives", "min_auroc_lower", "max_normal_positives")
                           if getattr(args, key, None) is not None}
    if getattr(args, "specificity_floors", None):
        out["specificity_floors"] = dict(args.specificity_floors)
    return out


def _sources_from_flags(args: argparse.Namespace) -> list[dict[str, Any]]:
    sources: list[dict[str, Any]] = []
    if args.nih_images:
        if not args.data_entry:
            raise SystemExit("--nih-images needs --data-entry")
        sources.append({"type": "nih", "images": args.nih_images, "data_entry": args.data_entry})
    if args.folders:
        if not args.folder_map:
            raise SystemExit("--folders needs --folder-map")
        sources.append({"type": "folders", "root": args.folders, "mapping": json.loads(args.folder_map)})
    if args.images or args.masks:
        if not (args.images and args.masks):
            raise SystemExit("--images and --masks go together")
        sources.append({"type": "masks", "images": args.images, "masks": args.masks})
    return sources


_NOT_CONFIG = {"command", "config", "nih_images", "data_entry", "folders", "folder_map", "images",
               "masks", "base", "start", "end", "steps", "folds"}


def build_config(args: argparse.Namespace, base: dict[str, Any] | None = None) -> TrainConfig:
    from training.config import TrainConfig

    data: dict[str, Any] = dict(base or {})
    if args.config:
        data.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    for key, value in vars(args).items():
        if key not in _NOT_CONFIG and value is not None:
            data[key] = dict(value) if key == "specificity_floors" else value
    data["sources"] = list(data.get("sources", [])) + _sources_from_flags(args)
    return TrainConfig.from_dict(data)


def _finetune_base(bundle: str) -> dict[str, Any]:
    """Architecture, labels, input size and normalisation come from the base bundle's card."""
    from cxrview.inference.card import ModelCard

    card = ModelCard.read(bundle)
    norm = dict(vars(card.normalization))
    base = {"task": card.task, "architecture": card.architecture,
            "architecture_args": card.architecture_args, "labels": card.labels,
            "input_size": card.input_size, "channels": card.channels, "normalization": norm,
            "weights": bundle, "lr": 1e-4, "freeze_blocks": 2, "epochs": 3,
            "name": card.name, "version": f"{card.version}+ft"}
    saved = (card.training or {}).get("config") or {}
    # the same operating-point rule and the same thorax crop as the model being fine-tuned
    base.update({k: saved[k] for k in ("specificity_floor", "specificity_floors", "min_positives",
                                      "min_auroc_lower", "max_normal_positives") if k in saved})
    if card.crop:
        from training.crops import find_segmenter

        base["crop"] = {"segmenter": str(find_segmenter(card.crop)), "margin": card.crop.get("margin", 0.08)}
    return base


BACKGROUND_ENV = "CXRVIEW_BACKGROUND"


def _yield_to_the_desktop() -> None:
    """Started by the app: run at lower CPU priority (and so lower default I/O priority).

    On a 2-core workstation a training run would otherwise compete with the viewer's
    GUI thread for every core; a niced child keeps scrolling and drawing smooth while
    losing almost nothing when the machine is otherwise idle.
    """
    if os.environ.get(BACKGROUND_ENV) and hasattr(os, "nice"):
        try:
            os.nice(10)
        except OSError:  # not permitted here: run at normal priority
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_flags(sub.add_parser("train", help="train a model and publish a bundle"))
    finetune = sub.add_parser("finetune", help="continue training from a bundle")
    finetune.add_argument("--base", required=True, help="bundle folder to start from")
    _train_flags(finetune)
    lr = sub.add_parser("lr-find", help="learning-rate range test")
    _train_flags(lr)
    lr.add_argument("--start", type=float, default=1e-6)
    lr.add_argument("--end", type=float, default=1.0)
    lr.add_argument("--steps", type=int, default=80)
    ev = sub.add_parser("evaluate", help="metrics of a bundle on a split; writes report.json + roc.png")
    ev.add_argument("--bundle", required=True)
    ev.add_argument("--split", default="test", choices=["test", "val", "all", "reserved"])
    ev.add_argument("--out", required=True)
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    _data_flags(ev)
    rc = sub.add_parser("recalibrate", help="new calibration, validated operating points and input-check "
                                            "statistics for a bundle, chosen on its validation split "
                                            "(same weights); writes a new bundle")
    rc.add_argument("--bundle", required=True)
    rc.add_argument("--out", required=True, help="folder for the recalibrated bundle")
    _evidence_flags(rc)
    rc.add_argument("--cache-dir", help="keep the image caches here (reused by a later run)")
    rc.add_argument("--version", help="version of the new bundle (default: unchanged)")
    rc.add_argument("--batch-size", type=int, default=32)
    rc.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    _data_flags(rc)
    oof = sub.add_parser("oof", help="k-fold out-of-sample predictions (folds by patient) for mislabel "
                                      "scores; one JSON line per image")
    _train_flags(oof)
    oof.add_argument("--folds", type=int, default=5)
    ens = sub.add_parser("ensemble", help="one bundle averaging classifiers trained on the same split")
    ens.add_argument("--members", nargs="+", required=True, metavar="BUNDLE")
    ens.add_argument("--out", required=True, help="folder for the ensemble bundle")
    ens.add_argument("--name")
    ens.add_argument("--version", required=True)
    _evidence_flags(ens)
    ens.add_argument("--evaluate-reserved", action="store_true",
                     help="one-off metrics on the reserved NIH patients (report once, never tune on them)")
    ens.add_argument("--cache-dir")
    ens.add_argument("--weights-dtype", default="float16", choices=["float16", "float32"],
                     help="storage precision (float16 halves the bundle; metrics use the rounded weights)")
    ens.add_argument("--batch-size", type=int, default=32)
    ens.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    cmp = sub.add_parser("compare", help="candidate vs baseline classifier on a manifest's locked set")
    cmp.add_argument("--candidate", required=True)
    cmp.add_argument("--baseline", required=True)
    locked_set_flags = cmp.add_mutually_exclusive_group(required=True)
    locked_set_flags.add_argument("--manifest", help="workspace manifest with split 'locked' images")
    locked_set_flags.add_argument("--reserved-from", metavar="CONFIG",
                       help="the reserved NIH patients in this training config's sources "
                            "(one-off acceptance reports; never tune on them)")
    cmp.add_argument("--out", required=True, help="report JSON")
    cmp.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    cmp.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    _yield_to_the_desktop()

    log = EventLog()
    try:
        if args.command == "evaluate":
            from training.bundle_evaluation import evaluate_bundle

            sources = _sources_from_flags(args) or None
            report = evaluate_bundle(Path(args.bundle), sources=sources, split=args.split,
                                     out=Path(args.out), batch_size=args.batch_size,
                                     device=args.device, log=log)
            log.emit("done", report=str(Path(args.out) / "report.json"),
                     mean_auroc=report.get("mean_auroc"), dice=report.get("dice"))
            return 0
        if args.command == "compare":
            from cxrview.core.export import atomic_write_bytes
            from cxrview.inference.card import ModelCard
            from training.compare import compare_bundles, locked_samples, reserved_samples, summary_line

            labels = list(ModelCard.read(args.candidate).labels)
            if args.manifest:
                samples, where = locked_samples(Path(args.manifest), labels), str(args.manifest)
            else:
                samples = reserved_samples(Path(args.reserved_from), labels)
                where = f"reserved NIH patients of {args.reserved_from}"
            report = compare_bundles(Path(args.candidate), Path(args.baseline), samples, device=args.device,
                                     batch_size=args.batch_size, locked_set=where, log=log)
            atomic_write_bytes(Path(args.out), json.dumps(report, indent=1).encode("utf-8"))
            log.say(summary_line(report))
            log.emit("done", report=str(args.out), verdict=report["verdict"])
            return 0
        if args.command == "ensemble":
            from training.ensemble import build_ensemble

            path = build_ensemble([Path(m) for m in args.members], Path(args.out), name=args.name,
                                  version=args.version, rule=rule_overrides(args),
                                  evaluate_reserved=args.evaluate_reserved, cache_dir=args.cache_dir,
                                  batch_size=args.batch_size, device=args.device,
                                  weights_dtype=args.weights_dtype, log=log)
            log.emit("done", bundle=str(path))
            return 0
        if args.command == "recalibrate":
            from training.recalibrate import recalibrate_bundle

            path = recalibrate_bundle(Path(args.bundle), Path(args.out), rule=rule_overrides(args),
                                      sources=_sources_from_flags(args) or None,
                                      batch_size=args.batch_size, device=args.device,
                                      version=args.version, cache_dir=args.cache_dir, log=log)
            log.emit("done", bundle=str(path))
            return 0
        config = build_config(args, _finetune_base(args.base) if args.command == "finetune" else None)
        if args.command == "oof":
            from training.oof import out_of_fold

            out_of_fold(config, args.folds, log)
            return 0
        if args.command == "lr-find":
            from training.lr_find import lr_find

            lr_find(config, log, start=args.start, end=args.end, steps=args.steps)
            return 0
        from training.loop import train

        train(config, log)
        return 0
    except KeyboardInterrupt:
        log.emit("error", message="interrupted")
        return 1
    except Exception as exc:  # the GUI shows this message; the traceback goes to the log
        traceback.print_exc(file=sys.stderr)
        log.emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())

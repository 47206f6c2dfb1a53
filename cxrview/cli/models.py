"""``cxrview models list | show | activate | rollback``: the model registry from the command line.

Same registry as the GUI (``cxrview.inference.registry``), Qt-free and
torch-free. Results go to stdout (``--json``: one JSON object per line),
warnings and problems to stderr; exit code 2 on any error, with a one-line
message.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrview.cli.errors import EXIT_OK, print_error

if TYPE_CHECKING:
    from cxrview.inference.registry import ModelRegistry, ModelVersion

TASK_CHOICES = ("classifier", "segmenter")


def add_arguments(models: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="one JSON object a line")
    common.add_argument("--registry", metavar="DIR",
                        help="registry folder (default: $CXRVIEW_REGISTRY_DIR or the user data folder)")

    actions = models.add_subparsers(dest="models_action", metavar="ACTION", required=True)

    ls = actions.add_parser("list", parents=[common], help="all versions; '*' marks the active ones")
    ls.add_argument("--task", choices=[*TASK_CHOICES, "all"], default="all")

    show = actions.add_parser("show", parents=[common], help="one version: card metrics and comparison")
    show.add_argument("id", metavar="ID")

    act = actions.add_parser("activate", parents=[common],
                             help="use this version (it must have been compared with the active one)")
    act.add_argument("id", metavar="ID")
    act.add_argument("--force", action="store_true",
                     help="activate even without a comparison against the active model")

    rb = actions.add_parser("rollback", parents=[common],
                            help="back to ID, or to the version active before the current one")
    rb.add_argument("id", metavar="ID", nargs="?")
    rb.add_argument("--task", choices=TASK_CHOICES, default="classifier",
                    help="which model to roll back when no ID is given (default: classifier)")


def run(args: argparse.Namespace) -> int:
    """One ``models`` action; registry and file errors reach the user through the CLI's error printer."""
    from cxrview.inference.registry import ModelRegistry

    registry = ModelRegistry(Path(args.registry) if getattr(args, "registry", None) else None)
    return ACTIONS[args.models_action](registry, args)


# -- summaries ------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if not isinstance(value, int | float) else f"{value:.{digits}f}"


def card_summary(version: ModelVersion) -> dict[str, Any] | None:
    """What the card says about the model's quality, or None when the card cannot be read."""
    from cxrview.inference.card import BundleError

    try:
        card = version.read_card()
    except BundleError:
        return None
    test = (card.metrics or {}).get("test") or {}
    architecture = card.architecture
    members = (card.architecture_args or {}).get("members") if architecture == "ensemble" else None
    if members:  # e.g. "ensemble of 2 (resnet18@224, resnet18@224)"
        architecture = (f"ensemble of {len(members)} ("
                        + ", ".join(f"{m.get('architecture')}@{m.get('input_size')}" for m in members) + ")")
    summary: dict[str, Any] = {"architecture": architecture, "labels": len(card.labels),
                               "input_size": card.input_size, "weights_sha256": card.weights_sha256,
                               "parent_version": card.parent_version,
                               "test_mean_auroc": test.get("mean_auroc"),
                               "test_n_images": test.get("n_images", test.get("n_samples"))}
    dice = test.get("dice")
    if isinstance(dice, dict):
        summary["test_dice"] = dice
    return summary


def comparison_summary(comparison: dict[str, Any] | None) -> str | None:
    if not comparison:
        return None
    cand = (comparison.get("candidate") or {}).get("mean_auroc")
    base = (comparison.get("baseline_model") or {}).get("mean_auroc")
    parts = [f"{comparison.get('verdict', 'no verdict')} against {comparison.get('baseline') or '?'}"]
    if cand is not None or base is not None:
        parts.append(f"mean AUROC {_fmt(cand)} vs {_fmt(base)}")
    ci = comparison.get("mean_auroc_diff_ci")
    if isinstance(ci, list | tuple) and len(ci) == 2:
        parts.append(f"difference 95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}]")
    if comparison.get("locked_set"):
        parts.append(f"on {comparison['locked_set']}")
    return "; ".join(parts)


def _table(versions: list[ModelVersion]) -> None:
    rows = [("", "ID", "TASK", "VERSION", "CREATED", "PARENT")]
    for v in versions:
        rows.append(("*" if v.active else "", v.id + (" (shipped)" if v.read_only else ""), v.task,
                     v.version, (v.created or "-")[:19], v.parent or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


# -- actions --------------------------------------------------------------------------------
def _list(registry: ModelRegistry, args: argparse.Namespace) -> int:
    versions = registry.versions(None if args.task == "all" else args.task)
    if args.json:
        for v in versions:
            print(json.dumps(v.to_dict()))
    else:
        if versions:
            _table(versions)
        print(f"{len(versions)} versions in {registry.root}", file=sys.stderr)
    return EXIT_OK


def _show(registry: ModelRegistry, args: argparse.Namespace) -> int:
    version = registry.get(args.id)
    card = card_summary(version)
    if args.json:
        print(json.dumps({**version.to_dict(), "card": card,
                          "comparison_summary": comparison_summary(version.comparison)}))
        return EXIT_OK
    rows: list[tuple[str, Any]] = [
        ("ID", version.id), ("Task", version.task), ("Name", version.name), ("Version", version.version),
        ("Created", version.created or "-"),
        ("Status", ("active" if version.active else "inactive") + (", shipped (read-only)"
                                                                   if version.read_only else "")),
        ("Parent", version.parent or "-"), ("Folder", version.path),
    ]
    if version.manifest_sha256:
        rows.append(("Manifest sha256", version.manifest_sha256))
    if version.log_path:
        rows.append(("Log", version.log_path))
    if card is None:
        rows.append(("Card", "missing or unreadable"))
    else:
        rows.append(("Architecture", f"{card['architecture']}, {card['labels']} outputs, "
                                     f"{card['input_size']} px"))
        if card["test_mean_auroc"] is not None:
            n = f" ({card['test_n_images']} images)" if card["test_n_images"] else ""
            rows.append(("Test mean AUROC", f"{_fmt(card['test_mean_auroc'])}{n}"))
        if card.get("test_dice"):
            rows.append(("Test Dice", ", ".join(f"{k} {_fmt(v)}" for k, v in card["test_dice"].items())))
    rows.append(("Comparison", comparison_summary(version.comparison) or "none"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _report(version: ModelVersion, previous: str, args: argparse.Namespace, verb: str) -> int:
    if args.json:
        print(json.dumps({**version.to_dict(), "previous": previous}))
    elif previous == version.id:
        print(f"{version.id} is already the active {version.task}")
    else:
        print(f"{verb} {version.id} as the active {version.task} (was {previous})")
    return EXIT_OK


def _activate(registry: ModelRegistry, args: argparse.Namespace) -> int:
    version = registry.get(args.id)
    previous = registry.active(version.task).id
    if args.force:
        problem = registry.activation_problem(args.id)
        if problem is not None:
            print(f"cxrview: warning: activating without a valid comparison ({problem})", file=sys.stderr)
    else:
        problem = registry.activation_problem(args.id)
        if problem is not None:
            return print_error(f"{problem} (or use --force)")
    version = registry.activate(args.id, require_comparison=not args.force)
    return _report(version, previous, args, "activated")


def _rollback(registry: ModelRegistry, args: argparse.Namespace) -> int:
    task = registry.get(args.id).task if args.id else args.task
    previous = registry.active(task).id
    version = registry.rollback(args.id, task=task)
    return _report(version, previous, args, "rolled back to")


ACTIONS: dict[str, Callable[[ModelRegistry, argparse.Namespace], int]] = {
    "list": _list, "show": _show, "activate": _activate, "rollback": _rollback}

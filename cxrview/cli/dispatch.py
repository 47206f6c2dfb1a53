"""The ``cxrview`` command.

``cxrview [PATH ...]`` opens the GUI; every subcommand is one row of :data:`COMMANDS`
(name, help, its arguments, what runs it), so adding one is one line here and one
module beside this one. ``cxrview info`` and ``cxrview render`` are headless and
import neither Qt nor torch, so they start fast and run on servers: subcommand
modules import their heavy dependencies inside the function that runs them.
Unreadable input gives one line on stderr and exit code 2 (:mod:`cxrview.cli.errors`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cxrview.cli import finetune, image, models, predict, selftest, workspace
from cxrview.cli.errors import EXIT_INTERRUPTED, print_error, report


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: tuple[Command, ...] = (
    Command("info", "show what the loader understood about an image",
            image.add_info_arguments, image.run_info),
    Command("render", "write the 8-bit image exactly as the viewer shows it",
            image.add_render_arguments, image.run_render),
    Command("predict", "findings, Grad-CAM boxes, lung/heart masks and CTR",
            predict.add_arguments, predict.run),
    Command("import-nih", "create/update a workspace from NIH Data_Entry/BBox_List CSVs",
            workspace.add_import_arguments, workspace.run_import),
    Command("score", "batch-score a workspace's images (triage + mislabel scores)",
            workspace.add_score_arguments, workspace.run_score),
    Command("worklist", "list a workspace's images, filtered and sorted", workspace.add_worklist_arguments,
            workspace.run_worklist),
    Command("export", "export decisions: NIH CSVs, COCO boxes or a training manifest",
            workspace.add_export_arguments, workspace.run_export),
    Command("finetune", "fine-tune the active classifier on a workspace's corrections; JSON lines on stdout; "
                        "registers (never activates) the candidate", finetune.add_arguments, finetune.run),
    Command("models", "list, inspect, activate and roll back model versions",
            models.add_arguments, models.run),
    Command("version", "the version and the active models (also: cxrview --version)",
            selftest.add_version_arguments, selftest.run_version),
    Command("self-test", "decode every supported transfer syntax and run one prediction, from generated "
                         "files; OK/FAIL per part (also: cxrview --self-test)",
            selftest.add_arguments, selftest.run),
)
SUBCOMMANDS = tuple(command.name for command in COMMANDS)
# Options that are commands of the table above (``cxrview --version`` = ``cxrview version``).
OPTION_ALIASES = {"--version": "version", "--self-test": "self-test"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrview", description="The ``cxrview`` command.",
                                     epilog="cxrview --version | cxrview --self-test [--json]: the same as "
                                            "the version and self-test commands.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return parser


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
    if args_list and args_list[0] in OPTION_ALIASES:
        args_list[0] = OPTION_ALIASES[args_list[0]]
    if not args_list or args_list[0] not in (*SUBCOMMANDS, "-h", "--help"):
        problem = _display_problem()
        if problem:
            return print_error(problem)
        from cxrview.qt.app import run_gui  # the one way into Qt from here: only the GUI pays for it

        return run_gui(args_list)
    args = build_parser().parse_args(args_list)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.run(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        return report(exc)

"""``cxrview finetune W``: the fine-tune dialog's steps in sequence, JSON lines on stdout.

Plans with :mod:`cxrview.finetune_orchestration`, runs its training and comparison
commands as child processes (their JSON lines are passed through and kept in the run's
events file, their stderr goes to the run's log), then registers the candidate; it is
never activated here (``cxrview models activate``).
"""

from __future__ import annotations

import argparse
import json
import sys

from cxrview.cli.errors import EXIT_FAILED, EXIT_OK


def add_arguments(ft: argparse.ArgumentParser) -> None:
    ft.add_argument("workspace", metavar="W")
    ft.add_argument("--epochs", type=int, default=1)
    ft.add_argument("--freeze", type=int, default=2, help="frozen blocks from the input (default 2)")
    ft.add_argument("--replay", type=int, default=200, help="unreviewed images mixed in (default 200)")
    ft.add_argument("--all-images", action="store_true", help="train on all labelled images")
    ft.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    ft.add_argument("--lr", type=float, default=1e-4)


def run(args: argparse.Namespace) -> int:
    import subprocess

    from cxrview.core.workspace import Workspace, WorkspaceError
    from cxrview.finetune_orchestration import (
        FinetuneError,
        FinetuneOptions,
        child_environment,
        finish_finetune,
        plan_finetune,
    )
    from cxrview.inference.registry import ModelRegistry

    options = FinetuneOptions(epochs=args.epochs, freeze_blocks=args.freeze, replay=args.replay,
                              reviewed_only=not args.all_images, device=args.device, lr=args.lr)
    registry = ModelRegistry()
    out = sys.stdout
    try:
        with Workspace(args.workspace) as ws:
            plan = plan_finetune(ws, registry, options)
    except (FinetuneError, WorkspaceError) as exc:
        print(json.dumps({"event": "error", "message": str(exc)}), file=out)
        return EXIT_FAILED
    print(json.dumps({"event": "plan", **plan.to_dict()}), file=out, flush=True)
    for step, argv in (("train", plan.train_argv), ("compare", plan.compare_argv)):
        with open(plan.log_path, "a", encoding="utf-8") as log, \
                open(plan.events_path, "a", encoding="utf-8") as ev:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True,
                                    env=child_environment(), start_new_session=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                ev.write(line)
                print(line.rstrip("\n"), file=out, flush=True)
            code = proc.wait()
        if code != 0:
            print(json.dumps({"event": "error", "step": step,
                              "message": f"{step} failed (exit {code}); log: {plan.log_path}"}), file=out)
            return EXIT_FAILED
    try:
        version = finish_finetune(plan, registry)
    except FinetuneError as exc:
        print(json.dumps({"event": "error", "message": str(exc)}), file=out)
        return EXIT_FAILED
    comparison = version.comparison or {}
    print(json.dumps({"event": "registered", "id": version.id, "verdict": comparison.get("verdict"),
                      "mean_auroc": comparison.get("candidate", {}).get("mean_auroc"),
                      "baseline_mean_auroc": comparison.get("baseline_model", {}).get("mean_auroc")}),
          file=out, flush=True)
    return EXIT_OK

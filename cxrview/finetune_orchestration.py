"""The Qt-free fine-tune orchestration: plan → train (child process) → compare → register.

Shared by ``cxrview finetune W`` (``cxrview.cli.finetune``, child processes with
subprocess) and Model › Fine-tune on Corrections… (``cxrview.qt.finetune``, the same
two commands with QProcess): both plan here, run ``plan.train_argv`` and
``plan.compare_argv`` in :func:`child_environment`, stop a run with
:func:`kill_tree`, and register with :func:`finish_finetune`. Nothing here imports
torch or Qt (import contracts in pyproject.toml).

* The *locked evaluation set* of a workspace is chosen once and stored in the
  workspace (meta ``locked_patients``): the NIH patients of the base model's own
  test split that the workspace has, topped up with a seeded fifth of the other
  patients when that gives fewer than 20 images. Those patients never enter
  fine-tuning (the manifest marks them ``locked``), and every candidate is
  compared with the active model on them.
* Training data: reviewed images (their human decisions count), plus
  ``replay`` unreviewed images with their original labels so a handful of
  corrections does not make the model forget.
* Before starting, time and memory are estimated; a run that would not fit in
  free memory is refused with the reason (no silent out-of-memory kill).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

if TYPE_CHECKING:
    from cxrview.core.workspace import Workspace
    from cxrview.inference.card import ModelCard
    from cxrview.inference.registry import ModelRegistry, ModelVersion

MIN_LOCKED_IMAGES = 20
# Measured on this project's 2-core CPU machine (training, batch 16): images/s at 128 px.
CPU_IMAGES_PER_S = {"resnet18": 31.0, "resnet34": 16.0, "resnet50": 8.0,
                    "densenet121": 5.0 * (224 / 128) ** 2, "small-cnn": 60.0}


class FinetuneError(Exception):
    """A fine-tune that cannot start (nothing to learn from, not enough memory, …); says why."""


@dataclass
class FinetuneOptions:
    epochs: int = 1
    freeze_blocks: int = 2
    replay: int = 200
    reviewed_only: bool = True
    include_uncertain: bool = False
    device: str = "auto"
    lr: float = 1e-4
    batch_size: int | None = None  # None: chosen from free memory


@dataclass
class FinetunePlan:
    run_dir: Path
    manifest: Path
    config_path: Path
    base_id: str
    base_bundle: Path
    bundle_dir: Path
    report_path: Path
    log_path: Path
    events_path: Path
    train_argv: list[str]
    compare_argv: list[str]
    estimate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def ensure_locked_patients(ws: Workspace, card: ModelCard) -> set[int]:
    """The workspace's locked evaluation patients (chosen once, then fixed)."""
    stored = ws.meta("locked_patients")
    if stored is not None:
        return set(json.loads(stored))
    test = set((card.training or {}).get("split_patients", {}).get("test", []))
    counts = ws.patient_image_counts()
    locked = {pid for pid in counts if f"nih:{pid}" in test and pid % 5 != 0}
    images = sum(n for pid, n in counts.items() if pid in locked)
    if images < MIN_LOCKED_IMAGES:
        others = sorted(pid for pid in counts if pid not in locked and pid % 5 != 0)
        rng = np.random.default_rng(20261122)
        order = rng.permutation(len(others))[: max(1, len(others) // 5)] if others else np.array([], int)
        locked |= {others[int(i)] for i in order}
    ws.set_meta("locked_patients", json.dumps(sorted(locked)))
    return locked


def available_memory_bytes() -> int | None:
    """Memory the system can give a new process without swapping (Linux: MemAvailable)."""
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):  # no /proc (a sandbox) or an unsupported platform
        return None


def estimate(card: ModelCard, images: int, options: FinetuneOptions) -> dict[str, Any]:
    """Rough time and memory of the run, and the batch size chosen for this machine."""
    size = int(card.input_size)
    arch = str(card.architecture)
    members = ((card.architecture_args or {}).get("members") or []) if arch == "ensemble" else []
    if members:  # every member trains on every image: the times add up
        seconds_per_image = sum(1.0 / (CPU_IMAGES_PER_S.get(str(m.get("architecture")), 10.0)
                                       * (128 / int(m.get("input_size", size))) ** 2) for m in members)
        rate = 1.0 / seconds_per_image
    else:
        rate = CPU_IMAGES_PER_S.get(arch, 10.0) * (128 / size) ** 2
    # activations dominate: ~ (size² × 4 bytes × ~300 feature maps) per image, weights ~100 MB
    per_image = size * size * 4 * 300 * max(1, len(members))
    free = available_memory_bytes()
    batch = options.batch_size or 16
    if free is not None and options.batch_size is None:
        while batch > 2 and 600e6 + batch * per_image * 3 > free * 0.5:
            batch //= 2
    need = 600e6 + batch * per_image * 3
    seconds = images * options.epochs / rate * 1.3 + 20  # + validation, start-up
    return {"images": images, "epochs": options.epochs, "batch_size": batch,
            "seconds": round(seconds), "memory_bytes": int(need), "free_memory_bytes": free,
            "device_note": "CPU estimate (a GPU is several times faster)"}


def plan_finetune(ws: Workspace, registry: ModelRegistry, options: FinetuneOptions,
                  runs_root: Path | None = None) -> FinetunePlan:
    from cxrview.core.dataset_export import export_manifest
    from cxrview.inference.card import ModelCard

    base = registry.active("classifier")
    card = ModelCard.read(base.path)
    if options.epochs < 1:
        raise FinetuneError("epochs must be at least 1")
    locked = ensure_locked_patients(ws, card)
    reviewed = ws.reviewed_count(excluding_patients=locked)
    if options.reviewed_only and reviewed == 0:
        raise FinetuneError("no reviewed images outside the locked evaluation set yet: review or correct "
                            "some images first (or train on all images)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(runs_root) if runs_root is not None else Path(registry.root) / "runs"
    run_dir = root / f"finetune-{stamp}"
    n = 2
    while run_dir.exists():
        run_dir = root / f"finetune-{stamp}-{n}"
        n += 1
    run_dir.mkdir(parents=True)
    manifest = run_dir / "manifest.json"
    seed = (card.training or {}).get("config", {}).get("seed", 0)
    summary = export_manifest(ws, manifest, locked_patients=locked, present_only=True, seed=seed)
    images = (reviewed + min(options.replay, max(0, summary["train"] - reviewed))) if options.reviewed_only \
        else summary["train"] + summary["val"]
    est = estimate(card, images, options)
    free = est["free_memory_bytes"]
    if free is not None and est["memory_bytes"] > free:
        raise FinetuneError(f"not enough free memory: the run needs about {est['memory_bytes'] / 1e9:.1f} "
                            f"GB, {free / 1e9:.1f} GB are free; close other programs or lower the batch size")
    version = f"{card.version}+ft{time.strftime('%Y%m%d%H%M%S')}"
    config = {
        "sources": [{"type": "manifest", "path": str(manifest), "reviewed_only": options.reviewed_only,
                     "replay": options.replay if options.reviewed_only else 0,
                     "include_uncertain": options.include_uncertain}],
        "epochs": options.epochs, "freeze_blocks": options.freeze_blocks, "lr": options.lr,
        "batch_size": est["batch_size"], "device": options.device, "out": str(run_dir),
        "version": version, "sizes": [int(card.input_size)],
        "weights_dtype": card.weights_dtype, "log_every": 1, "patience": None,
    }
    config_path = run_dir / "config.json"
    config_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    bundle_dir = run_dir / "bundle"
    report = run_dir / "comparison.json"
    python = sys.executable
    return FinetunePlan(
        run_dir=run_dir, manifest=manifest, config_path=config_path, base_id=base.id, base_bundle=base.path,
        bundle_dir=bundle_dir, report_path=report, log_path=run_dir / "train.log",
        events_path=run_dir / "events.jsonl",
        train_argv=[python, "-m", "training", "finetune", "--base", str(base.path),
                    "--config", str(config_path)],
        compare_argv=[python, "-m", "training", "compare", "--candidate", str(bundle_dir), "--baseline",
                      str(base.path), "--manifest", str(manifest), "--out", str(report),
                      "--device", options.device],
        estimate=est)


def finish_finetune(plan: FinetunePlan, registry: ModelRegistry) -> ModelVersion:
    """Register the trained candidate with its comparison (never activates it)."""
    if not (plan.bundle_dir / "card.json").is_file():
        raise FinetuneError(f"the run left no model (see {plan.log_path})")
    if not plan.report_path.is_file():
        raise FinetuneError(f"the comparison on the locked set did not finish (see {plan.log_path})")
    comparison = json.loads(plan.report_path.read_text(encoding="utf-8"))
    comparison["baseline"] = plan.base_id
    comparison["locked_set"] = f"{comparison.get('n_images')} images of {comparison.get('n_patients')} " \
                               "locked patients"
    digest = hashlib.sha256(plan.manifest.read_bytes()).hexdigest()
    return registry.register(plan.bundle_dir, task="classifier", parent=plan.base_id, manifest_sha256=digest,
                             comparison=comparison, log_path=str(plan.log_path))


def child_environment() -> dict[str, str]:
    """The training process sees the same code as we do, wherever we run from, and runs
    at background priority so the viewer stays responsive while it trains."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["CXRVIEW_BACKGROUND"] = "1"  # training lowers its own priority (training/__main__.py)
    return env


def kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants (a training run may have spawned workers, e.g.
    torchrun ranks or data loaders), leaves first so no parent outlives its children to respawn them."""
    try:
        root = psutil.Process(pid)
        family = [*reversed(root.children(recursive=True)), root]
    except psutil.Error:  # already gone
        return
    for process in family:
        try:
            process.kill()
        except psutil.Error:  # finished meanwhile, or not ours to kill
            continue

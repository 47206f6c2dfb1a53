"""``train`` / ``finetune``: epochs, checkpoints, early stopping, then publish a bundle."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from cxrview.inference.architectures import build
from training.config import CLASSIFICATION, TrainConfig
from training.datasets import XrayDataset
from training.engine import (
    DistInfo,
    _atomic_torch_save,
    caches_for,
    class_pos_weight,
    compute_loss,
    init_distributed,
    load_initial_weights,
    make_card,
    pick_training_device,
    predict,
    prepare_run,
    sampler_weights,
    set_frozen,
    source_mix_weights,
    validation_score,
)
from training.events import EventLog

if TYPE_CHECKING:
    from collections.abc import Callable

    from training.sources import Sample


class RunState(TypedDict):
    """Where a run stands: saved in every checkpoint and restored on resume."""

    epoch: int  # epochs completed
    best_loss: float  # lowest validation loss at the final input size (inf before one)
    best_score: float | None  # the validation score of that epoch
    stale: int  # epochs since the best one (early stopping)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def one_cycle(total_steps: int, *, warmup: float = 0.25, start_div: float = 25.0,
              final_div: float = 1e4) -> Callable[[int], float]:
    """LR multiplier for the one-cycle policy: cosine up from max/25, then cosine down to max/1e4.

    Written as a LambdaLR factor (rather than torch's OneCycleLR) so that tiny
    runs with a handful of steps work and resuming just continues the count.
    """
    peak = max(1, round(total_steps * warmup))

    def factor(step: int) -> float:
        if step < peak:
            t = step / peak
            low = 1.0 / start_div
            return low + (1.0 - low) * (1 - math.cos(math.pi * t)) / 2
        t = min(1.0, (step - peak) / max(1, total_steps - peak))
        low = 1.0 / final_div
        return low + (1.0 - low) * (1 + math.cos(math.pi * t)) / 2

    return factor


def _loader(config: TrainConfig, dataset: XrayDataset, info: DistInfo,
            epoch: int) -> DataLoader[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(config.seed * 1000 + epoch)
    if info.world > 1:
        shards: DistributedSampler[dict[str, torch.Tensor]] = DistributedSampler(
            dataset, num_replicas=info.world, rank=info.rank, shuffle=True, seed=config.seed, drop_last=False)
        shards.set_epoch(epoch)
        return DataLoader(dataset, batch_size=config.batch_size, sampler=shards,
                          num_workers=config.num_workers)
    weights = draw_weights(config, dataset.samples)
    if weights is not None:
        # the sampler makes the same float64 tensor of a list (typed Sequence[float]) as of an array
        draws = WeightedRandomSampler(weights.tolist(), config.epoch_size or len(dataset),
                                      replacement=True, generator=generator)
        return DataLoader(dataset, batch_size=config.batch_size, sampler=draws,
                          num_workers=config.num_workers)
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=generator,
                      num_workers=config.num_workers, drop_last=len(dataset) > config.batch_size)


def draw_weights(config: TrainConfig, samples: list[Sample]) -> np.ndarray | None:
    """Per-sample draw weights of the training loader (None: plain shuffling)."""
    weights = None
    if config.imbalance == "sampler" and config.task == CLASSIFICATION:
        weights = sampler_weights(samples).numpy()
    if config.source_mix:
        mix = source_mix_weights(samples, config.source_mix)
        weights = mix if weights is None else weights * mix
    return weights


def train(config: TrainConfig, log: EventLog | None = None) -> Path | None:
    """Run training end to end; returns the bundle folder (rank 0) or None (other ranks)."""
    info = init_distributed(config.device)
    log = log or EventLog(rank=info.rank)
    log.enabled = info.is_main
    started = time.time()
    run = config.run_dir
    run.mkdir(parents=True, exist_ok=True)
    if info.is_main:
        config.save(run / "config.json")
    _seed_everything(config.seed)
    device = pick_training_device(config.device, info)
    log.emit("start", task=config.task, architecture=config.architecture, device=str(device),
             world_size=info.world, run_dir=str(run), epochs=config.epochs)
    log.say(f"training {config.architecture} for {config.task} on {device} (world {info.world})")

    parts, split = prepare_run(config, log, info)
    caches = caches_for(config, parts, log)
    card = make_card(config)
    datasets = {name: XrayDataset(parts[name], caches[name][0], card, masks=caches[name][1],
                                  augment=(name == "train" and config.augment), seed=config.seed)
                for name in caches}
    if "train" not in datasets:
        raise ValueError("the training split is empty: add images or lower the val/test fractions")

    model = build(config.architecture, len(config.labels), config.channels, config.architecture_args)
    if config.weights:
        load_initial_weights(model, config.weights, log, member=config.weights_member)
    model.to(device)
    if config.freeze_blocks:
        set_frozen(model, config.freeze_blocks, True)
    wrapped: nn.Module = model
    if info.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    pos_weight = None
    if config.task == CLASSIFICATION and config.imbalance == "pos_weight":
        pos_weight = class_pos_weight(parts["train"], draw_weights(config, parts["train"])).to(device)

    optimizer = torch.optim.AdamW([p for p in model.parameters()], lr=config.lr,
                                  weight_decay=config.weight_decay)
    weighted = draw_weights(config, parts["train"]) is not None
    per_rank = math.ceil((config.epoch_size if weighted and config.epoch_size else len(datasets["train"]))
                         / info.world)
    drop_last = info.world == 1 and not weighted and per_rank > config.batch_size
    steps_per_epoch = max(1, per_rank // config.batch_size if drop_last
                          else math.ceil(per_rank / config.batch_size))
    scheduler: Any = None
    if config.schedule == "one-cycle":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, one_cycle(config.epochs * steps_per_epoch, warmup=0.25))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    state: RunState = {"epoch": 0, "best_loss": float("inf"), "best_score": None, "stale": 0}
    checkpoint_file = run / "checkpoint.pt"
    best_file = run / "best.pt"
    if config.resume and checkpoint_file.is_file():
        ckpt = torch.load(checkpoint_file, map_location="cpu", weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler"):
            scheduler.load_state_dict(ckpt["scheduler"])
        state = ckpt["state"]
        log.say(f"resumed from {checkpoint_file} at epoch {state['epoch']}")
        log.emit("phase", name="resume", epoch=state["epoch"])

    best_state = copy.deepcopy(model.state_dict())
    if best_file.is_file():
        best_state = torch.load(best_file, map_location="cpu", weights_only=True)
    budget_s = config.max_minutes * 60 if config.max_minutes else None
    step = state["epoch"] * steps_per_epoch
    stopped_reason = "completed"
    for epoch in range(state["epoch"], config.epochs):
        size = config.size_for_epoch(epoch)
        datasets["train"].set_epoch(epoch, size)
        for name in ("val", "test"):
            if name in datasets:
                datasets[name].set_epoch(0, size)
        if config.freeze_blocks and config.unfreeze_epoch is not None and epoch >= config.unfreeze_epoch:
            set_frozen(model, config.freeze_blocks, False)
        wrapped.train()
        epoch_start, seen, running = time.time(), 0, 0.0
        loader = _loader(config, datasets["train"], info, epoch)
        for batch in loader:
            with torch.autocast(device.type, enabled=use_amp):
                loss = compute_loss(config, wrapped, batch, device, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]  # unannotated in torch
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            step += 1
            seen += len(batch["image"])
            running += loss.item() * len(batch["image"])
            if step % config.log_every == 0:
                rate = seen * info.world / max(time.time() - epoch_start, 1e-6)
                log.emit("step", epoch=epoch, epochs=config.epochs, step=step, steps=len(loader),
                         loss=loss.item(), lr=optimizer.param_groups[0]["lr"], images_per_s=rate)
        train_loss = running / max(seen, 1)
        images_per_s = seen * info.world / max(time.time() - epoch_start, 1e-6)

        val_loss, score = float("nan"), None
        if "val" in datasets and info.is_main:
            preds = predict(model, datasets["val"], device, config.batch_size, config.task)
            val_loss = float(preds["loss"])
            score = validation_score(config, preds, datasets["val"].samples)
        if size != config.input_size:
            # Losses at a smaller progressive size are not comparable with final-size ones:
            # only final-size epochs compete for "best".
            state["best_loss"] = float("inf")
        improved = info.is_main and (math.isnan(val_loss) or val_loss < state["best_loss"])
        if improved:
            state["best_loss"], state["best_score"], state["stale"] = val_loss, score, 0
            best_state = copy.deepcopy(model.state_dict())
            _atomic_torch_save(best_state, best_file)
        else:
            state["stale"] += 1
        state["epoch"] = epoch + 1
        metric_name = "val_mean_auroc" if config.task == CLASSIFICATION else "val_mean_dice"
        log.emit("epoch", epoch=epoch, epochs=config.epochs, size=size, train_loss=train_loss,
                 val_loss=val_loss, images_per_s=images_per_s, **{metric_name: score})
        log.say(f"epoch {epoch + 1}/{config.epochs} @{size}px  train {train_loss:.4f}  "
                f"val {val_loss:.4f}  {metric_name} {score if score is None else round(score, 4)}  "
                f"{images_per_s:.1f} img/s")
        if info.is_main:
            _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict() if scheduler else None,
                                "state": state}, checkpoint_file)
            log.emit("checkpoint", path=str(checkpoint_file), epoch=epoch)
        stop = torch.tensor([0], dtype=torch.int64)
        if config.patience is not None and state["stale"] >= config.patience:
            stop[0], stopped_reason = 1, "early-stopping"
        if budget_s is not None and time.time() - started > budget_s and epoch + 1 < config.epochs:
            stop[0], stopped_reason = 1, "time-budget"
        if info.world > 1:
            torch.distributed.broadcast(stop, src=0)
        if stop.item():
            log.say(f"stopping after epoch {epoch + 1}: {stopped_reason}")
            break

    if not info.is_main:
        return None
    model.load_state_dict(best_state)
    from training.publishing import publish

    bundle = publish(config, model, card, datasets, split, device, log,
                     trained_seconds=time.time() - started, stopped_reason=stopped_reason)
    log.emit("done", bundle=str(bundle), seconds=time.time() - started, reason=stopped_reason)
    return bundle


__all__ = ["train"]

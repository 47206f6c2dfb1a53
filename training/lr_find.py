"""Learning-rate range test (Smith 2015, as popularised by fastai's lr_find).

Trains for a few dozen steps while the learning rate grows exponentially from
``start`` to ``end``, records the smoothed loss, stops once the loss explodes,
and suggests the rate where the loss fell fastest (a tenth of the divergence
point if the curve never clearly falls). The model is thrown away afterwards.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch

from cxrview.inference.architectures import build
from training.config import TrainConfig
from training.datasets import XrayDataset
from training.engine import (
    DistInfo,
    caches_for,
    class_pos_weight,
    compute_loss,
    make_card,
    pick_training_device,
    prepare_run,
)
from training.events import EventLog


def suggest(lrs: list[float], losses: list[float]) -> float:
    if len(losses) < 5:
        return lrs[int(np.argmin(losses))] / 10 if losses else 1e-3
    log_lr = np.log10(lrs)
    slope = np.gradient(np.asarray(losses), log_lr)
    lowest = int(np.argmin(losses))
    steepest = int(np.argmin(slope[: max(lowest, 1) + 1]))
    return float(lrs[steepest]) if slope[steepest] < 0 else float(lrs[lowest]) / 10


def lr_find(
    config: TrainConfig, log: EventLog, *, start: float = 1e-6, end: float = 1.0, steps: int = 80
) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    info = DistInfo()
    device = pick_training_device(config.device, info)
    config.run_dir.mkdir(parents=True, exist_ok=True)
    parts, _ = prepare_run(config, log, info)
    caches = caches_for(config, {"train": parts["train"]}, log)
    card = make_card(config)
    dataset = XrayDataset(
        parts["train"],
        caches["train"][0],
        card,
        masks=caches["train"][1],
        augment=config.augment,
        seed=config.seed,
    )
    dataset.set_epoch(0, config.sizes[0])
    model = build(config.architecture, len(config.labels), config.channels, config.architecture_args).to(
        device
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=start, weight_decay=config.weight_decay)
    pos_weight = class_pos_weight(parts["train"]).to(device) if config.task != "segmentation" else None
    factor = (end / start) ** (1.0 / max(steps - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed, best = 0.0, math.inf
    loader_epoch = 0
    model.train()
    log.emit("start", task="lr-find", steps=steps, start_lr=start, end_lr=end)
    while len(lrs) < steps:
        dataset.set_epoch(loader_epoch, config.sizes[0])
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=True)
        for batch in loader:
            lr = start * factor ** len(lrs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = compute_loss(config, model, batch, device, pos_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
            optimizer.step()
            value = loss.item()
            smoothed = value if not lrs else 0.9 * smoothed + 0.1 * value
            corrected = smoothed / (1 - 0.9 ** (len(lrs) + 1))
            lrs.append(lr)
            losses.append(corrected)
            best = min(best, corrected)
            log.emit("step", step=len(lrs), lr=lr, loss=corrected)
            if len(lrs) >= steps or corrected > 4 * best or not math.isfinite(corrected):
                break
        else:
            loader_epoch += 1
            continue
        break
    result = {"lrs": lrs, "losses": losses, "suggested_lr": suggest(lrs, losses)}
    (config.run_dir / "lr_find.json").write_text(json.dumps(result))
    log.emit("done", suggested_lr=result["suggested_lr"], steps=len(lrs))
    log.say(f"suggested learning rate: {result['suggested_lr']:.2e}")
    return result

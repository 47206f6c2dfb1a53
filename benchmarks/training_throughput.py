"""Training images/s of our pipeline vs a bare PyTorch loop, and CPU inference latency.

    .venv/bin/python benchmarks/training_throughput.py [--arch resnet18] [--size 128] [--batch 16]

"Bare" = the same model, optimiser (AdamW) and batch size on pre-made random
tensors: forward, BCE loss, backward, step, nothing else. "Ours" = training's
real step: XrayDataset over cached uint8 images (augmentation on), DataLoader,
masked BCE with pos_weight, the one-cycle scheduler and the GradScaler wrapper.
Goal from the training issue: ours >= 0.9x bare. Then the latency of one image
through a published bundle (prepare + forward), which the viewer pays per image.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from cxrview.inference.architectures import build
from cxrview.inference.card import ModelCard
from training.config import TrainConfig
from training.datasets import XrayDataset
from training.engine import compute_loss
from training.loop import one_cycle
from training.sources import NIH_FINDINGS, Sample


def _samples(n: int) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(path=f"synthetic{i}", patient=str(i), source="bench",
                   labels=(rng.random(14) < 0.1).astype(np.float32), known=np.ones(14, np.float32))
            for i in range(n)]


def bare(model: torch.nn.Module, batch: int, size: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, 1, size, size)
    y = (torch.rand(batch, 14) < 0.1).float()
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return batch * steps / (time.perf_counter() - start)


def ours(model: torch.nn.Module, batch: int, size: int, steps: int, arch: str) -> float:
    config = TrainConfig(architecture=arch, input_size=size, batch_size=batch, out="/tmp/bench-run")
    card = ModelCard(name="b", version="0", task=config.task, architecture=arch,
                     labels=NIH_FINDINGS, input_size=size)
    samples = _samples(batch * steps)
    images = np.random.default_rng(1).integers(0, 256, (len(samples), size, size), dtype=np.uint8)
    dataset = XrayDataset(samples, images, card, augment=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, one_cycle(steps))
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    pos_weight = torch.full((14,), 5.0)
    device = torch.device("cpu")
    model.train()
    start = time.perf_counter()
    for item in loader:
        loss = compute_loss(config, model, item, device, pos_weight)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        sched.step()
    return batch * steps / (time.perf_counter() - start)


def inference_latency(arch: str, size: int, repeats: int) -> list[float]:
    from pathlib import Path

    from cxrview.core import load_image
    from cxrview.inference.preprocess import prepare_image

    nih_dir = Path(__file__).resolve().parents[2] / "shared/data/nih/images_256"

    card = ModelCard(name="b", version="0", task="multilabel-classification", architecture=arch,
                     labels=NIH_FINDINGS, input_size=size)
    model = build(arch, 14).eval()
    image = load_image(nih_dir / "00000001_000.png")
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            x = torch.from_numpy(prepare_image(image, card))[None]
            torch.sigmoid(model(x))
            times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build(args.arch, 14)
    bare(model, args.batch, args.size, 2)  # warm-up
    results: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(args.rounds):  # alternate so both see the same machine state
        results["bare"].append(bare(model, args.batch, args.size, args.steps))
        results["ours"].append(ours(model, args.batch, args.size, args.steps, args.arch))
    for name, values in results.items():
        print(f"{name:5s} {statistics.median(values):6.1f} img/s (median of {len(values)}: "
              + ", ".join(f"{v:.1f}" for v in values) + ")")
    ratio = statistics.median(results["ours"]) / statistics.median(results["bare"])
    print(f"ratio ours/bare: {ratio:.2f}x  (goal >= 0.9x)  [{args.arch} @ {args.size}px, batch {args.batch}]")
    latency = inference_latency(args.arch, args.size, 20)
    print(f"inference {args.arch}@{args.size}: median {statistics.median(latency[2:]):.1f} ms per image "
          f"(load excluded; prepare + forward, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()

"""Full ``Predictor.predict`` vs the bare forward passes, and batch scoring throughput.

    .venv/bin/python benchmarks/predict_speed.py [--images DIR] [--threads N] [--tiny]

Bundles: the shipped ones when present; otherwise random-weight stand-ins at
the shipped architectures and sizes (resnet18 @ 128, U-Net(resnet18) @ 256):
speed does not depend on the weights. ``--tiny`` uses the 64-px test-size
models instead. Random weights make "positives" arbitrary, so the CAM cost is
also reported for a fixed 3 findings. Goal: full predict ≤ 1.0 s per image on
2 CPU cores and ≤ 1.3 × the bare forward passes.

Also compares the two Grad-CAM strategies for k findings: one forward with the
graph retained (what ``CamSession`` does) vs one forward per finding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cxrview.core import find_images, load_image
from cxrview.inference.architectures import build
from cxrview.inference.bundle import save_bundle
from cxrview.inference.card import ModelCard
from cxrview.inference.gradcam import CamSession
from cxrview.inference.predict import Predictor, get_network
from cxrview.inference.preprocess import prepare_image
from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle
from training.sources import NIH_FINDINGS, SEGMENTATION_STRUCTURES

DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih" / "images_256"
FIXED_CAMS = ["Atelectasis", "Effusion", "Nodule"]


def stand_in_bundles(root: Path, cls_size: int, seg_size: int, cls_arch: str) -> tuple[Path, Path]:
    torch.manual_seed(0)
    cls_card = ModelCard(name=f"random-{cls_arch}", version="0", task="multilabel-classification",
                         architecture=cls_arch, labels=list(NIH_FINDINGS), input_size=cls_size)
    seg_card = ModelCard(name="random-unet", version="0", task="segmentation", architecture="unet",
                         labels=list(SEGMENTATION_STRUCTURES), input_size=seg_size,
                         architecture_args={"encoder": "resnet18"})
    return (save_bundle(root / "cls", build(cls_arch, len(NIH_FINDINGS)), cls_card),
            save_bundle(root / "seg", build("unet", 3, 1, seg_card.architecture_args), seg_card))


def ms(seconds: list[float]) -> str:
    return f"median {statistics.median(seconds) * 1000:7.1f} ms  (min {min(seconds) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="64-px test-size stand-ins")
    parser.add_argument("--limit", type=int, default=20, help="images for the per-image timings (0: all)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per image and variant (best counts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.TemporaryDirectory()
    if not args.tiny and shipped_bundle(CLASSIFIER).exists() and shipped_bundle(SEGMENTER).exists():
        cls_dir, seg_dir, which = shipped_bundle(CLASSIFIER), shipped_bundle(SEGMENTER), "shipped bundles"
    elif args.tiny:
        cls_dir, seg_dir = stand_in_bundles(Path(tmp.name), 64, 64, "small-cnn")
        which = "tiny random bundles (small-cnn@64, U-Net(resnet18)@64)"
    else:
        cls_dir, seg_dir = stand_in_bundles(Path(tmp.name), 128, 256, "resnet18")
        which = "random-weight stand-ins at shipped sizes (resnet18@128, U-Net(resnet18)@256)"
    predictor = Predictor(cls_dir, seg_dir, device="cpu")
    cls, seg = get_network(cls_dir, "cpu").loaded, get_network(seg_dir, "cpu").loaded
    print(f"models: {which}: {cls.card.name} {cls.card.architecture}@{cls.card.input_size}, "
          f"{seg.card.name} {seg.card.architecture}@{seg.card.input_size}; torch threads {args.threads}")

    paths = find_images(args.images)
    t0 = time.perf_counter()
    images = [load_image(p) for p in paths[: args.limit or None]]
    load_s = time.perf_counter() - t0
    print(f"{len(images)} of {len(paths)} images from {args.images} for per-image timings "
          f"(loading: {load_s / len(images) * 1000:.1f} ms/image); best of {args.repeats} per image")
    for image in images[:3]:  # warm-up: allocator, oneDNN kernels
        predictor.predict(image)

    # Per image: the best of --repeats runs of each variant, interleaved, so that load from other
    # processes (training jobs on the same 2 cores) inflates all variants alike.
    bare, full, fixed, none = [], [], [], []
    n_cams = []
    for image in images:
        x_cls = torch.from_numpy(prepare_image(image, cls.card)[None])
        x_seg = torch.from_numpy(prepare_image(image, seg.card)[None])
        runs: dict[str, list[float]] = {"bare": [], "full": [], "fixed": [], "none": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            with torch.inference_mode():
                cls.model(x_cls)
                seg.model(x_seg)
            runs["bare"].append(time.perf_counter() - t)
            for variant, cam_for in (("full", "positives"), ("fixed", FIXED_CAMS), ("none", None)):
                t = time.perf_counter()
                pred = predictor.predict(image, cam_for=cam_for)
                runs[variant].append(time.perf_counter() - t)
                if variant == "full":
                    n_cams.append(len(pred.cams))
        for store, variant in ((bare, "bare"), (full, "full"), (fixed, "fixed"), (none, "none")):
            store.append(min(runs[variant]))
    med_bare = statistics.median(bare)
    print(f"bare forward passes (cls + seg)  {ms(bare)}")
    print(f"full predict, CAMs for positives {ms(full)}  ratio {statistics.median(full) / med_bare:.2f}  "
          f"(median {statistics.median(n_cams):.0f} CAMs/image)")
    print(f"full predict, CAMs for 3         {ms(fixed)}  ratio {statistics.median(fixed) / med_bare:.2f}")
    print(f"full predict, no CAMs            {ms(none)}  ratio {statistics.median(none) / med_bare:.2f}")
    stages: dict[str, list[float]] = {}
    for image in images[:10]:
        for stage, value in predictor.predict(image, cam_for=FIXED_CAMS).timing_ms.items():
            stages.setdefault(stage, []).append(value)
    print("stages (3 CAMs, min ms over 10 images): " + ", ".join(f"{k} {min(v):.1f}"
                                                                 for k, v in stages.items()))

    x = torch.from_numpy(prepare_image(images[0], cls.card)[None])
    for k in (1, 3, 8):
        retain, recompute = [], []
        for _ in range(10):
            t = time.perf_counter()
            with CamSession(cls.model, x) as session:
                for i in range(k):
                    session.cam(i)
            retain.append(time.perf_counter() - t)
            t = time.perf_counter()
            for i in range(k):
                with CamSession(cls.model, x) as session:
                    session.cam(i)
            recompute.append(time.perf_counter() - t)
        print(f"Grad-CAM for {k} findings: retain graph {ms(retain)} | recompute {ms(recompute)}")

    t = time.perf_counter()
    for path in paths:
        predictor.predict(load_image(path))
    elapsed = time.perf_counter() - t
    print(f"batch scoring over all {len(paths)} images (load + full predict, sequential, one pass): "
          f"{len(paths) / elapsed:.2f} images/s")
    tmp.cleanup()


if __name__ == "__main__":
    main()

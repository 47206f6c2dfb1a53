"""Torch datasets over cached, preprocessed images with X-ray augmentation.

Images go through the app's own pipeline once (``cxrview.core.load_image`` →
``model_input`` → optional thorax crop → ``resize_square``) and are cached as
uint8 at the largest training size, so progressive resizing and later epochs
cost no decoding. Augmentation is anatomy-preserving: small rotations, scaling
and shifts, brightness/contrast jitter; never horizontal flips (the heart's side
is anatomy, not noise). ``"robust"`` augmentation adds what differs between
scanners and processing pipelines — gamma, CLAHE on or off, blur, noise, JPEG
re-encoding and down-and-up resampling — so a model cannot tell hospitals (or
datasets) apart by how their films were processed.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from cxrview.inference.preprocess import normalise, resize_square

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxrview.inference.card import ModelCard
    from training.crops import Box
    from training.sources import Sample


def _load_grey(path: str, size: int, box: tuple[int, int, int] | None = None) -> np.ndarray:
    from cxrview.core import load_image, model_input
    from cxrview.inference.thorax import crop_square

    grey = model_input(load_image(path, allow_large=True))
    if box is not None:
        grey = crop_square(grey, box)
    return np.clip(np.rint(resize_square(grey, size) * 255.0), 0, 255).astype(np.uint8)


def _load_mask(path: str, size: int) -> np.ndarray:
    mask = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if mask is None:
        from PIL import Image

        mask = np.array(Image.open(path).convert("L"))
    return cv2.resize((mask > 127).astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST)


def _cache_key(samples: list[Sample], size: int, boxes: list[Box | None] | None = None) -> str:
    digest = hashlib.sha256(f"v1:{size}".encode())
    for s in samples:
        digest.update(s.path.encode())
        for m in sorted(s.masks.items()):
            digest.update(repr(m).encode())
    if boxes is not None:
        digest.update(repr(boxes).encode())
    return digest.hexdigest()[:20]


def build_cache(samples: list[Sample], size: int, structures: list[str] | None, *,
                cache_dir: Path | None = None, crop: dict[str, Any] | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, size, size) uint8 images and (N, S, size, size) uint8 masks, reusing a disk cache.

    ``crop``: a classifier card's ``crop`` block — each image is cut to its thorax square first
    (``training.crops``), exactly as inference will cut it.
    """
    boxes: list[Box | None] | None = None
    if crop:
        from training.crops import thorax_boxes

        boxes = thorax_boxes(samples, crop, cache_dir=cache_dir)
    if cache_dir is not None:
        cache_file = cache_dir / f"images-{_cache_key(samples, size, boxes)}.npz"
        if cache_file.is_file():
            with np.load(cache_file) as data:
                return data["images"], (data["masks"] if "masks" in data else None)
    images = np.zeros((len(samples), size, size), np.uint8)
    masks = (np.zeros((len(samples), len(structures), size, size), np.uint8)
             if structures else None)

    def work(i: int) -> int:
        images[i] = _load_grey(samples[i].path, size, boxes[i] if boxes is not None else None)
        if masks is not None and structures:
            for j, name in enumerate(structures):
                masks[i, j] = _load_mask(samples[i].masks[name], size)
        return i

    with ThreadPoolExecutor(max_workers=2) as pool:  # cv2/pydicom decoding releases the GIL
        for done, _ in enumerate(pool.map(work, range(len(samples))), start=1):
            if progress and (done % 50 == 0 or done == len(samples)):
                progress(done, len(samples))
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # One temporary file per process: torchrun ranks build the same cache at once, and a
        # shared name let one rank move the other's file away before its own replace (seen in CI).
        tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp.npz")
        arrays = {"images": images} if masks is None else {"images": images, "masks": masks}
        np.savez(tmp, **arrays)
        tmp.replace(cache_file)
    return images, masks


def random_affine(rng: np.random.Generator, size: int, *, degrees: float = 7.0,
                  scale: tuple[float, float] = (0.92, 1.08), shift: float = 0.05) -> np.ndarray:
    angle = rng.uniform(-degrees, degrees)
    factor = rng.uniform(*scale)
    matrix: np.ndarray = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, factor)
    matrix[:, 2] += rng.uniform(-shift, shift, size=2) * size
    return matrix


def robust_photometric(grey: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Processing differences between sources, each applied with some probability ([0, 1] floats)."""
    out = grey
    if rng.random() < 0.5:
        out = np.power(np.clip(out, 0.0, 1.0), float(np.exp(rng.uniform(np.log(0.7), np.log(1.45)))))
    if rng.random() < 0.3:
        clahe = cv2.createCLAHE(clipLimit=float(rng.uniform(1.0, 3.0)), tileGridSize=(8, 8))
        out = clahe.apply(np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)).astype(np.float32) / 255.0
    if rng.random() < 0.25:
        size = out.shape[0]
        small = max(16, round(size * rng.uniform(0.45, 0.8)))
        out = cv2.resize(cv2.resize(out, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                         interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), float(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.3:
        out = out + rng.normal(0.0, rng.uniform(0.005, 0.03), out.shape).astype(np.float32)
    if rng.random() < 0.3:
        ok, buf = cv2.imencode(".jpg", np.clip(np.rint(out * 255), 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 91))])
        decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is not None:  # always: it is what imencode just wrote
            out = decoded.astype(np.float32) / 255.0
    clipped: np.ndarray = np.clip(out, 0.0, 1.0).astype(np.float32)
    return clipped


class XrayDataset(Dataset[dict[str, torch.Tensor]]):
    """Cached images (+ masks) → normalised tensors at the current training size."""

    def __init__(self, samples: list[Sample], images: np.ndarray, card: ModelCard, *,
                 masks: np.ndarray | None = None, augment: bool | str = False, seed: int = 0) -> None:
        """``augment``: False, True / "mild" (geometry + brightness), or "robust" (+ processing)."""
        self.samples = samples
        self.images = images
        self.masks = masks
        self.card = card
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.size = card.input_size

    def set_epoch(self, epoch: int, size: int) -> None:
        """Deterministic augmentation per (seed, epoch, index); size for progressive resizing."""
        self.epoch = epoch
        self.size = size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        size = self.size
        image = self.images[index]
        if image.shape[0] != size:
            image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
        masks = None
        if self.masks is not None:
            masks = self.masks[index]
            if masks.shape[-1] != size:
                masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST)
                                  for m in masks])
        grey = image.astype(np.float32) / 255.0
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            matrix = random_affine(rng, size)
            grey = cv2.warpAffine(grey, matrix, (size, size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT_101)
            if masks is not None:
                masks = np.stack([cv2.warpAffine(m, matrix, (size, size), flags=cv2.INTER_NEAREST,
                                                 borderMode=cv2.BORDER_CONSTANT) for m in masks])
            if self.augment == "robust":
                grey = robust_photometric(grey, rng)
            grey = np.clip(grey * rng.uniform(0.9, 1.1) + rng.uniform(-0.05, 0.05), 0.0, 1.0)
        item = {
            "image": torch.from_numpy(normalise(grey, self.card)),
            "labels": torch.from_numpy(self.samples[index].labels),
            "known": torch.from_numpy(self.samples[index].known),
            "index": torch.tensor(index),
        }
        if masks is not None:
            item["masks"] = torch.from_numpy(masks.astype(np.float32))
        return item

"""Thorax crops for training a classifier on what inference will show it.

A classifier whose card has a ``crop`` block reads the square around the
segmenter's lungs and heart (``cxrview.inference.thorax.crop_box``), not the
whole film with its corners, labels and collimation. Training must see the same
crops, so the box of every training, validation and evaluation image is found
here with the same segmenter, the same anatomical clean-up and the same geometry
as ``Predictor`` uses, and cached on disk (JSON keyed by the segmenter's weights
and each image's path, size and mtime): segmenting ten thousand films once is
minutes; doing it every run would be an hour.

The card records which segmenter made the crops (name, version, sha256) and the
margin; inference uses the active segmenter and says so when it cannot find a
thorax (the classifier then reads the whole film).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from training.sources import Sample

Box = tuple[int, int, int]


def crop_spec(segmenter: str | os.PathLike[str], margin: float) -> dict[str, Any]:
    """The card's ``crop`` block for crops made with this segmenter bundle."""
    from cxrview.inference.card import ModelCard

    card = ModelCard.read(segmenter)
    return {"method": "thorax", "margin": float(margin),
            "segmenter": {"name": card.name, "version": card.version, "weights_sha256": card.weights_sha256,
                          "path": str(Path(segmenter).resolve())}}


def find_segmenter(spec: dict[str, Any]) -> Path:
    """The segmenter bundle a crop spec names: its recorded path, the shipped one, or a registered
    version with the same weights (sha256); an error naming what is missing otherwise."""
    from cxrview.inference.card import BundleError, ModelCard
    from cxrview.inference.shipped import SEGMENTER, shipped_bundle

    wanted = (spec.get("segmenter") or {}).get("weights_sha256")
    candidates = [Path(p) for p in [(spec.get("segmenter") or {}).get("path")] if p]
    candidates.append(shipped_bundle(SEGMENTER))
    try:
        from cxrview.inference.registry import ModelRegistry

        candidates += [Path(v.path) for v in ModelRegistry().versions("segmenter")]
    except Exception:  # no registry here: the recorded path and the shipped bundle remain
        pass
    for path in candidates:
        try:
            if path.is_dir() and (not wanted or ModelCard.read(path).weights_sha256 == wanted):
                return path
        except BundleError:
            continue
    name = spec.get("segmenter") or {}
    raise FileNotFoundError(f"the segmenter that made this classifier's thorax crops "
                            f"({name.get('name')} {name.get('version')}) is not available here")


def _key(path: str) -> str:
    st = os.stat(path)
    return f"{path}|{st.st_size}|{st.st_mtime_ns}"


def thorax_boxes(samples: list[Sample], spec: dict[str, Any], *, cache_dir: Path | None,
                 device: str = "cpu", batch_size: int = 16,
                 progress: Callable[[int, int], None] | None = None) -> list[Box | None]:
    """The crop box of each sample (None where no thorax was found: the whole film is read)."""
    import torch

    from cxrview.core import load_image, model_input
    from cxrview.inference.anatomy import clean_masks
    from cxrview.inference.bundle import load_bundle
    from cxrview.inference.preprocess import normalise, resize_square
    from cxrview.inference.thorax import CROP_MARGIN, crop_box

    segmenter = find_segmenter(spec)
    margin = float(spec.get("margin", CROP_MARGIN))
    sha = (spec.get("segmenter") or {}).get("weights_sha256") or "unknown"
    cache_file = None
    known: dict[str, Any] = {}
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tag = hashlib.sha256(f"{sha}|{margin}".encode()).hexdigest()[:16]
        cache_file = cache_dir / f"thorax-boxes-{tag}.json"
        if cache_file.is_file():
            known = json.loads(cache_file.read_text(encoding="utf-8"))
    keys = [_key(s.path) for s in samples]
    todo = [i for i, k in enumerate(keys) if k not in known]
    if todo:
        loaded = load_bundle(segmenter, device=device)
        labels = loaded.card.labels
        size = loaded.card.input_size
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            images = [load_image(samples[i].path, allow_large=True) for i in chunk]
            x = np.stack([normalise(resize_square(model_input(im), size), loaded.card) for im in images])
            with torch.inference_mode():
                out = torch.sigmoid(loaded.model(torch.from_numpy(x).to(loaded.device))).cpu().numpy()
            for j, i in enumerate(chunk):
                masks = clean_masks({name: out[j, labels.index(name)] > 0.5
                                     for name in ("heart", "left_lung", "right_lung")})
                box = crop_box(masks, (images[j].width, images[j].height), margin=margin)
                known[keys[i]] = list(box) if box is not None else None
            if progress:
                progress(min(start + batch_size, len(todo)), len(todo))
        if cache_file is not None:
            tmp = cache_file.with_name(f"{cache_file.stem}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known), encoding="utf-8")
            tmp.replace(cache_file)
    return [tuple(known[k]) if known[k] is not None else None for k in keys]

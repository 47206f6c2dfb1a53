"""Pooled deep features of a classifier, and the out-of-distribution score built on them.

The features are the Grad-CAM target's output (ResNet ``layer4``, DenseNet's
last block, …) averaged over space; an ensemble concatenates its members'.
They are what the classifier's head reads, so a film unlike anything it was
trained on (a knee, an ultrasound frame, a photograph) lands far from the
training films there even when the head still produces confident numbers.

The score is deliberately simple and auditable: the root-mean-square z-score
of the features against the training split's per-feature mean and standard
deviation (a diagonal Mahalanobis distance), recorded in the card's ``ood``
block with the threshold chosen on the validation split (``training.evidence``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from cxrview.inference.card import ModelCard


def pool_activations(activations: list[torch.Tensor]) -> np.ndarray:
    """(N, D) float32: each activation (N, C, H, W) averaged over H, W, members concatenated."""
    pooled = [a.detach().float().mean(dim=(2, 3)).cpu().numpy() for a in activations]
    return np.concatenate(pooled, axis=1).astype(np.float32)


def card_input_shape(card: ModelCard) -> tuple[int, int, int]:
    """(C, H, W) the card's network is fed: picks the same Grad-CAM target as inference."""
    return (card.channels, card.input_size, card.input_size)


@contextlib.contextmanager
def feature_tap(model: nn.Module, input_shape: tuple[int, int, int] | None = None, *,
                target: Any = None) -> Iterator[list[Any]]:
    """Collect the pooled features of every forward pass inside the block.

    ``input_shape`` (``card_input_shape``) selects the same target block as Grad-CAM at
    inference, so training statistics and inference features match (``target``: that block,
    already found). Yields a list that receives one (N, D) array per forward; hooks are
    removed afterwards.
    """
    from cxrview.inference.gradcam import cam_target

    if target is None:
        target = cam_target(model, input_shape)
    targets = list(target) if isinstance(target, list | tuple) else [target]
    outputs: dict[int, Any] = {}
    batches: list[np.ndarray] = []

    def hook_for(slot: int) -> Callable[[nn.Module, object, torch.Tensor], None]:
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            outputs[slot] = out
            if len(outputs) == len(targets):
                batches.append(pool_activations([outputs[i] for i in range(len(targets))]))
                outputs.clear()
        return hook

    handles = [t.register_forward_hook(hook_for(i)) for i, t in enumerate(targets)]
    try:
        yield batches
    finally:
        for handle in handles:
            handle.remove()


def ood_score(card: ModelCard, features: np.ndarray) -> float | None:
    """RMS z-score of one image's features against the card's training statistics (None: no stats)."""
    stats = card.ood or {}
    mean, std = stats.get("mean"), stats.get("std")
    if not mean or not std:
        return None
    f = np.asarray(features, dtype=np.float64).reshape(-1)
    mu, sd = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if f.shape != mu.shape or mu.shape != sd.shape:
        return None  # statistics of another architecture: no score rather than a wrong one
    z = (f - mu) / np.maximum(sd, 1e-6)
    return float(np.sqrt(np.mean(z * z)))


def ood_scores(stats: dict[str, Any], features: np.ndarray) -> np.ndarray:
    """Vectorised :func:`ood_score` over (N, D) features with explicit statistics (training)."""
    mu, sd = np.asarray(stats["mean"], dtype=np.float64), np.asarray(stats["std"], dtype=np.float64)
    z = (np.asarray(features, dtype=np.float64) - mu) / np.maximum(sd, 1e-6)
    scores: np.ndarray = np.sqrt(np.mean(z * z, axis=1))
    return scores

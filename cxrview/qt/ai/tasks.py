"""Worker bodies of the AI findings (plain functions ``fn(state, ...)``, run by the one worker
wrapper, :mod:`cxrview.qt.workers`): they touch no widget.

The :class:`Predictor` imports torch and loads two networks (seconds), so it is built here,
off the GUI thread; predictions go through the one cache-first path shared with the CLI
(``scoring.predict_cached``), and heatmaps are colourised here so the GUI thread only wraps
them in images.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxrview.qt.overlays import heatmap_rgba
from cxrview.qt.workers import TaskCancelled, TaskState

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.card import ModelCard
    from cxrview.inference.predict import Prediction, Predictor


def leave_a_core_for_the_gui() -> None:
    """Inference in the viewer uses all cores but one (process-wide, idempotent).

    With every core busy in torch's thread pool, the GUI thread waits for a CPU and
    the event loop stalls unpredictably (13–35 ms worst gaps measured on 2 cores, one
    50 ms spike in CI). One core kept free gives steady ~13 ms at the cost of ~25 %
    batch throughput on a 2-core machine; command-line scoring keeps every core.
    """
    import torch

    wanted = max(1, (os.cpu_count() or 2) - 1)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


@dataclass
class PredictorInfo:
    predictor: Predictor
    devices: list[str]


def load_predictor_task(state: TaskState, classifier: str, segmenter: str | None,
                        device: str) -> PredictorInfo:
    """Build (import torch, load bundles) a Predictor off the GUI thread."""
    if state.cancelled:
        raise TaskCancelled("predictor")
    from cxrview.inference.bundle import available_devices
    from cxrview.inference.card import BundleError
    from cxrview.inference.predict import Predictor

    if not Path(classifier).is_dir():
        raise BundleError(f"classifier bundle not found: {classifier}")
    leave_a_core_for_the_gui()
    if segmenter is not None and not Path(segmenter).is_dir():
        segmenter = None  # findings without contours/CTR rather than nothing
    predictor = Predictor(classifier, segmenter, device=device)
    return PredictorInfo(predictor, available_devices())


@dataclass
class AIResult:
    """One image's prediction as the GUI carries it: the typed :class:`Prediction`, its
    ``to_dict()`` (what the gate and the dock read), colourised heatmaps, and the card of the
    model that made it (what the review panel records it under; None for a made-up result)."""

    prediction: Prediction
    data: dict[str, Any]
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)  # finding -> RGBA
    card: ModelCard | None = None


def predict_task(state: TaskState, predictor: Predictor, image: XrayImage) -> AIResult:
    """Findings for one image through the shared cache-first path (``scoring.predict_cached``):
    from the results cache when these models saw this input before (heatmaps are then computed
    on demand), else a full prediction (cached)."""
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.predict import Cancelled
    from cxrview.inference.scoring import predict_cached

    try:
        scored = predict_cached(predictor, image, cache=ResultCache(), state=state)
    except Cancelled:
        raise TaskCancelled(image.path) from None
    heatmaps = {}
    for finding, cam in scored.prediction.cams.items():
        if state.cancelled:
            raise TaskCancelled(image.path)
        heatmaps[finding] = heatmap_rgba(cam, scored.prediction.image_size)
    return AIResult(scored.prediction, scored.data, heatmaps, predictor.card)


def cam_task(state: TaskState, predictor: Predictor, image: XrayImage, finding: str,
             thorax: list[list[float]] | None = None) -> tuple[str, str, np.ndarray]:
    """One finding's map on demand, restricted to the thorax outline when the prediction has one."""
    cam = predictor.cam(image, finding, thorax=thorax)
    if state.cancelled:
        raise TaskCancelled(finding)
    return image.content_hash, finding, heatmap_rgba(cam, (image.width, image.height))

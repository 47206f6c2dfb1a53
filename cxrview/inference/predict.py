"""One image → findings, Grad-CAM, boxes, lung/heart masks, CTR and an input check.

Qt-free so the CLI, the GUI worker and tests share it. Cost is dominated by the
two forward passes; everything else is kept off that path:

* ``model_input`` (the display pipeline) runs once; both networks resize from it.
* The classifier runs once, with autograd recording only its head (see
  ``gradcam.CamSession``), so probabilities and every requested map come from
  one pass. Without maps it runs under ``torch.inference_mode``.
* The segmenter runs once under ``inference_mode``; masks stay at model size
  and coordinates are scaled with ``scale_xy`` (no full-size mask upsampling).

Networks are cached per (bundle, device) for the whole process and reloaded
when the bundle's files change on disk (a fine-tuned model replaces the
folder atomically). ``state.cancelled`` is polled between stages.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from cxrview.inference.boxes import Box, boxes_from_cam, load_priors
from cxrview.inference.card import BundleError, ModelCard
from cxrview.inference.ctr import CTRMeasurement, ctr_flag, mask_polygons, measure_ctr
from cxrview.inference.gradcam import CamSession, cam_target, cam_to_size
from cxrview.inference.validity import check_validity

if TYPE_CHECKING:
    import torch

    from cxrview.core import XrayImage
    from cxrview.inference.boxes import SizePrior
    from cxrview.inference.bundle import LoadedModel
    from cxrview.inference.cache import CacheKey

SEGMENTER_LABELS = ("heart", "left_lung", "right_lung")
MASK_THRESHOLD = 0.5
CamFor = Literal["positives"] | Sequence[str] | None


class Cancelled(Exception):
    """The caller's ``state.cancelled`` became true between two stages."""


class CancelState(Protocol):
    cancelled: bool


@dataclass
class Prediction:
    """Everything one prediction produced; ``to_dict()`` is the JSON schema of ``cxrview predict``.

    Arrays (``cams`` at the classifier's input size, ``masks`` at the
    segmenter's) are for drawing and are not serialised; a Prediction rebuilt
    from the cache has none and gets maps through ``Predictor.cam``.
    """

    path: str
    image_size: tuple[int, int]  # original (width, height)
    model: dict[str, Any]
    findings: dict[str, dict[str, Any]]
    boxes: list[Box] = field(default_factory=list)
    ctr: CTRMeasurement | None = None
    ctr_flag: str | None = None
    polygons: dict[str, list[list[list[float]]]] = field(default_factory=dict)
    validity: dict[str, Any] = field(default_factory=lambda: {"ok": True, "warnings": [], "scores": {}})
    timing_ms: dict[str, float] = field(default_factory=dict)
    content_hash: str = ""
    cams: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    mask_scale_xy: tuple[float, float] = (1.0, 1.0)
    cached: bool = False

    @property
    def positives(self) -> list[str]:
        return [name for name, f in self.findings.items() if f["positive"]]

    def cam_at_original(self, finding: str) -> np.ndarray:
        """The finding's map resized to the original image (float32 in [0, 1])."""
        return cam_to_size(self.cams[finding], *self.image_size)

    def mask_at_original(self, name: str) -> np.ndarray:
        """A boolean mask at the original size (nearest neighbour), for pixel-exact overlays."""
        import cv2

        small = self.masks[name].astype(np.uint8)
        return cv2.resize(small, self.image_size, interpolation=cv2.INTER_NEAREST).astype(bool)

    def to_dict(self) -> dict[str, Any]:
        ctr = None
        if self.ctr is not None:
            extra = {k: v for k, v in self.ctr.to_dict().items() if k not in ("value", "heart", "thorax")}
            ctr = {"value": round(self.ctr.value, 4), "heart": [round(v, 2) for v in self.ctr.heart],
                   "thorax": [round(v, 2) for v in self.ctr.thorax], "flag": self.ctr_flag, **extra}
        return {
            "path": self.path,
            "content_hash": self.content_hash,
            "image_size": list(self.image_size),
            "model": self.model,
            "findings": self.findings,
            "boxes": [b.to_dict() for b in self.boxes],
            "ctr": ctr,
            "masks": self.polygons,
            "validity": self.validity,
            "timing_ms": self.timing_ms,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Prediction:
        """Rebuild from ``to_dict()`` output (e.g. the cache); arrays are empty."""
        ctr_d = d.get("ctr")
        ctr = None
        if ctr_d:
            names = ("midline_x", "mrd", "mld", "mrd_y", "mld_y", "value_widest_row")
            ctr = CTRMeasurement(value=float(ctr_d["value"]), heart=tuple(ctr_d["heart"]),
                                 thorax=tuple(ctr_d["thorax"]),
                                 **{k: float(ctr_d[k]) for k in names if ctr_d.get(k) is not None})
        boxes = [Box(b["finding"], b["x"], b["y"], b["w"], b["h"], b["score"], b.get("heat", 0.0))
                 for b in d.get("boxes", [])]
        size = d.get("image_size") or (0, 0)
        return cls(path=d["path"], image_size=(int(size[0]), int(size[1])), model=d["model"],
                   findings=d["findings"], boxes=boxes, ctr=ctr,
                   ctr_flag=ctr_d.get("flag") if ctr_d else None, polygons=d.get("masks") or {},
                   validity=d["validity"], timing_ms=d.get("timing_ms") or {},
                   content_hash=d.get("content_hash", ""), cached=True)


# -- network cache ----------------------------------------------------------------------------

@dataclass
class _Entry:
    stamp: tuple[int, ...]
    loaded: LoadedModel
    lock: threading.Lock = field(default_factory=threading.Lock)  # one Grad-CAM forward at a time
    _cam_target: Any = None

    def cam_target(self) -> Any:
        """The Grad-CAM layer for this network at its card's input size (found once)."""
        if self._cam_target is None:
            card = self.loaded.card
            shape = (card.channels, card.input_size, card.input_size)
            self._cam_target = cam_target(self.loaded.model, shape)
        return self._cam_target


_NETWORKS: dict[tuple[str, str], _Entry] = {}
_NETWORKS_LOCK = threading.Lock()


def _stamp(bundle: Path) -> tuple[int, ...]:
    """Identity of a bundle's files on disk: changes when a new bundle replaces the folder."""
    stamp: list[int] = []
    for path in sorted(bundle.iterdir()) if bundle.is_dir() else []:
        st = os.stat(path)
        stamp += [st.st_ino, st.st_size, st.st_mtime_ns]
    return tuple(stamp)


def get_network(bundle: str | os.PathLike[str], device: str) -> _Entry:
    """The loaded network for (bundle, device), reloaded when the bundle changed on disk."""
    from cxrview.inference.bundle import load_bundle

    root = Path(bundle).resolve()
    key = (str(root), device)
    with _NETWORKS_LOCK:
        try:
            stamp = _stamp(root)
        except OSError as exc:
            raise BundleError(f"{root}: cannot read bundle ({exc})") from exc
        entry = _NETWORKS.get(key)
        if entry is None or entry.stamp != stamp:
            loaded = load_bundle(root, device=device)
            loaded.model.requires_grad_(False)  # inference only; Grad-CAM needs no parameter grads
            entry = _Entry(stamp, loaded)
            _NETWORKS[key] = entry
        return entry


# -- predictor ---------------------------------------------------------------------------------

def _check(state: CancelState | None) -> None:
    if state is not None and getattr(state, "cancelled", False):
        raise Cancelled()


class _Clock:
    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = round(self.ms.get(stage, 0.0) + (now - self.last) * 1000, 2)
        self.last = now

    def done(self) -> dict[str, float]:
        self.ms["total"] = round((time.perf_counter() - self.start) * 1000, 2)
        return self.ms


class Predictor:
    """A classifier bundle (+ optional segmenter bundle) ready to predict on XrayImages.

    Bundles load at construction (a broken bundle fails here, with a
    ``BundleError`` naming the file) and on any later change on disk.
    """

    def __init__(self, classifier: str | os.PathLike[str], segmenter: str | os.PathLike[str] | None = None,
                 *, device: str = "auto", priors: dict[str, SizePrior] | None = None,
                 max_boxes: int = 3) -> None:
        self.classifier_path = Path(classifier)
        self.segmenter_path = Path(segmenter) if segmenter is not None else None
        self.priors = priors if priors is not None else load_priors()
        self.max_boxes = max_boxes
        self._last_input: tuple[str, np.ndarray] | None = None  # (content hash, classifier input)
        self.set_device(device)

    def set_device(self, device: str) -> None:
        """Switch device ('auto', 'cpu', 'cuda', 'mps'); networks already loaded there are reused."""
        from cxrview.inference.bundle import pick_device

        self.device = str(pick_device(device))
        cls = self._classifier().card
        if cls.task != "multilabel-classification":
            raise BundleError(f"{self.classifier_path}: not a classifier (task {cls.task!r})")
        if self.segmenter_path is not None:
            seg = self._segmenter().card
            missing = set(SEGMENTER_LABELS) - set(seg.labels)
            if seg.task != "segmentation" or missing:
                raise BundleError(f"{self.segmenter_path}: not a lung/heart segmenter "
                                  f"(task {seg.task!r}, labels {seg.labels})")

    def _classifier(self) -> LoadedModel:
        return get_network(self.classifier_path, self.device).loaded

    def _segmenter(self) -> LoadedModel | None:
        if self.segmenter_path is None:
            return None
        return get_network(self.segmenter_path, self.device).loaded

    @property
    def card(self) -> ModelCard:
        return self._classifier().card

    @property
    def segmenter_card(self) -> ModelCard | None:
        seg = self._segmenter()
        return seg.card if seg is not None else None

    def cache_key(self, image: XrayImage) -> CacheKey:
        from cxrview.inference.cache import CacheKey

        return CacheKey.for_models(image.content_hash, self.card, self.segmenter_card)

    def model_info(self) -> dict[str, Any]:
        card, seg = self.card, self.segmenter_card
        return {"name": card.name, "version": card.version,
                "segmenter": {"name": seg.name, "version": seg.version} if seg else None,
                "device": self.device}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(array[None]).to(self.device)

    def _classifier_input(self, image: XrayImage, grey: np.ndarray | None = None) -> np.ndarray:
        from cxrview.core import model_input
        from cxrview.inference.preprocess import prepare_array

        if self._last_input is not None and self._last_input[0] == image.content_hash and image.content_hash:
            return self._last_input[1]
        x = prepare_array(model_input(image) if grey is None else grey, self.card)
        self._last_input = (image.content_hash, x)
        return x

    def _finding_index(self, finding: str) -> int:
        try:
            return self.card.labels.index(finding)
        except ValueError:
            raise ValueError(f"unknown finding {finding!r} (model labels: {', '.join(self.card.labels)})") \
                from None

    def cam(self, image: XrayImage, finding: str) -> np.ndarray:
        """On-demand map for one finding: float32 at the classifier's input size, in [0, 1]."""
        index = self._finding_index(finding)
        entry = get_network(self.classifier_path, self.device)
        x = self._tensor(self._classifier_input(image))
        with entry.lock, CamSession(entry.loaded.model, x, target=entry.cam_target()) as session:
            return session.cam(index)

    def predict(self, image: XrayImage, *, cam_for: CamFor = "positives",
                state: CancelState | None = None) -> Prediction:
        """Run every stage on one image (see the module docstring); raises Cancelled when asked to."""
        import torch

        from cxrview.core import model_input
        from cxrview.inference.preprocess import normalise, resize_square

        clock = _Clock()
        _check(state)
        entry = get_network(self.classifier_path, self.device)
        card = entry.loaded.card
        wanted = None if cam_for is None or cam_for == "positives" else list(cam_for)
        for name in wanted or []:
            self._finding_index(name)
        grey = model_input(image)
        resized = {card.input_size: resize_square(grey, card.input_size)}
        x_cls = normalise(resized[card.input_size], card)
        self._last_input = (image.content_hash, x_cls)
        clock.lap("preprocess")
        _check(state)

        cams: dict[str, np.ndarray] = {}
        x = self._tensor(x_cls)
        if cam_for is None:
            with torch.inference_mode():
                probs = torch.sigmoid(entry.loaded.model(x))[0].float().cpu().numpy()
            clock.lap("classifier")
        else:
            with entry.lock, CamSession(entry.loaded.model, x, target=entry.cam_target()) as session:
                assert session.logits is not None
                probs = torch.sigmoid(session.logits)[0].float().cpu().numpy()
                clock.lap("classifier")
                targets = wanted if wanted is not None else [
                    name for i, name in enumerate(card.labels) if probs[i] >= card.threshold(name)]
                for name in targets:
                    _check(state)
                    cams[name] = session.cam(card.labels.index(name))
            clock.lap("cam")
        findings = {name: {"probability": round(float(probs[i]), 4),
                           "positive": bool(probs[i] >= card.threshold(name)),
                           "threshold": card.threshold(name)} for i, name in enumerate(card.labels)}
        boxes: list[Box] = []
        for name, cam in cams.items():
            boxes += boxes_from_cam(cam, name, (image.width, image.height), priors=self.priors,
                                    max_boxes=self.max_boxes)
        clock.lap("boxes")
        _check(state)

        prediction = Prediction(path=image.path, image_size=(image.width, image.height),
                                model=self.model_info(), findings=findings, boxes=boxes,
                                content_hash=image.content_hash, cams=cams)
        seg = self._segmenter()
        seg_grey = resized[card.input_size]
        probs_seg: dict[str, np.ndarray] | None = None
        if seg is not None:
            size = seg.card.input_size
            seg_grey = resized.get(size)
            if seg_grey is None:
                seg_grey = resized[size] = resize_square(grey, size)
            x_seg = self._tensor(normalise(seg_grey, seg.card))
            with torch.inference_mode():
                out = torch.sigmoid(seg.model(x_seg))[0].float().cpu().numpy()
            probs_seg = {name: out[seg.card.labels.index(name)] for name in SEGMENTER_LABELS}
            masks = {name: p > MASK_THRESHOLD for name, p in probs_seg.items()}
            scale = (image.width / size, image.height / size)
            prediction.masks, prediction.mask_scale_xy = masks, scale
            clock.lap("segmenter")
            _check(state)
            prediction.ctr = measure_ctr(masks["heart"], masks["right_lung"], masks["left_lung"],
                                         scale_xy=scale)
            prediction.ctr_flag = ctr_flag(prediction.ctr, image.view_position)
            prediction.polygons = {name: mask_polygons(m, scale_xy=scale, largest_only=True)
                                   for name, m in masks.items()}
            clock.lap("ctr_masks")
            _check(state)
        prediction.validity = check_validity(
            seg_grey, (image.width, image.height), masks=prediction.masks or None, probs=probs_seg,
            body_part=image.body_part, view_position=image.view_position,
            ctr_measured=(prediction.ctr is not None) if seg is not None else None)
        clock.lap("validity")
        prediction.timing_ms = clock.done()
        return prediction


def triage_score(data: dict[str, Any]) -> tuple[float, str | None]:
    """(highest finding probability, that finding): what a worklist sorts by, most suspicious first."""
    findings = data.get("findings") or {}
    if not findings:
        return 0.0, None
    name = max(findings, key=lambda n: findings[n]["probability"])
    return float(findings[name]["probability"]), name

"""One image → findings, Grad-CAM, boxes, lung/heart masks, CTR and the input check.

Qt-free so the CLI, the GUI worker and tests share it. Cost is dominated by the
two forward passes; everything else is kept off that path:

* ``model_input`` (the display pipeline) runs once; both networks resize from it.
* The segmenter runs first, under ``torch.inference_mode``; its masks are
  cleaned by anatomy (``anatomy.clean_masks``: one component per organ, nothing
  below the costophrenic angles). Its lungs and heart give the thorax region
  (``thorax``) that bounds heatmaps and boxes, and feed the input check. Masks
  stay at model size; coordinates are scaled with ``scale_xy`` (no full-size
  mask upsampling).
* The classifier runs once, with autograd recording only its head (see
  ``gradcam.CamSession``), so probabilities, every requested map and the
  pooled features of the out-of-distribution score come from one pass.
  Without maps it runs under ``torch.inference_mode``.
* Raw outputs become calibrated probabilities, and positives only at validated
  operating points (``evidence``); the input check decides whether the output
  is withheld (``validity``, ``gate``).

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
from cxrview.inference.preprocess import resize_square

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
    """What a long prediction polls between stages (the GUI's TaskState, a test's namespace)."""

    @property
    def cancelled(self) -> bool: ...  # read-only is enough: the caller sets it, we only poll


@dataclass
class Prediction:
    """Everything one prediction produced; ``to_dict()`` is the JSON schema of ``cxrview predict``.

    Always complete: whether it may be shown is decided afterwards by
    ``gate.presented`` (``withheld``). Arrays (``cams`` over the whole film,
    already restricted to the thorax — a cropping classifier's maps are placed
    back where its crop was; ``masks`` at the segmenter's size) are for drawing
    and are not serialised; a Prediction rebuilt from the cache has
    none and gets maps through ``Predictor.cam``.
    """

    path: str
    image_size: tuple[int, int]  # original (width, height)
    model: dict[str, Any]
    findings: dict[str, dict[str, Any]]
    boxes: list[Box] = field(default_factory=list)
    ctr: CTRMeasurement | None = None
    ctr_flag: str | None = None
    polygons: dict[str, list[list[list[float]]]] = field(default_factory=dict)
    thorax: list[list[float]] | None = None  # convex thorax outline bounding maps and boxes
    crop: list[int] | None = None  # [x0, y0, side] the classifier read, when its card crops
    validity: dict[str, Any] = field(default_factory=lambda: {
        "ok": True, "warnings": [], "reasons": [], "withheld": False, "scores": {}})
    timing_ms: dict[str, float] = field(default_factory=dict)
    content_hash: str = ""
    input_hash: str = ""
    cams: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    masks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    mask_scale_xy: tuple[float, float] = (1.0, 1.0)
    cached: bool = False

    @property
    def withheld(self) -> bool:
        return bool(self.validity.get("withheld", False))

    @property
    def positives(self) -> list[str]:
        """Validated findings above their operating point (whether or not the output is withheld)."""
        return [name for name, f in self.findings.items() if f.get("validated") and f["positive"]]

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
            "input_hash": self.input_hash,
            "image_size": list(self.image_size),
            "model": self.model,
            "findings": self.findings,
            "boxes": [b.to_dict() for b in self.boxes],
            "ctr": ctr,
            "masks": self.polygons,
            "thorax": self.thorax,
            "crop": self.crop,
            "validity": self.validity,
            "withheld": self.withheld,
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
                   thorax=d.get("thorax"), crop=d.get("crop"), validity=d["validity"],
                   timing_ms=d.get("timing_ms") or {},
                   content_hash=d.get("content_hash", ""), input_hash=d.get("input_hash", ""),
                   cached=True)


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
    ``thorax_bound=False`` leaves maps and boxes unrestricted (benchmarks compare both).
    """

    def __init__(self, classifier: str | os.PathLike[str], segmenter: str | os.PathLike[str] | None = None,
                 *, device: str = "auto", priors: dict[str, SizePrior] | None = None,
                 max_boxes: int = 3, thorax_bound: bool = True) -> None:
        self.classifier_path = Path(classifier)
        self.segmenter_path = Path(segmenter) if segmenter is not None else None
        self.priors = priors if priors is not None else load_priors()
        self.max_boxes = max_boxes
        self.thorax_bound = thorax_bound
        self._last_view: _View | None = None  # what the networks saw of the last image
        self.set_device(device)

    def set_device(self, device: str) -> None:
        """Switch device ('auto', 'cpu', 'cuda', 'mps'); networks already loaded there are reused."""
        from cxrview.inference.bundle import pick_device

        self.device = str(pick_device(device))
        cls = self._classifier().card
        if cls.task != "multilabel-classification":
            raise BundleError(f"{self.classifier_path}: not a classifier (task {cls.task!r})")
        if self.segmenter_path is not None:
            seg = get_network(self.segmenter_path, self.device).loaded.card
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

    def options(self) -> str:
        """Predictor settings that change its output (part of the cache key)."""
        return f"boxes{self.max_boxes}" + ("" if self.thorax_bound else "-unbounded")

    def cache_key(self, image: XrayImage) -> CacheKey:
        from cxrview.core import model_input_hash
        from cxrview.inference.cache import CacheKey
        from cxrview.inference.validity import header_fields

        return CacheKey.for_models(model_input_hash(image), header_fields(image), self.card,
                                   self.segmenter_card, options=self.options())

    def model_info(self) -> dict[str, Any]:
        from cxrview.inference.cache import model_identity

        card, seg = self.card, self.segmenter_card
        return {"name": card.name, "version": card.version, "identity": model_identity(card),
                "segmenter": {"name": seg.name, "version": seg.version} if seg else None,
                "device": self.device}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        import torch

        return torch.from_numpy(array[None]).to(self.device)

    def _finding_index(self, finding: str) -> int:
        try:
            return self.card.labels.index(finding)
        except ValueError:
            raise ValueError(f"unknown finding {finding!r} (model labels: {', '.join(self.card.labels)})") \
                from None

    def _segment(self, grey: np.ndarray, resized: dict[int, np.ndarray], *, mirror: bool = False
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, float | None] | None:
        """(boolean masks, probability maps, mask size, mirror margin) from the segmenter, or None
        without one. ``mirror``: segment the left–right mirrored film in the same batch and
        return how much more sure of the heart the segmenter is on the film than on its mirror
        (``validity``: negative on most flipped films)."""
        import torch

        from cxrview.inference.anatomy import clean_masks
        from cxrview.inference.preprocess import normalise
        from cxrview.inference.validity import heart_confidence

        seg = self._segmenter()
        if seg is None:
            return None
        size = seg.card.input_size
        if size not in resized:
            resized[size] = resize_square(grey, size)
        x = normalise(resized[size], seg.card)
        batch = np.stack([x, np.ascontiguousarray(x[..., ::-1])]) if mirror else x[None]
        with torch.inference_mode():
            out = torch.sigmoid(seg.model(torch.from_numpy(batch).to(self.device))).float().cpu().numpy()
        heart = seg.card.labels.index("heart")
        probs = {name: out[0, seg.card.labels.index(name)] for name in SEGMENTER_LABELS}
        margin = heart_confidence(out[0, heart]) - heart_confidence(out[1, heart]) if mirror else None
        masks = clean_masks({name: p > MASK_THRESHOLD for name, p in probs.items()})
        return masks, probs, size, margin

    def _view(self, image: XrayImage) -> _View:
        """Segmentation, thorax region, crop and classifier input of ``image``, computed once per
        model input (the last image's are kept: a map on demand reuses its prediction's)."""
        from cxrview.core import model_input, model_input_hash
        from cxrview.inference.preprocess import normalise
        from cxrview.inference.thorax import (
            CROP_MARGIN,
            crop_box,
            crop_square,
            region_polygon,
            thorax_region,
        )

        key = model_input_hash(image)
        card = self.card
        if self._last_view is not None and self._last_view.key == (key, card.decision_digest()):
            return self._last_view
        grey = model_input(image)
        resized = {card.input_size: resize_square(grey, card.input_size)}
        view = _View(key=(key, card.decision_digest()), grey=grey, resized=resized)
        view.segmented = self._segment(grey, resized, mirror=True)
        size_xy = (image.width, image.height)
        if view.segmented is not None:
            masks, _, seg_size, _ = view.segmented
            view.scale = (image.width / seg_size, image.height / seg_size)
            view.region = thorax_region(masks)
            if view.region is not None:
                view.polygon = region_polygon(view.region, scale_xy=view.scale)
            if card.crop:
                view.box = crop_box(masks, size_xy, margin=float(card.crop.get("margin", CROP_MARGIN)))
        if view.box is not None:
            view.x = normalise(resize_square(crop_square(grey, view.box), card.input_size), card)
        else:
            view.x = normalise(resized[card.input_size], card)
        self._last_view = view
        return view

    def thorax_region(self, image: XrayImage) -> np.ndarray | None:
        """The thorax region at the segmenter's size for ``image`` (None: no segmenter or no lungs)."""
        return self._view(image).region

    def _cam_on_image(self, cam: np.ndarray, view: _View, image: XrayImage,
                      region: np.ndarray | None) -> np.ndarray:
        """A classifier-space map as a map over the whole film, thorax-bound unless asked not to."""
        from cxrview.inference.thorax import restrict_cam, uncrop_map

        cam = uncrop_map(cam, view.box, (image.width, image.height))
        return restrict_cam(cam, region) if self.thorax_bound else cam

    def cam(self, image: XrayImage, finding: str, *,
            thorax: list[list[float]] | None = None) -> np.ndarray:
        """On-demand map for one finding over the whole film, float32 in [0, 1].

        Restricted to the thorax like the maps of :meth:`predict`: to ``thorax`` (a
        prediction's outline) when given, else to the segmenter's region for this image.
        """
        from cxrview.inference.thorax import polygon_region

        index = self._finding_index(finding)
        entry = get_network(self.classifier_path, self.device)
        view = self._view(image)
        assert view.x is not None  # _view always sets the model input
        with entry.lock, CamSession(entry.loaded.model, self._tensor(view.x),
                                    target=entry.cam_target()) as session:
            cam = session.cam(index)
        region = view.region
        if thorax:
            shape = (cam.shape if view.box is None else
                     self._cam_on_image(cam, view, image, None).shape)
            region = polygon_region(thorax, (image.width, image.height), shape)
        return self._cam_on_image(cam, view, image, region)

    def predict(self, image: XrayImage, *, cam_for: CamFor = "positives",
                state: CancelState | None = None) -> Prediction:
        """Run every stage on one image (see the module docstring); raises Cancelled when asked to.

        ``cam_for``: "positives" (maps for the validated positives), a list of findings, or None.
        """
        import torch

        from cxrview.core import model_input, model_input_hash
        from cxrview.inference.evidence import calibrate, findings_from_probabilities
        from cxrview.inference.features import feature_tap, ood_score
        from cxrview.inference.thorax import fit_box_inside
        from cxrview.inference.validity import check_validity, header_fields

        clock = _Clock()
        _check(state)
        entry = get_network(self.classifier_path, self.device)
        card = entry.loaded.card
        wanted = None if cam_for is None or cam_for == "positives" else list(cam_for)
        for name in wanted or []:
            self._finding_index(name)
        model_input(image)  # the display pipeline, once per image (memoised on it)
        input_hash = model_input_hash(image)
        size_xy = (image.width, image.height)
        clock.lap("preprocess")
        _check(state)

        view = self._view(image)  # segmenter (+ mirror), anatomy, thorax, crop, classifier input
        polygon = view.polygon
        clock.lap("segmenter")
        _check(state)

        cams: dict[str, np.ndarray] = {}
        assert view.x is not None  # _view always sets the model input
        x = self._tensor(view.x)
        if cam_for is None:
            with torch.inference_mode(), feature_tap(entry.loaded.model, target=entry.cam_target()) as taps:
                raw = torch.sigmoid(entry.loaded.model(x))[0].float().cpu().numpy()
            features = taps[0][0] if taps else None
            probabilities = calibrate(card, raw)
            findings = findings_from_probabilities(card, probabilities)
            clock.lap("classifier")
        else:
            with entry.lock, CamSession(entry.loaded.model, x, target=entry.cam_target()) as session:
                assert session.logits is not None
                raw = torch.sigmoid(session.logits)[0].float().cpu().numpy()
                features = session.features()
                probabilities = calibrate(card, raw)
                findings = findings_from_probabilities(card, probabilities)
                clock.lap("classifier")
                targets = wanted if wanted is not None else [
                    name for name, f in findings.items() if f["positive"]]
                for name in targets:
                    _check(state)
                    cams[name] = self._cam_on_image(session.cam(card.labels.index(name)), view, image,
                                                    view.region)
            clock.lap("cam")
        boxes: list[Box] = []
        for name, cam in cams.items():
            for box in boxes_from_cam(cam, name, size_xy, priors=self.priors, max_boxes=self.max_boxes):
                fitted = fit_box_inside(box, polygon if self.thorax_bound else None, size_xy)
                if fitted is not None:
                    boxes.append(fitted)
        clock.lap("boxes")
        _check(state)

        prediction = Prediction(path=image.path, image_size=size_xy, model=self.model_info(),
                                findings=findings, boxes=boxes, content_hash=image.content_hash,
                                input_hash=input_hash, cams=cams, thorax=polygon,
                                crop=list(view.box) if view.box is not None else None)
        seg_grey, probs_seg, mirror_margin = view.resized[card.input_size], None, None
        if view.segmented is not None:
            masks, probs_seg, seg_size, mirror_margin = view.segmented
            seg_grey = view.resized[seg_size]
            prediction.masks, prediction.mask_scale_xy = masks, view.scale
            prediction.ctr = measure_ctr(masks["heart"], masks["right_lung"], masks["left_lung"],
                                         scale_xy=view.scale)
            prediction.ctr_flag = ctr_flag(prediction.ctr, image.view_position)
            prediction.polygons = {name: mask_polygons(m, scale_xy=view.scale, largest_only=True)
                                   for name, m in masks.items()}
            clock.lap("ctr_masks")
            _check(state)
        ood = ood_score(card, features) if features is not None else None
        prediction.validity = check_validity(
            seg_grey, size_xy, masks=prediction.masks or None, probs=probs_seg,
            header=header_fields(image), ctr=prediction.ctr, ctr_attempted=view.segmented is not None,
            ood=ood, ood_threshold=(card.ood or {}).get("threshold"), mirror_margin=mirror_margin,
            uncropped=bool(card.crop) and view.box is None)
        clock.lap("validity")
        prediction.timing_ms = clock.done()
        return prediction


@dataclass
class _View:
    """What the networks see of one image: computed once per model input (``Predictor._view``)."""

    key: tuple[str, str]  # (model input hash, classifier card digest)
    grey: np.ndarray
    resized: dict[int, np.ndarray]
    segmented: tuple[dict[str, np.ndarray], dict[str, np.ndarray], int, float | None] | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    region: np.ndarray | None = None
    polygon: list[list[float]] | None = None
    box: tuple[int, int, int] | None = None  # the classifier's thorax crop, when its card asks
    x: np.ndarray | None = None


def triage_score(data: dict[str, Any]) -> tuple[float | None, str | None]:
    """(highest validated finding probability, that finding): what a worklist sorts by.

    (None, None) for a withheld film or a model without validated findings: such
    films are not "suspicious", they are outside what the model can judge.
    """
    from cxrview.inference.gate import is_withheld

    if is_withheld(data):
        return None, None
    findings = {n: f for n, f in (data.get("findings") or {}).items() if f.get("validated")}
    if not findings:
        return None, None
    name = max(findings, key=lambda n: findings[n]["probability"])
    return float(findings[name]["probability"]), name

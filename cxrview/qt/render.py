"""``cxrview render --overlay …``: AI overlays drawn offscreen by the viewer's own layers.

The CLI needs no window, but it must draw exactly what the viewer draws, so it
paints the same :mod:`cxrview.qt.overlays` layers onto the displayed 8-bit
image (``paint_layers``) under Qt's offscreen platform. What each overlay
shows matches the viewer after a prediction: ``heatmap:FINDING`` is that
finding's Grad-CAM map at the findings dock's default opacity and focuses the
boxes on that finding (as clicking it in the dock does); without a heatmap,
``boxes`` draws the boxes of every positive finding. A film the input check
withholds gets no overlay unless ``force`` (``gate.presented``), as in the viewer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.predict import Predictor

OVERLAY_NAMES = ("heatmap:FINDING", "boxes", "masks", "ctr")
HEATMAP_OPACITY = 0.5  # the findings dock's default


@dataclass(frozen=True)
class OverlayRequest:
    heatmap: str | None = None  # finding name
    boxes: bool = False
    masks: bool = False
    ctr: bool = False


def parse_overlays(values: list[str]) -> OverlayRequest:
    """``["heatmap:Effusion", "boxes", …]`` → request; ValueError with the accepted names."""
    heatmap, names = None, set()
    for value in values:
        key, _, arg = value.partition(":")
        key = key.strip().lower()
        if key == "heatmap":
            if not arg.strip():
                raise ValueError("--overlay heatmap needs a finding: heatmap:FINDING")
            heatmap = arg.strip()
        elif key in ("boxes", "masks", "ctr") and not arg:
            names.add(key)
        else:
            raise ValueError(f"unknown overlay {value!r} (use {', '.join(OVERLAY_NAMES)})")
    return OverlayRequest(heatmap, "boxes" in names, "masks" in names, "ctr" in names)


def _ensure_app() -> Any:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance()
    if app is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QGuiApplication(["cxrview-render"])
    return app


def render_with_overlays(image: XrayImage, grey: np.ndarray, predictor: Predictor,
                         request: OverlayRequest, *, force: bool = False
                         ) -> tuple[np.ndarray, dict[str, Any]]:
    """(RGB uint8 image with the overlays, the presented prediction dict they came from)."""
    from cxrview.inference.gate import presented
    from cxrview.qt.overlays import apply_prediction, heatmap_rgba, make_layers, paint_layers

    labels = list(predictor.card.labels)
    if request.heatmap is not None and request.heatmap not in labels:
        for name in labels:  # forgive case: "effusion" means "Effusion"
            if name.lower() == request.heatmap.lower():
                request = OverlayRequest(name, request.boxes, request.masks, request.ctr)
                break
        else:
            raise ValueError(f"unknown finding {request.heatmap!r} (model labels: {', '.join(labels)})")
    if (request.masks or request.ctr) and predictor.segmenter_path is None:
        raise ValueError("masks and ctr overlays need a segmenter bundle")
    prediction = predictor.predict(image, cam_for="positives")
    data = presented(prediction.to_dict(), force=force)
    _ensure_app()
    if data["withheld"] and not data["forced"]:
        return paint_layers(grey, []), data
    layers = make_layers()
    h, w = grey.shape
    for layer in layers.values():
        layer.set_image_size(w, h)
    apply_prediction(layers, data)
    if request.heatmap is not None:
        finding = request.heatmap
        cam = prediction.cams.get(finding)
        if cam is None:
            cam = predictor.cam(image, finding)
        layers["heatmap"].set_map(finding, heatmap_rgba(cam, prediction.image_size))  # type: ignore[attr-defined]
        layers["heatmap"].setOpacity(HEATMAP_OPACITY)
        layers["boxes"].set_focus(finding)  # type: ignore[attr-defined]
    shown = {"heatmap": request.heatmap is not None, "boxes": request.boxes,
             "contours": request.masks, "ctr": request.ctr}
    return paint_layers(grey, [layers[name] for name, on in shown.items() if on]), data

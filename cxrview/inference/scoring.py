"""The one "predict, cache first" path that the CLI, the viewer and batch scoring share.

``predict_cached`` looks the image up in the results cache under the key of
what the models would see (``Predictor.cache_key``), runs the prediction only
on a miss and stores it. The returned data are complete; what may be shown is
``gate.presented``'s decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.predict import CamFor, CancelState, Prediction, Predictor


@dataclass
class Scored:
    prediction: Prediction
    data: dict[str, Any]  # Prediction.to_dict() of this image (path and hashes its own)
    cached: bool


def predict_cached(predictor: Predictor, image: XrayImage, *, cache: ResultCache | None,
                   cam_for: CamFor = "positives", state: CancelState | None = None) -> Scored:
    """The prediction for ``image``: from ``cache`` when these models saw this input before
    (maps are then computed on demand), else a fresh one, stored when it is complete
    (``cam_for="positives"``: boxes included). ``cache=None``: no cache."""
    from cxrview.inference.predict import Prediction

    key = predictor.cache_key(image) if cache is not None else None
    data = cache.get(key) if cache is not None and key is not None else None
    if data is not None:
        data = {**data, "path": image.path, "content_hash": image.content_hash}
        return Scored(Prediction.from_dict(data), data, True)
    prediction = predictor.predict(image, cam_for=cam_for, state=state)
    data = prediction.to_dict()
    if cache is not None and key is not None and cam_for == "positives":
        cache.put(key, data)  # only complete results: a map-less run would serve no boxes later
    return Scored(prediction, data, False)

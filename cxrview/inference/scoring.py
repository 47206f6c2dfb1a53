"""The workflows that the CLI, the viewer and batch scoring share: predict cache first, and
record predictions in a workspace.

``predict_cached`` looks the image up in the results cache under the key of
what the models would see (``Predictor.cache_key``), runs the prediction only
on a miss and stores it. The returned data are complete; what may be shown is
``gate.presented``'s decision.

``record_predictions`` makes a model's predictions a workspace's "model
opinion": it stores each image's probabilities with whether the model saw the
image's patient in training (``mislabel.out_of_sample_flags``), skips films the
input check withholds (no triage score, no judgement of their labels), and
rescores those images at the card's validated operating points
(``evidence.operating_points``). ``cxrview score``, Model › Score All Files and
the review panel's per-image opinion all go through it, so they store the same
rows for the same predictions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxrview.core import XrayImage
    from cxrview.core.workspace import Workspace
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.card import ModelCard
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


class ScoringError(ValueError):
    """The model cannot score a workspace (its labels are not the workspace's findings)."""


def workspace_problem(card: ModelCard) -> str | None:
    """Why ``card``'s model cannot score a review workspace, or None when it can."""
    from cxrview.core.findings import NIH_FINDINGS
    from cxrview.inference.cache import model_identity

    if list(card.labels) != list(NIH_FINDINGS):
        return (f"{model_identity(card)}: its labels are not the 14 NIH findings; "
                "it cannot score this workspace")
    return None


@dataclass(frozen=True)
class Recorded:
    """What :func:`record_predictions` stored."""

    model: str  # the model identity the rows are stored under
    stored: int  # predictions stored
    withheld: int  # films skipped because the input check withholds their output
    in_sample: int  # stored images whose patient the model trained or tuned on (no mislabel score)
    scored: int  # images whose triage and mislabel scores were recomputed


def record_predictions(ws: Workspace, card: ModelCard, predictions: Mapping[int, Prediction]) -> Recorded:
    """Store ``predictions`` (workspace image id → the model's prediction) and rescore those images.

    Raises :class:`ScoringError` when the model's labels are not the workspace's findings.
    """
    from cxrview.core.mislabel import out_of_sample_flags, rescore
    from cxrview.inference.cache import model_identity
    from cxrview.inference.evidence import operating_points

    problem = workspace_problem(card)
    if problem is not None:
        raise ScoringError(problem)
    model = model_identity(card)
    kept = {image_id: p for image_id, p in predictions.items() if not p.withheld}
    records = ws.images(list(kept))
    flags = out_of_sample_flags(card.training, records)
    probs = {r.id: [float(kept[r.id].findings[name]["probability"]) for name in card.labels] for r in records}
    oos = {r.id: flags[r.id] for r in records}
    ws.store_predictions(model, probs, oos)
    # Scores are computed from the stored rows (rounded as stored), as a later full rescore would.
    scored = rescore(ws, model, operating_points(card), list(probs)) if probs else 0
    return Recorded(model=model, stored=len(probs), withheld=len(predictions) - len(kept),
                    in_sample=sum(1 for v in oos.values() if v is False), scored=scored)


def rescore_workspace(ws: Workspace, card: ModelCard) -> int:
    """Recompute every image's scores from this model's stored predictions (after label edits,
    or new out-of-fold predictions); returns how many images were scored."""
    from cxrview.core.mislabel import rescore
    from cxrview.inference.cache import model_identity
    from cxrview.inference.evidence import operating_points

    return rescore(ws, model_identity(card), operating_points(card))

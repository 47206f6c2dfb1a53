"""Model bundles: round trip, and every kind of broken bundle refused with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cxrview.inference.architectures import build  # noqa: E402
from cxrview.inference.bundle import load_bundle, pick_device, save_bundle  # noqa: E402
from cxrview.inference.card import BundleError, ModelCard  # noqa: E402
from cxrview.inference.preprocess import prepare_array  # noqa: E402
from tests.unit.card_factory import evidence_for  # noqa: E402

LABELS = ["Atelectasis", "Cardiomegaly", "Effusion"]


def _card(**overrides) -> ModelCard:
    values = {"name": "test", "version": "0.0.1", "task": "multilabel-classification",
              "architecture": "small-cnn", "labels": LABELS, "input_size": 64,
              "thresholds": {"Cardiomegaly": 0.3}, "evidence": evidence_for(LABELS, ["Cardiomegaly"])}
    values.update(overrides)
    return ModelCard(**values)


def _saved(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build("small-cnn", len(LABELS))
    return save_bundle(tmp_path / "bundle", model, _card()), model


def test_round_trip_gives_identical_outputs(tmp_path: Path) -> None:
    path, model = _saved(tmp_path)
    loaded = load_bundle(path, device="cpu")
    assert loaded.card.labels == LABELS and loaded.card.threshold("Cardiomegaly") == 0.3
    assert len(loaded.card.weights_sha256) == 64
    x = torch.from_numpy(prepare_array(np.random.default_rng(0).random((100, 90)), loaded.card))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x[None]), loaded.model(x[None]))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left


def test_a_threshold_without_evidence_is_no_operating_point() -> None:
    card = _card(thresholds={"Cardiomegaly": 0.3, "Effusion": 0.4})  # Effusion: not validated
    assert card.threshold("Cardiomegaly") == 0.3 and card.threshold("Effusion") is None
    assert card.threshold("Atelectasis") is None  # no silent 0.5 default
    bare = _card(evidence={})
    assert all(bare.threshold(label) is None for label in LABELS)


def test_calibration_block_is_checked() -> None:
    with pytest.raises(ValueError, match="calibration"):
        _card(calibration={"method": "isotonic-magic", "per_label": {}})
    with pytest.raises(ValueError, match="scale > 0"):
        _card(calibration={"method": "platt", "per_label": {"Effusion": [-1.0, 0.0]}})
    card = _card(calibration={"method": "platt", "per_label": {"Effusion": [1.0, -1.0]}})
    assert ModelCard.from_dict(json.loads(card.to_json())).calibration == card.calibration


def test_sha_mismatch_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(path)


def test_wrong_architecture_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    card = json.loads((path / "card.json").read_text())
    card["labels"] = [*LABELS, "Hernia"]
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="do not fit"):
        load_bundle(path)


def test_garbage_weights_and_cards_refused(tmp_path: Path) -> None:
    path, _ = _saved(tmp_path)
    (path / "model.safetensors").write_bytes(b"\x80\x04pickle-like garbage")
    with pytest.raises(BundleError, match="safetensors"):
        load_bundle(path, verify_sha=False)
    (path / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="unreadable model card"):
        load_bundle(path)
    (path / "card.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(BundleError, match="invalid model card"):
        load_bundle(path)
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")


def test_card_validation() -> None:
    with pytest.raises(ValueError, match="unknown labels"):
        _card(thresholds={"Pneumonia": 0.5})
    with pytest.raises(ValueError, match="task"):
        _card(task="detection")


def test_device_choice() -> None:
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    with pytest.raises(BundleError, match="unknown device"):
        pick_device("tpu")


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("small-cnn", len(LABELS))
    full = save_bundle(tmp_path / "full", model, _card())
    half = save_bundle(tmp_path / "half", model, _card(weights_dtype="float16"))
    size_full = (full / "model.safetensors").stat().st_size
    size_half = (half / "model.safetensors").stat().st_size
    assert size_half < 0.55 * size_full
    loaded = load_bundle(half, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())
    x = torch.randn(2, 1, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x), atol=1e-2)

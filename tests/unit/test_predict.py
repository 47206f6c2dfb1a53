"""predict pipeline: schema, CAM/box mechanics, validity, cache and the CLI.

Tiny random-weight bundles test the mechanics only; checks that need trained
models run when the shipped bundles exist.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cxrview.cli import main as cxrview_main  # noqa: E402
from cxrview.core import XrayImage, load_image  # noqa: E402
from cxrview.inference.architectures import build  # noqa: E402
from cxrview.inference.boxes import SizePrior, boxes_from_cam, load_priors, size_likeness  # noqa: E402
from cxrview.inference.bundle import save_bundle  # noqa: E402
from cxrview.inference.cache import CacheKey, ResultCache  # noqa: E402
from cxrview.inference.card import BundleError, ModelCard  # noqa: E402
from cxrview.inference.predict import Cancelled, Prediction, Predictor  # noqa: E402
from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle  # noqa: E402
from cxrview.inference.validity import check_validity  # noqa: E402
from tests.conftest import DICOM_DIR, NIH_DIR  # noqa: E402
from tests.unit.card_factory import evidence_for  # noqa: E402
from tests.unit.phantoms import lung_heart_masks  # noqa: E402


def predict_main(argv: list[str]) -> int:
    """``cxrview predict ARGV…`` in this process."""
    return cxrview_main(["predict", *argv])
from training.sources import NIH_FINDINGS, SEGMENTATION_STRUCTURES  # noqa: E402

NIH_PNG = NIH_DIR / "00000001_000.png"
HIP = DICOM_DIR / "hip_cr_12bit_jpeg_extended.dcm"
SHIPPED = shipped_bundle(CLASSIFIER).exists() and shipped_bundle(SEGMENTER).exists()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="shipped bundles not trained yet")
needs_data = pytest.mark.skipif(not NIH_PNG.exists(), reason="NIH test images absent")
TOP_KEYS = {"path", "content_hash", "input_hash", "model", "findings", "boxes", "ctr", "masks", "thorax",
            "validity", "withheld", "timing_ms"}
FINDING_KEYS = {"probability", "validated", "positive", "threshold", "sensitivity", "sensitivity_ci",
                "specificity", "specificity_ci", "auroc", "auroc_ci", "n_positives", "note"}


def _classifier(root: Path, version: str = "0.0.1", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    # 4 sure positives; a fifth threshold without validation evidence must never call anything
    card = ModelCard(name="tiny-cls", version=version, task="multilabel-classification",
                     architecture="small-cnn", labels=list(NIH_FINDINGS), input_size=64,
                     thresholds={name: 0.0 for name in NIH_FINDINGS[:5]},
                     evidence=evidence_for(list(NIH_FINDINGS), list(NIH_FINDINGS[:4])))
    return save_bundle(root, build("small-cnn", len(NIH_FINDINGS)), card)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    torch.manual_seed(0)
    seg_card = ModelCard(name="tiny-seg", version="0.0.1", task="segmentation", architecture="unet",
                         labels=list(SEGMENTATION_STRUCTURES), input_size=64,
                         architecture_args={"encoder": "resnet18"})
    seg = save_bundle(root / "seg", build("unet", 3, 1, seg_card.architecture_args), seg_card)
    return _classifier(root / "cls"), seg


@pytest.fixture(scope="module")
def predictor(bundles: tuple[Path, Path]) -> Predictor:
    return Predictor(*bundles, device="cpu")


@pytest.fixture(scope="module")
def nih_image() -> XrayImage:
    if not NIH_PNG.exists():
        pytest.skip("NIH test images absent")
    return load_image(NIH_PNG)


def _inverted(image: XrayImage) -> XrayImage:
    return replace(image, stored=(255 - image.stored).astype(image.stored.dtype),
                   content_hash=image.content_hash + "-inv")


# -- predict ------------------------------------------------------------------------------------

def test_prediction_json_schema(predictor: Predictor, nih_image: XrayImage) -> None:
    pred = predictor.predict(nih_image)
    d = json.loads(pred.to_json())
    assert TOP_KEYS <= set(d)
    assert d["path"] == str(NIH_PNG)
    identity = d["model"].pop("identity")
    assert identity.startswith("tiny-cls@0.0.1#") and "+" in identity
    assert d["model"] == {"name": "tiny-cls", "version": "0.0.1", "device": "cpu",
                          "segmenter": {"name": "tiny-seg", "version": "0.0.1"}}
    assert list(d["findings"]) == NIH_FINDINGS
    for name, f in d["findings"].items():
        assert set(f) == FINDING_KEYS and 0 <= f["probability"] <= 1
        assert f["validated"] == (name in NIH_FINDINGS[:4])
        assert f["positive"] == (f["validated"] and f["probability"] >= f["threshold"])
        assert (f["threshold"] is None) == (not f["validated"]) and (f["note"] == "") == f["validated"]
    assert not d["findings"][NIH_FINDINGS[4]]["positive"]  # threshold 0 but not validated
    assert set(pred.cams) == set(pred.positives) == set(NIH_FINDINGS[:4])  # CAMs for positives
    for box in d["boxes"]:
        assert {"finding", "x", "y", "w", "h", "score"} <= set(box) and box["finding"] in pred.cams
        assert 0 <= box["x"] and box["x"] + box["w"] <= nih_image.width + 1e-6 and box["h"] > 0
    assert set(d["masks"]) == {"heart", "left_lung", "right_lung"}
    for polygons in d["masks"].values():
        assert all(len(p) >= 3 and all(len(v) == 2 for v in p) for p in polygons)
    assert d["ctr"] is None or {"value", "heart", "thorax", "flag"} <= set(d["ctr"])
    assert set(d["validity"]) == {"ok", "warnings", "reasons", "withheld", "scores"}
    assert d["withheld"] == d["validity"]["withheld"] == bool(d["validity"]["reasons"])
    assert d["input_hash"].startswith("in1-") and d["content_hash"].startswith("px1-")
    assert {"preprocess", "classifier", "cam", "segmenter", "total"} <= set(d["timing_ms"])
    assert Prediction.from_dict(d).to_dict() == d  # cache round trip


def test_arrays_for_drawing(predictor: Predictor, nih_image: XrayImage) -> None:
    pred = predictor.predict(nih_image, cam_for=["Mass"])
    assert set(pred.cams) == {"Mass"}
    assert pred.cams["Mass"].shape == (64, 64) and pred.cams["Mass"].dtype == np.float32
    assert pred.cam_at_original("Mass").shape == (nih_image.height, nih_image.width)
    assert pred.mask_at_original("heart").shape == (nih_image.height, nih_image.width)
    assert pred.mask_scale_xy == (nih_image.width / 64, nih_image.height / 64)
    np.testing.assert_allclose(predictor.cam(nih_image, "Mass"), pred.cams["Mass"], atol=1e-6)


def test_no_cams_same_probabilities(predictor: Predictor, nih_image: XrayImage) -> None:
    plain = predictor.predict(nih_image, cam_for=None)
    with_cams = predictor.predict(nih_image, cam_for="positives")
    assert plain.cams == {} and not any(b for b in plain.boxes)
    assert plain.findings == with_cams.findings
    with pytest.raises(ValueError, match="unknown finding"):
        predictor.predict(nih_image, cam_for=["Fracture"])


class _State:
    def __init__(self, after: int) -> None:
        self.calls, self.after = 0, after

    @property
    def cancelled(self) -> bool:
        self.calls += 1
        return self.calls > self.after


@pytest.mark.parametrize("after", [0, 2, 4])
def test_cancel_between_stages(predictor: Predictor, nih_image: XrayImage, after: int) -> None:
    with pytest.raises(Cancelled):
        predictor.predict(nih_image, state=_State(after))


def test_bundle_replaced_on_disk_is_reloaded(tmp_path: Path, bundles: tuple[Path, Path],
                                             nih_image: XrayImage) -> None:
    cls = _classifier(tmp_path / "cls", version="1")
    pred = Predictor(cls, None, device="cpu")
    first = pred.predict(nih_image, cam_for=None)
    assert first.model["version"] == "1" and first.ctr is None and first.masks == {}
    _classifier(tmp_path / "cls", version="2", seed=5)
    second = pred.predict(nih_image, cam_for=None)
    assert second.model["version"] == "2" and second.findings != first.findings


def test_broken_bundles_are_refused(tmp_path: Path, bundles: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match=r"card\.json"):
        Predictor(tmp_path / "nothing", device="cpu")
    with pytest.raises(BundleError, match="not a lung/heart segmenter"):
        Predictor(bundles[0], bundles[0], device="cpu")


# -- boxes ----------------------------------------------------------------------------------------

def _two_blobs() -> np.ndarray:
    cam = np.zeros((128, 128), np.float32)
    cam[20:28, 20:28] = 1.0  # nodule-sized: 8/128 = 0.06 of the image
    cam[60:120, 40:100] = 0.9  # cardiomegaly-sized: 60/128 = 0.47
    return cam


def test_size_prior_picks_the_finding_sized_blob() -> None:
    priors = load_priors()
    assert {"Nodule", "Cardiomegaly", "Effusion"} <= set(priors)
    nodule = boxes_from_cam(_two_blobs(), "Nodule", (1024, 1024), priors=priors)
    assert (nodule[0].x, nodule[0].y, nodule[0].w, nodule[0].h) == (160, 160, 64, 64)  # ×8 to original
    heart = boxes_from_cam(_two_blobs(), "Cardiomegaly", (1024, 1024), priors=priors)
    assert len(heart) == 1 and (heart[0].x, heart[0].w) == (320, 480)  # the nodule blob: far below
    no_prior = boxes_from_cam(_two_blobs(), "Hernia", (1024, 1024), priors=priors, max_boxes=1)
    assert no_prior[0].w == 64  # heat only: the hotter blob
    assert boxes_from_cam(np.zeros((8, 8)), "Mass", (100, 100)) == []


def test_size_likeness() -> None:
    prior = SizePrior(0.1, 0.2, 0.5, 0.5)
    assert size_likeness(0.1, 0.2, prior) == 1.0
    assert size_likeness(0.2, 0.2, prior) < size_likeness(0.12, 0.2, prior) < 1.0
    assert size_likeness(0.5, 0.5, None) == 1.0


# -- validity -------------------------------------------------------------------------------------

def test_validity_onlung_heart_masks() -> None:
    masks = lung_heart_masks()
    grey = np.where(masks["right_lung"] | masks["left_lung"], 0.2, 0.7).astype(np.float32)
    crisp = {k: m.astype(np.float32) for k, m in masks.items()}
    good = check_validity(grey, (1024, 1024), masks=masks, probs=crisp, body_part="CHEST", view_position="PA")
    assert good["ok"], good
    assert good["scores"]["seg_confidence"] == 1.0 and good["scores"]["inversion_margin"] > 0.3
    inverted = check_validity(1 - grey, (1024, 1024), masks=masks, probs=crisp)
    assert not inverted["ok"] and any("inverted" in w for w in inverted["warnings"])
    swapped = {**masks, "right_lung": masks["left_lung"], "left_lung": masks["right_lung"]}
    assert any("sides" in w for w in check_validity(grey, (1024, 1024), masks=swapped)["warnings"])
    mushy = {k: np.full((128, 128), 0.55, np.float32) for k in masks}
    unsure = check_validity(grey, (1024, 1024), masks=masks, probs=mushy)
    assert any("unsure" in w for w in unsure["warnings"])
    wide = check_validity(grey, (3000, 1000), body_part="HIP", view_position="LL")
    assert len(wide["warnings"]) == 3


@needs_data
def test_inversion_fallback_on_a_real_png(nih_image: XrayImage) -> None:
    from cxrview.core import model_input

    assert check_validity(model_input(nih_image), (512, 512))["ok"]
    bad = check_validity(model_input(_inverted(nih_image)), (512, 512))
    assert any("inverted" in w for w in bad["warnings"])


@pytest.mark.skipif(not HIP.exists(), reason="DICOM test data absent")
def test_hip_film_is_warned(predictor: Predictor) -> None:
    result = predictor.predict(load_image(HIP), cam_for=None).validity
    assert not result["ok"] and any("HIP" in w for w in result["warnings"])


@needs_shipped
@needs_data
def test_shipped_models_accept_chest_and_reject_others(nih_image: XrayImage) -> None:
    shipped = Predictor(shipped_bundle(CLASSIFIER), shipped_bundle(SEGMENTER), device="cpu")
    good = shipped.predict(nih_image)
    assert good.validity["ok"], good.validity
    assert good.ctr is not None and 0.3 < good.ctr.value < 0.7
    assert not shipped.predict(_inverted(nih_image)).validity["ok"]
    if HIP.exists():
        hip = load_image(HIP)
        hip.body_part = None  # the pixels alone must give it away
        assert not shipped.predict(hip, cam_for=None).validity["ok"]


# -- cache ------------------------------------------------------------------------------------------

def test_cache_round_trip_and_concurrent_readers(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c" / "p.sqlite3")
    key = CacheKey("in1-abc", "hdr", "cls@1#aa", "seg@1#bb")
    assert cache.get(key) is None
    assert cache.put(key, {"path": "a.png", "x": [1, 2]})
    assert cache.get(key) == {"path": "a.png", "x": [1, 2]}
    assert cache.get(replace(key, classifier="cls@2#cc")) is None  # new weights: miss
    with sqlite3.connect(cache.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(30):
                assert cache.get(key) is not None
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(30):
        assert ResultCache(cache.path).put(CacheKey(f"in1-{i}", "h", "c", "s"), {"i": i})
    for t in threads:
        t.join()
    assert not errors and len(cache) == 31


def test_corrupted_cache_is_recreated(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "p.sqlite3"
    path.write_bytes(b"this is not a database" * 200)
    cache = ResultCache(path)
    key = CacheKey("in1-abc", "h", "c", "s")
    with caplog.at_level(logging.WARNING):
        assert cache.get(key) is None
    assert "corrupted" in caplog.text
    assert cache.put(key, {"ok": 1}) and cache.get(key) == {"ok": 1}
    assert list(tmp_path.glob("p.sqlite3.corrupt-*"))


# -- CLI ----------------------------------------------------------------------------------------------

def _cli(bundles: tuple[Path, Path], db: Path, *args: str) -> list[str]:
    return [*args, "--model", str(bundles[0]), "--segmenter", str(bundles[1]), "--device", "cpu",
            "--cache-db", str(db)]


@needs_data
def test_cli_json_csv_text_and_failures(tmp_path: Path, bundles: tuple[Path, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(NIH_PNG, folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    db = tmp_path / "cache.sqlite3"
    # random-weight models: the segmenter finds no plausible thorax, so the output is withheld
    assert predict_main(_cli(bundles, db, str(folder), "--json")) == 2
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 1 and TOP_KEYS | {"forced"} <= set(rows[0]) and "cached" not in rows[0]
    assert rows[0]["withheld"] and rows[0]["validity"]["reasons"] and not rows[0]["forced"]
    assert rows[0]["findings"] == {} and rows[0]["boxes"] == [] and rows[0]["masks"] == {}
    assert err.count("\n") == 1 and "b.png" in err
    assert predict_main(_cli(bundles, db, str(folder / "a.png"), "--json", "--force")) == 0
    forced = json.loads(capsys.readouterr().out)
    assert forced["cached"] is True and forced["forced"] and list(forced["findings"]) == NIH_FINDINGS
    assert [n for n, f in forced["findings"].items() if f["positive"]] == NIH_FINDINGS[:4]
    assert predict_main(_cli(bundles, db, str(folder / "a.png"), "--csv", "--no-cache")) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split(",") == ["path", *NIH_FINDINGS, "ctr", "validity_ok", "withheld"]
    assert row.startswith(str(folder / "a.png")) and len(row.split(",")) == len(NIH_FINDINGS) + 4
    assert row.split(",")[1:15] == [""] * 14 and row.endswith(",1")  # withheld: no probabilities
    assert predict_main(_cli(bundles, db, str(folder / "a.png"))) == 0
    text = capsys.readouterr().out
    assert "AI output withheld" in text and "Cardiomegaly" not in text
    assert predict_main(_cli(bundles, db, str(folder / "a.png"), "--force")) == 0
    text = capsys.readouterr().out
    assert "SHOWN ON REQUEST" in text and "Cardiomegaly" in text and "POSITIVE" in text
    assert "not validated (never called positive): " in text and "research use" in text


def test_cli_missing_bundle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ns = argparse.Namespace(paths=["x.png"], json=False, csv=False, model=str(tmp_path / "none"),
                            segmenter=None, device="cpu", no_cache=True)
    from cxrview.cli.predict import run as run_predict

    assert run_predict(ns) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none" in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")
def test_shipped_classifier_agrees_on_cuda_and_cpu() -> None:
    """Same probabilities, positives and Grad-CAM maps on the GPU as on the CPU (H100: 1e-4, 9e-4)."""
    paths = sorted(NIH_DIR.glob("*.png"))[:3]
    assert paths, f"no NIH images in {NIH_DIR}"
    results = {}
    for device in ("cpu", "cuda"):
        pred = Predictor(shipped_bundle(CLASSIFIER), None, device=device)
        results[device] = [pred.predict(load_image(p), cam_for=list(pred.card.labels)) for p in paths]
    for on_cpu, on_gpu in zip(results["cpu"], results["cuda"], strict=True):
        assert on_cpu.positives == on_gpu.positives
        for name, finding in on_cpu.findings.items():
            assert abs(finding["probability"] - on_gpu.findings[name]["probability"]) < 1e-3
            assert np.abs(on_cpu.cams[name] - on_gpu.cams[name]).max() < 1e-2

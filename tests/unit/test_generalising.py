"""Models that hold up elsewhere: mask sources, kept splits, source mixing, robust augmentation,
anatomical clean-up and the classifier's thorax crop (geometry and inference)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cxrview.inference.anatomy import clean_masks, costophrenic_row
from cxrview.inference.thorax import crop_box, crop_square, uncrop_map
from tests.unit.phantoms import lung_heart_masks
from training.sources import NIH_FINDINGS, Sample, list_samples, mask_samples, reserved_by_position


def _write(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), array)


def test_mask_sources_match_dotted_names_and_reserve_every_third(tmp_path: Path) -> None:
    names = [f"1.2.840.{i}.{i * 7}" for i in range(9)]  # DICOM-UID-like names, as in Wingspan
    for name in names:
        _write(tmp_path / "png" / f"{name}.png", np.full((32, 32), 100, np.uint8))
        for structure in ("heart", "left_lung", "right_lung"):
            _write(tmp_path / "mask" / structure / f"{name}.png", np.full((32, 32), 255, np.uint8))
    train = mask_samples(tmp_path / "png", tmp_path / "mask", source="wingspan", reserved_every=3)
    held = mask_samples(tmp_path / "png", tmp_path / "mask", source="wingspan", reserved_every=3,
                        only_reserved=True)
    assert len(train) == 6 and len(held) == 3 and not {s.path for s in train} & {s.path for s in held}
    assert {Path(s.path).name for s in held} == reserved_by_position([f"{n}.png" for n in names], 3)
    assert all(s.patient.startswith("wingspan:1.2.840.") for s in train)  # the whole UID, not "1"
    # JSRT layout: JPCLN001.IMG.png ↔ JPCLN001.gif
    _write(tmp_path / "jsrt" / "JPCLN001.IMG.png", np.zeros((16, 16), np.uint8))
    for structure in ("heart", "left_lung", "right_lung"):
        _write(tmp_path / "jmask" / structure / "JPCLN001.png", np.zeros((16, 16), np.uint8))
    assert [s.patient for s in mask_samples(tmp_path / "jsrt", tmp_path / "jmask")] == ["jsrt:JPCLN001"]


def _samples(n: int, source: str) -> list[Sample]:
    labels = np.zeros(len(NIH_FINDINGS), np.float32)
    return [Sample(path=f"/x/{source}{i}.png", patient=f"{source}:{i}", source=source, labels=labels.copy(),
                   known=np.ones(len(NIH_FINDINGS), np.float32)) for i in range(n)]


def test_split_from_keeps_the_old_patients_where_they_were(tmp_path: Path) -> None:
    from training.config import TrainConfig
    from training.engine import split_keeping

    old = {"train": [f"nih:{i}" for i in range(0, 14)], "val": ["nih:14", "nih:15"],
           "test": ["nih:16", "nih:17"]}
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"training": {"split_patients": old}}))
    config = TrainConfig(split_from=str(card), val_fraction=0.2, test_fraction=0.2, seed=3)
    split = split_keeping(config, _samples(18, "nih") + _samples(50, "rsna"))
    for name in ("train", "val", "test"):
        assert set(old[name]) <= set(split[name])
    fresh = [p for p in split["val"] + split["test"] if p.startswith("rsna:")]
    assert 15 <= len(fresh) <= 25  # the new source is split by the fractions
    assert sum(len(v) for v in split.values()) == 68


def test_list_source_and_source_mix(tmp_path: Path) -> None:
    from training.engine import class_pos_weight, source_mix_weights

    listing = tmp_path / "normals.json"
    listing.write_text(json.dumps({"train": ["~/a.png", "/b/c.png"], "heldout_eval": ["/d.png"]}))
    normals = list_samples(listing, list(NIH_FINDINGS), source="rsna-normal")
    assert [s.patient for s in normals] == ["rsna-normal:a", "rsna-normal:c"]
    assert all(s.known.all() and not s.labels.any() for s in normals)
    with pytest.raises(ValueError, match="no list 'test'"):
        list_samples(listing, list(NIH_FINDINGS), key="test")

    samples = _samples(100, "nih") + _samples(900, "rsna-normal")
    for sample in samples[:20]:
        sample.labels[0] = 1.0
    weights = source_mix_weights(samples, {"rsna-normal": 0.25})
    share = weights[100:].sum() / weights.sum()
    assert share == pytest.approx(0.25) and weights.mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="without training images"):
        source_mix_weights(samples, {"chexpert": 0.5})
    # pos_weight follows what the sampler draws, not the raw counts
    plain, mixed = class_pos_weight(samples), class_pos_weight(samples, weights)
    assert float(mixed[0]) < float(plain[0])


def test_robust_augmentation_keeps_range_and_shape() -> None:
    from training.datasets import robust_photometric

    rng = np.random.default_rng(0)
    grey = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    outs = [robust_photometric(grey, rng) for _ in range(30)]
    assert all(o.shape == grey.shape and o.dtype == np.float32 and 0 <= o.min() <= o.max() <= 1 for o in outs)
    assert any(np.abs(o - grey).mean() > 0.01 for o in outs)  # it does something


def test_clean_masks_cuts_what_anatomy_forbids() -> None:
    masks = lung_heart_masks(256)
    dirty = {k: v.copy() for k, v in masks.items()}
    dirty["left_lung"][232:250, 170:200] = True  # a gastric-bubble "lung" well below the angles
    dirty["heart"][5:15, 120:136] = True  # a second "heart" above the apices
    dirty["right_lung"][100:104, 60:64] = False  # a hole
    cleaned = clean_masks(dirty)
    assert not cleaned["left_lung"][232:250, 170:200].any() and not cleaned["heart"][5:15].any()
    assert cleaned["right_lung"][100:104, 60:64].all()  # holes filled
    for name in ("right_lung", "left_lung"):
        assert (cleaned[name] & masks[name]).sum() == masks[name].sum()  # true anatomy kept
    n, _ = cv2.connectedComponents(cleaned["heart"].astype(np.uint8))
    assert n == 2  # background + one heart
    assert costophrenic_row(masks["right_lung"], lateral_side="left") > 160


def test_crop_geometry_round_trip() -> None:
    masks = lung_heart_masks(128)
    box = crop_box(masks, (1024, 1024), margin=0.05)
    assert box is not None
    x0, _, side = box
    assert x0 < 15 * 8 and x0 + side > 113 * 8 and side >= (109 - 19) * 8  # both lungs inside
    assert crop_box({**masks, "left_lung": np.zeros((128, 128), bool)}, (1024, 1024)) is None
    image = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    patch = crop_square(image, (-10, 20, 50))
    assert patch.shape == (50, 50) and (patch[:, :10] == 0).all() and patch[0, 10] == image[20, 0]
    cam = np.ones((7, 7), np.float32)
    placed = uncrop_map(cam, (256, 128, 512), (1024, 1024), long_side=256)
    assert placed.shape == (256, 256) and placed[:32].max() == 0 and placed[40:150, 70:190].min() == 1
    assert uncrop_map(cam, None, (1024, 1024)) is cam


def test_a_cropping_classifier_reads_the_thorax_and_maps_back(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from cxrview.core import load_image
    from cxrview.inference.architectures import build
    from cxrview.inference.bundle import save_bundle
    from cxrview.inference.card import ModelCard
    from cxrview.inference.predict import Predictor
    from tests.conftest import NIH_DIR
    from tests.unit.card_factory import evidence_for
    from training.sources import SEGMENTATION_STRUCTURES

    png = sorted(NIH_DIR.glob("*.png"))[0] if NIH_DIR.is_dir() else None
    if png is None:
        pytest.skip("NIH test images absent")
    torch.manual_seed(0)
    card = ModelCard(name="crop-cls", version="1", task="multilabel-classification", architecture="small-cnn",
                     labels=list(NIH_FINDINGS), input_size=64, thresholds={n: 0.0 for n in NIH_FINDINGS[:2]},
                     evidence=evidence_for(list(NIH_FINDINGS), list(NIH_FINDINGS[:2])),
                     crop={"method": "thorax", "margin": 0.08})
    cls = save_bundle(tmp_path / "cls", build("small-cnn", len(NIH_FINDINGS)), card)
    seg_card = ModelCard(name="seg", version="1", task="segmentation", architecture="unet",
                         labels=list(SEGMENTATION_STRUCTURES), input_size=64,
                         architecture_args={"encoder": "resnet18"})
    seg = save_bundle(tmp_path / "seg", build("unet", 3, 1, seg_card.architecture_args), seg_card)
    predictor = Predictor(cls, seg, device="cpu")
    image = load_image(png)
    real_segment = predictor._segment
    found: dict[str, np.ndarray] = {}

    def fake_segment(grey, resized, *, mirror=False):  # the masks a segmenter would give
        out = real_segment(grey, resized, mirror=mirror)
        probs = {k: v.astype(np.float32) for k, v in found.items()}
        return found, probs, out[2], 0.1

    monkeypatch.setattr(predictor, "_segment", fake_segment)
    # no thorax found: the whole film is read, and the reader is told
    found.update({k: np.zeros((64, 64), bool) for k in ("heart", "left_lung", "right_lung")})
    whole = predictor.predict(image)
    assert whole.crop is None and any("whole film" in w for w in whole.validity["warnings"])
    # with plausible masks the classifier reads the square around them, and maps come back placed
    found.update(lung_heart_masks(64))
    predictor._last_view = None
    cropped = predictor.predict(image, cam_for=["Atelectasis"])
    assert cropped.crop is not None and cropped.to_dict()["crop"] == cropped.crop
    cam = cropped.cams["Atelectasis"]
    assert cam.shape[1] == 448 or cam.shape[0] == 448  # a grid over the whole film
    x0, y0, side = cropped.crop
    s = 448 / max(image.width, image.height)
    outside = np.ones(cam.shape, bool)
    rows = slice(max(0, round(y0 * s)), round((y0 + side) * s))
    outside[rows, max(0, round(x0 * s)):round((x0 + side) * s)] = False
    assert cam[outside].max(initial=0) == 0
    assert not any("whole film" in w for w in cropped.validity["warnings"])
    on_demand = predictor.cam(image, "Atelectasis")
    np.testing.assert_allclose(on_demand, cam, atol=1e-5)


def test_shortcut_probes_tell_a_source_shortcut_from_the_classifier_learning_it() -> None:
    from training.shortcuts import shortcut_report

    rng = np.random.default_rng(0)
    n = 120
    sources = ["nih"] * n + ["rsna-normal"] * n
    images = rng.integers(0, 200, (2 * n, 32, 32)).astype(np.uint8)
    images[n:] = np.clip(images[n:].astype(int) + 40, 0, 255).astype(np.uint8)  # another pipeline
    normal = np.ones(2 * n, bool)
    labels = ["A", "B"]
    blind = rng.random((2 * n, 2))  # outputs that ignore the source
    report = shortcut_report(sources, normal, images, blind, {"A": 0.9}, labels)
    assert sorted(report["probe"]["sources"]) == ["nih", "rsna-normal"]
    assert report["probe"]["image_auroc"] > 0.95  # the pixels give the source away
    assert 0.35 < report["probe"]["output_auroc"] < 0.65  # the classifier's answers do not
    learned = blind.copy()
    learned[n:, 0] += 1.0  # a classifier that did learn the source
    probe = shortcut_report(sources, normal, images, learned, {"A": 0.9}, labels)["probe"]
    assert probe["output_auroc"] > 0.9
    per = report["per_source"]
    assert per["nih"]["n_normals"] == n and 0 <= per["nih"]["positives_per_normal"] <= 1

"""What the AI may show: the input gate, thorax-bound boxes, and a cache that keys on what models see."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxrview.core import load_image, model_input_hash
from cxrview.core.findings import NIH_FINDINGS
from cxrview.inference.boxes import Box
from cxrview.inference.gate import positive_findings, presented
from cxrview.inference.predict import triage_score
from cxrview.inference.thorax import (
    box_inside,
    fit_box_inside,
    polygon_region,
    region_polygon,
    restrict_cam,
    thorax_region,
)
from cxrview.inference.validity import age_in_years, check_validity
from tests.conftest import DICOM_DIR, NIH_DIR
from tests.unit.dicom_factory import make_dicom
from tests.unit.phantoms import lung_heart_masks

MONO2 = DICOM_DIR / "chest_cr_mono2_8bit_jpeg_baseline.dcm"
MONO1 = DICOM_DIR / "chest_cr_relabelled_mono1_8bit_jpeg_baseline.dcm"
NON_CHEST = ("extremity_cr_mono1_10bit_jpeg2000_lossless.dcm", "hip_cr_12bit_jpeg_extended.dcm")
needs_dicom = pytest.mark.skipif(not MONO2.exists(), reason="DICOM test data absent")


def _shipped():
    from cxrview.inference.shipped import CLASSIFIER, SEGMENTER, shipped_bundle

    if not (shipped_bundle(CLASSIFIER) / "card.json").is_file():
        pytest.skip("shipped bundles absent")
    pytest.importorskip("torch")
    from cxrview.inference.predict import Predictor

    return Predictor(shipped_bundle(CLASSIFIER), shipped_bundle(SEGMENTER), device="cpu")


@pytest.fixture(scope="module")
def shipped():
    return _shipped()


# -- thorax geometry (no models) -------------------------------------------------------------------

def test_thorax_region_bounds_maps_and_boxes() -> None:
    masks = lung_heart_masks()
    region = thorax_region(masks)
    assert region is not None and region[60, 38] and region[60, 90] and not region[2, 2]
    assert thorax_region({**masks, "left_lung": np.zeros((128, 128), bool)}) is None
    polygon = region_polygon(region, scale_xy=(8.0, 8.0))  # a 1024-px film
    assert len(polygon) >= 3
    back = polygon_region(polygon, (1024, 1024), (128, 128))
    assert back is not None and abs(int(back.sum()) - int(region.sum())) < 0.05 * region.sum()

    cam = np.ones((64, 64), np.float32)  # a map lit everywhere, corners included
    cam[0, 0] = 2.0  # its peak in the corner
    bounded = restrict_cam(cam, region)
    assert bounded.max() == pytest.approx(1.0) and bounded[0, 0] == 0 and bounded[30, 18] > 0.5

    huge = Box("Mass", -50, -50, 1200, 1200, 1.0)  # beyond the image and the thorax
    fitted = fit_box_inside(huge, polygon, (1024, 1024))
    assert fitted is not None and box_inside(fitted, polygon)
    assert 0 <= fitted.x and fitted.x + fitted.w <= 1024 and fitted.w > 100
    assert box_inside(fitted.to_dict(), polygon)  # still inside after JSON rounding
    assert fit_box_inside(Box("Mass", 0, 0, 60, 60, 1.0), polygon, (1024, 1024)) is None  # corner box
    clipped = fit_box_inside(Box("Mass", 1000, 1000, 100, 100, 1.0), None, (1024, 1024))
    assert clipped is not None and (clipped.x + clipped.w, clipped.y + clipped.h) == (1024, 1024)
    assert fit_box_inside(Box("Mass", 1100, 10, 100, 100, 1.0), None, (1024, 1024)) is None


# -- the input check (no models) -----------------------------------------------------------------------

def test_header_reasons_withhold() -> None:
    grey = np.full((64, 64), 0.5, np.float32)
    assert age_in_years("045Y") == 45 and age_in_years("008M") == pytest.approx(0.667, abs=1e-3)
    assert age_in_years("") is None and age_in_years("abc") is None
    for header, words in [({"modality": "MR"}, "modality is MR"), ({"modality": "US"}, "not a radiograph"),
                          ({"body_part": "KNEE"}, "KNEE"), ({"view_position": "LL"}, "lateral"),
                          ({"patient_age": "006Y"}, "aged 6 years")]:
        result = check_validity(grey, (512, 512), header=header)
        assert result["withheld"] and any(words in r for r in result["reasons"]), (header, result)
    fine = check_validity(grey, (512, 512), header={"modality": "DX", "body_part": "CHEST",
                                                    "view_position": "PA", "patient_age": "054Y"})
    assert not any("modality" in r or "aged" in r for r in fine["reasons"])


def test_one_small_lung_is_a_caution_not_a_withhold() -> None:
    masks = lung_heart_masks()
    small = np.zeros((128, 128), bool)
    small[40:60, 84:96] = True  # a collapsed left lung: 1.5 % of the image
    grey = np.where(masks["right_lung"] | small, 0.2, 0.7).astype(np.float32)
    result = check_validity(grey, (1024, 1024), masks={**masks, "left_lung": small})
    assert not result["withheld"] and any("one lung" in w for w in result["warnings"]), result


# -- the gate ------------------------------------------------------------------------------------------------

def _data(withheld: bool) -> dict:
    findings = {"A": {"probability": 0.9, "validated": True, "positive": True, "threshold": 0.5},
                "B": {"probability": 0.95, "validated": False, "positive": True, "threshold": None}}
    return {"findings": findings, "boxes": [{"finding": "A"}], "masks": {"heart": [[[0, 0]]]},
            "ctr": {"value": 0.5}, "thorax": [[0, 0], [1, 0], [1, 1]], "withheld": withheld,
            "validity": {"withheld": withheld, "reasons": ["modality is MR"] if withheld else []}}


def test_presented_hides_withheld_output_and_not_validated_positives() -> None:
    hidden = presented(_data(withheld=True))
    assert hidden["withheld"] and not hidden["forced"]
    assert hidden["findings"] == {} and hidden["boxes"] == [] and hidden["masks"] == {}
    assert hidden["ctr"] is None and hidden["thorax"] is None
    forced = presented(_data(withheld=True), force=True)
    assert forced["forced"] and positive_findings(forced) == ["A"]
    shown = presented(_data(withheld=False))
    assert not shown["findings"]["B"]["positive"] and positive_findings(shown) == ["A"]
    # triage: only validated findings rank; a withheld film does not rank at all
    assert triage_score(_data(withheld=False)) == (0.9, "A")
    assert triage_score(_data(withheld=True)) == (None, None)


# -- the cache key -----------------------------------------------------------------------------------------

@needs_dicom
def test_cache_key_follows_what_the_models_see(tmp_path: Path) -> None:
    import pydicom

    from cxrview.inference.cache import CacheKey, header_digest
    from cxrview.inference.validity import header_fields

    mono2, mono1 = load_image(MONO2), load_image(MONO1)
    assert mono2.content_hash == mono1.content_hash  # same stored pixels…
    assert model_input_hash(mono2) != model_input_hash(mono1)  # …shown (and seen) inverted
    renamed = tmp_path / "renamed.dcm"
    shutil.copy(MONO2, renamed)
    assert model_input_hash(load_image(renamed)) == model_input_hash(mono2)  # a renamed file still hits

    def key(image) -> str:
        return CacheKey(model_input_hash(image), header_digest(header_fields(image)), "c", "s").as_string()

    assert key(load_image(renamed)) == key(mono2)
    for keyword, value in (("ViewPosition", "LL"), ("BodyPartExamined", "KNEE"), ("Modality", "MR"),
                           ("PatientAge", "007Y")):
        ds = pydicom.dcmread(MONO2)
        setattr(ds, keyword, value)
        retagged = tmp_path / f"{keyword}.dcm"
        ds.save_as(retagged)
        image = load_image(retagged)
        assert image.content_hash == mono2.content_hash and key(image) != key(mono2), keyword


# -- with the shipped models --------------------------------------------------------------------------------

@needs_dicom
def test_relabelled_mono1_twin_gets_its_own_result_and_warning(shipped, tmp_path: Path) -> None:
    from cxrview.inference.cache import ResultCache
    from cxrview.inference.scoring import predict_cached

    cache = ResultCache(tmp_path / "cache.sqlite3")
    first = predict_cached(shipped, load_image(MONO2), cache=cache)
    twin = predict_cached(shipped, load_image(MONO1), cache=cache)
    assert not first.cached and not twin.cached  # the twin is not served its MONOCHROME2 result
    assert not any("inverted" in w for w in first.data["validity"]["warnings"])
    assert any("inverted" in r for r in twin.data["validity"]["reasons"]) and twin.data["withheld"]
    assert twin.data["input_hash"] != first.data["input_hash"]
    again = predict_cached(shipped, load_image(MONO1), cache=cache)
    assert again.cached and again.data["validity"] == twin.data["validity"]


def _mr_copy_of_a_chest_film(tmp_path: Path) -> Path:
    """A chest film's pixels in a DICOM that says MR: the header alone must withhold it."""
    png = sorted(NIH_DIR.glob("*.png"))[0]
    pixels = load_image(png).stored.astype(np.uint8)
    return make_dicom(tmp_path / "mr.dcm", pixels, Modality="MR", BodyPartExamined="CHEST")


@pytest.mark.skipif(not (DICOM_DIR / NON_CHEST[0]).exists(), reason="DICOM test data absent")
def test_non_chest_films_get_no_findings_boxes_or_contours_unless_forced(shipped, tmp_path: Path,
                                                                           capsys) -> None:
    from cxrview.cli import main

    def predict_main(argv: list[str]) -> int:
        return main(["predict", *argv])

    files = [DICOM_DIR / name for name in NON_CHEST] + [_mr_copy_of_a_chest_film(tmp_path)]
    common = ["--json", "--device", "cpu", "--cache-db", str(tmp_path / "c.sqlite3")]
    assert predict_main([*map(str, files), *common]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert row["withheld"] and not row["forced"] and row["validity"]["reasons"], row["path"]
        assert row["findings"] == {} and row["boxes"] == [] and row["masks"] == {}
        assert row["ctr"] is None and row["thorax"] is None
    assert any("modality is MR" in r for r in rows[2]["validity"]["reasons"])
    assert predict_main([*map(str, files), *common, "--force"]) == 0
    forced = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(row["forced"] and list(row["findings"]) == list(NIH_FINDINGS) for row in forced)


@pytest.mark.skipif(not NIH_DIR.is_dir(), reason="NIH test images absent")
def test_no_box_leaves_the_thorax(shipped) -> None:
    checked = 0
    for png in sorted(NIH_DIR.glob("*.png"))[:6]:
        image = load_image(png)
        prediction = shipped.predict(image, cam_for=list(shipped.card.labels))
        if prediction.thorax is None:
            continue
        for box in prediction.boxes:
            d = box.to_dict()
            assert 0 <= d["x"] and 0 <= d["y"] and d["x"] + d["w"] <= image.width + 0.01
            assert d["y"] + d["h"] <= image.height + 0.01
            assert box_inside(d, prediction.thorax), (png.name, d)
            checked += 1
        region = polygon_region(prediction.thorax, prediction.image_size, (64, 64))
        for cam in prediction.cams.values():
            import cv2

            small = cv2.resize(cam, (64, 64), interpolation=cv2.INTER_AREA)
            assert small[~region].max(initial=0.0) < 0.35  # at most the faded edge outside the thorax
    assert checked > 20

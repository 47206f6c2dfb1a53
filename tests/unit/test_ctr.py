"""CTR on synthetic phantoms with known widths, plausibility checks, flags and mask polygons."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cxrview.inference.ctr import (
    AP_NOTE,
    PA_FLAG,
    CTRMeasurement,
    ctr_flag,
    mask_polygons,
    measure_ctr,
)

SIZE = 256


def ellipse(centre: tuple[int, int], axes: tuple[int, int], angle: float = 0.0) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(canvas, centre, axes, angle, 0, 360, 1, thickness=-1)
    return canvas.astype(bool)


def phantom(heart_half_width: int = 45) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lungs 30..226 (inclusive) at their widest row 128; heart centred at x=128."""
    right_lung = ellipse((70, 128), (40, 90))  # patient right = image left
    left_lung = ellipse((186, 128), (40, 90))
    heart = ellipse((128, 150), (heart_half_width, 35))
    return heart, right_lung, left_lung


@pytest.mark.parametrize("half_width", [30, 45, 60, 75])
def test_phantom_ctr_matches_constructed_ratio(half_width: int) -> None:
    heart, right, left = phantom(half_width)
    result = measure_ctr(heart, right, left)
    assert result is not None
    constructed = (2 * half_width) / (2 * 98)  # heart diameter / thorax diameter
    assert result.value == pytest.approx(constructed, rel=0.02)
    assert result.thorax == pytest.approx((30.0, 227.0, 128.5))  # pixel edges, row centre
    assert result.heart[:2] == pytest.approx((128 - half_width, 129 + half_width))
    assert result.midline_x == pytest.approx(128.5)
    assert result.mrd + result.mld == pytest.approx(result.heart[1] - result.heart[0])
    assert result.heart[2] == pytest.approx(150.5)
    assert result.value_widest_row == pytest.approx(result.value)  # upright ellipse: same row


def test_midline_sum_exceeds_widest_row_when_borders_peak_on_different_rows() -> None:
    _, right, left = phantom()
    heart = ellipse((128, 150), (55, 30), angle=25)  # tilted heart: extremes on different rows
    result = measure_ctr(heart, right, left)
    assert result is not None
    assert result.value > result.value_widest_row
    assert result.mrd_y != result.mld_y
    assert result.heart[2] == pytest.approx((result.mrd_y + result.mld_y) / 2)


def test_scale_maps_to_original_pixels() -> None:
    heart, right, left = phantom()
    base = measure_ctr(heart, right, left)
    doubled = measure_ctr(heart, right, left, scale_xy=(2.0, 2.0))
    assert base is not None and doubled is not None
    assert doubled.value == pytest.approx(base.value)
    assert doubled.heart == pytest.approx(tuple(2 * v for v in base.heart))
    assert doubled.thorax == pytest.approx(tuple(2 * v for v in base.thorax))
    assert doubled.mrd == pytest.approx(2 * base.mrd)
    aniso = measure_ctr(heart, right, left, scale_xy=(4.0, 2.0))
    assert aniso is not None
    assert aniso.value == pytest.approx(base.value)  # the ratio is horizontal only
    assert aniso.thorax == pytest.approx((4 * base.thorax[0], 4 * base.thorax[1], 2 * base.thorax[2]))
    with pytest.raises(ValueError, match="scale_xy"):
        measure_ctr(heart, right, left, scale_xy=(0.0, 1.0))


def test_implausible_masks_give_none() -> None:
    heart, right, left = phantom()
    assert measure_ctr(np.zeros_like(heart), right, left) is None
    assert measure_ctr(heart, np.zeros_like(right), left) is None
    assert measure_ctr(heart, left, right) is None  # lungs swapped
    wide_heart = ellipse((128, 150), (110, 30))
    assert measure_ctr(wide_heart, right, left) is None  # heart beyond the thorax
    one_sided = ellipse((60, 150), (20, 20))
    assert measure_ctr(one_sided, right, left) is None  # heart does not cross the midline


def test_specks_and_apical_artefacts_are_ignored() -> None:
    heart, right, left = phantom()
    expected = measure_ctr(heart, right, left)
    noisy_heart = heart.copy()
    noisy_heart[10:13, 2:5] = True  # a speck far away
    noisy_right = right.copy()
    noisy_right[250:253, 0:3] = True
    wide_apex_right = right.copy()
    wide_apex_right[45:55, 5:70] = True  # flares out near the apex (top 40 % of the lungs)
    assert measure_ctr(noisy_heart, noisy_right, left) == expected
    assert measure_ctr(heart, wide_apex_right, left) == expected


def test_validation_errors() -> None:
    heart, right, left = phantom()
    with pytest.raises(ValueError, match="shapes differ"):
        measure_ctr(heart[:100], right, left)
    as_numbers = measure_ctr(heart.astype(np.float32), right.astype(np.uint8), left)
    assert as_numbers == measure_ctr(heart, right, left)  # 0/1 in any dtype is a mask
    with pytest.raises(ValueError, match="threshold"):
        measure_ctr(heart * np.float32(0.7), right, left)
    with pytest.raises(ValueError, match="2-D"):
        measure_ctr(heart[None], right, left)


def test_to_dict_round_trip_is_json() -> None:
    heart, right, left = phantom()
    result = measure_ctr(heart, right, left, scale_xy=(4.0, 4.0))
    assert result is not None
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert d["heart"]["x_left"] == pytest.approx(result.heart[0])
    assert CTRMeasurement.from_dict(d) == result
    bare = CTRMeasurement(0.4, (1.0, 2.0, 3.0), (0.0, 5.0, 3.0))
    assert bare.to_dict()["mrd"] is None
    assert CTRMeasurement.from_dict(bare.to_dict()).value == 0.4


def test_ctr_flag() -> None:
    big = CTRMeasurement(0.6, (0.0, 6.0, 1.0), (0.0, 10.0, 1.0))
    small = CTRMeasurement(0.45, (0.0, 4.5, 1.0), (0.0, 10.0, 1.0))
    assert ctr_flag(big, "PA") == PA_FLAG == "CTR > 0.5: cardiomegaly suspected"
    assert ctr_flag(big, " pa ") == PA_FLAG
    assert ctr_flag(small, "PA") is None
    assert ctr_flag(big, "AP") == AP_NOTE
    assert ctr_flag(small, "AP SUPINE") == AP_NOTE
    assert ctr_flag(big, "LL") is None
    assert ctr_flag(big, None) is None
    assert ctr_flag(None, "PA") is None


def test_rectangle_polygon() -> None:
    mask = np.zeros((100, 120), bool)
    mask[20:60, 10:50] = True  # columns 10..49, rows 20..59
    mask[90:95, 100:105] = True  # 5x5 speck: contour area 16, below min_area
    polys = mask_polygons(mask)
    assert len(polys) == 1
    pts = np.array(polys[0])
    assert 4 <= len(pts) <= 5
    assert pts[:, 0].min() == pytest.approx(10.5) and pts[:, 0].max() == pytest.approx(49.5)
    assert pts[:, 1].min() == pytest.approx(20.5) and pts[:, 1].max() == pytest.approx(59.5)
    scaled = np.array(mask_polygons(mask, scale_xy=(4.0, 2.0))[0])
    assert scaled[:, 0].min() == pytest.approx(42.0) and scaled[:, 1].max() == pytest.approx(119.0)
    assert len(mask_polygons(mask, min_area=0)) == 2
    json.dumps(polys)


def test_polygons_largest_first_and_simplified() -> None:
    _, right, _ = phantom()
    polys = mask_polygons(right | ellipse((200, 40), (10, 10)))
    assert len(polys) == 2
    assert max(p[0] for p in polys[0]) < 128  # the lung, not the small disc
    assert len(polys[0]) < 60  # Douglas–Peucker removed most of ~500 boundary pixels
    assert mask_polygons(np.zeros((10, 10), bool)) == []


def test_largest_only_drops_specks() -> None:
    _, right, _ = phantom()
    polys = mask_polygons(right | ellipse((200, 40), (10, 10)), largest_only=True)
    assert len(polys) == 1 and max(p[0] for p in polys[0]) < 128

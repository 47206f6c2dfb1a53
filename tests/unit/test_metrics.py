"""Metrics against known answers and brute-force definitions; ROC/JSON report files."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from training import metrics as m
from training.report import render_roc, write_json_report, write_roc_png


def brute_force_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (pos.size * neg.size))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_pair_counting_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    s = rng.integers(0, 12, 300) / 4.0 + 0.3 * y  # heavy ties, some signal
    assert m.auroc(y, s) == pytest.approx(brute_force_auroc(y, s), abs=1e-12)


def test_auroc_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    assert m.auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert m.auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert m.auroc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert m.auroc(np.array([True, False]), [0.2, 0.1]) == 1.0
    assert m.auroc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert m.auroc([0, 0], [0.1, 0.2]) is None


def test_auroc_validation() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        m.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="entries"):
        m.auroc([0, 1], [0.1])
    with pytest.raises(ValueError, match="NaN"):
        m.auroc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        m.auroc([[0, 1]], [[0.1, 0.2]])


def test_per_label_auroc_excludes_masked_labels() -> None:
    Y = np.array([[1, 0], [0, 1], [1, -1], [0, 0], [0, 1]], dtype=float)
    P = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.99], [0.3, 0.2], [0.1, 0.7]])
    M = np.array([[1, 1], [1, 1], [0, 0], [1, 1], [1, 1]])
    out = m.per_label_auroc(Y, P, M, labels=["A", "B"])
    # Row 2 would make label A imperfect (positive scored 0.1) if it were not excluded.
    assert out["A"] == {"auroc": 1.0, "n_pos": 1, "n_neg": 3}
    assert out["B"] == {"auroc": 1.0, "n_pos": 2, "n_neg": 2}
    with pytest.raises(ValueError, match="known"):
        m.per_label_auroc(Y, P, None, labels=["A", "B"])
    with pytest.raises(ValueError, match="shape"):
        m.per_label_auroc(Y, P[:, :1], M)
    with pytest.raises(ValueError, match="label names"):
        m.per_label_auroc(Y, P, M, labels=["A"])


def test_roc_curve_shape_and_area() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.normal(y, 1.0), 1)
    fpr, tpr, thr = m.roc_curve(y, s)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.isinf(thr[0]) and np.all(np.diff(thr) < 0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(m.auroc(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="both"):
        m.roc_curve([1, 1], [0.1, 0.2])


def test_youden_threshold_separates_separable_data() -> None:
    y = np.array([0] * 50 + [1] * 50)
    s = np.concatenate([np.linspace(0.0, 0.4, 50), np.linspace(0.6, 1.0, 50)])
    t = m.choose_threshold(y, s)
    assert 0.4 < t <= 0.6
    op = m.operating_point(y, s, t)
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (50, 0, 50, 0)
    assert op["f1"] == op["precision"] == op["recall"] == op["specificity"] == 1.0


def test_sensitivity_and_specificity_targets() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 1000)
    s = rng.normal(y * 1.5, 1.0)
    t = m.choose_threshold(y, s, method="sensitivity", target=0.9)
    assert m.operating_point(y, s, t)["recall"] >= 0.9
    # the highest such threshold: the next distinct score up misses the target
    higher = np.min(s[s > t])
    assert m.operating_point(y, s, higher)["recall"] < 0.9
    t = m.choose_threshold(y, s, method="specificity", target=0.95)
    assert m.operating_point(y, s, t)["specificity"] >= 0.95
    with pytest.raises(ValueError, match="method"):
        m.choose_threshold(y, s, method="magic")


def test_operating_point_counts() -> None:
    y = [1, 1, 1, 0, 0, 0, 0]
    s = [0.9, 0.6, 0.2, 0.7, 0.3, 0.1, 0.6]
    op = m.operating_point(y, s, 0.6)  # >= 0.6 is positive, so the tie at 0.6 counts
    assert (op["tp"], op["fp"], op["tn"], op["fn"]) == (2, 2, 2, 1)
    assert op["precision"] == pytest.approx(0.5)
    assert op["recall"] == pytest.approx(2 / 3)
    assert op["specificity"] == pytest.approx(0.5)
    assert op["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert m.operating_point(y, s, 2.0)["precision"] == 0.0  # nothing predicted positive


def _bootstrap_data(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    return y, np.round(rng.normal(y, 1.0), 2)


def test_bootstrap_ci_contains_estimate_and_narrows() -> None:
    rng = np.random.default_rng(3)
    y_small, s_small = _bootstrap_data(rng, 200)
    y_big, s_big = _bootstrap_data(rng, 2000)
    lo_big, hi_big = m.bootstrap_auroc_ci(y_big, s_big, n=1000, seed=0)
    lo_small, hi_small = m.bootstrap_auroc_ci(y_small, s_small, n=500, seed=0)
    assert lo_big <= m.auroc(y_big, s_big) <= hi_big
    assert lo_small <= m.auroc(y_small, s_small) <= hi_small
    assert hi_big - lo_big < 0.6 * (hi_small - lo_small)
    assert m.bootstrap_auroc_ci(y_small, s_small, n=200, seed=5) == m.bootstrap_auroc_ci(
        y_small, s_small, n=200, seed=5
    )


@pytest.mark.perf
def test_bootstrap_ci_is_fast() -> None:
    rng = np.random.default_rng(3)
    _bootstrap_data(rng, 200)  # the same draws as above
    y_big, s_big = _bootstrap_data(rng, 2000)
    start = time.perf_counter()
    m.bootstrap_auroc_ci(y_big, s_big, n=1000, seed=0)
    assert time.perf_counter() - start < 1.5


def test_weighted_auroc_core_matches_auroc() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 150).astype(np.int8)
    s = rng.integers(0, 6, 150).astype(float)
    counts = rng.integers(0, 3, (4, 150))
    for row, weights in zip(m._weighted_aurocs(counts, y, s), counts, strict=True):
        idx = np.repeat(np.arange(150), weights)
        assert row == pytest.approx(m.auroc(y[idx], s[idx]), abs=1e-12)


def test_paired_bootstrap_difference() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 800)
    good = rng.normal(2.0 * y, 1.0)
    bad = rng.normal(0.3 * y, 1.0)
    diff, lo, hi = m.bootstrap_auroc_diff_ci(y, good, bad, n=300)
    assert diff == pytest.approx(m.auroc(y, good) - m.auroc(y, bad))
    assert 0.0 < lo <= diff <= hi


def test_summarize_multilabel_is_plain_json() -> None:
    rng = np.random.default_rng(6)
    Y = rng.integers(0, 2, (120, 3)).astype(float)
    Y[:, 2] = 0  # only negatives: AUROC undefined
    P = np.clip(rng.normal(Y * 0.5 + 0.25, 0.2), 0, 1)
    M = np.ones_like(Y)
    M[:10, 0] = 0
    out = m.summarize_multilabel(Y, P, M, ["a", "b", "c"])
    json.dumps(out, allow_nan=False)  # plain types only
    a = out["per_label"]["a"]
    assert a["n_pos"] + a["n_neg"] == 110
    assert a["auroc"] == pytest.approx(m.auroc(Y[10:, 0], P[10:, 0]))
    assert a["threshold"] == pytest.approx(m.choose_threshold(Y[10:, 0], P[10:, 0]))
    assert out["per_label"]["c"]["auroc"] is None and out["per_label"]["c"]["threshold"] is None
    assert out["mean_auroc"] == pytest.approx((a["auroc"] + out["per_label"]["b"]["auroc"]) / 2)
    assert out["n_labels_auroc"] == 2
    given = m.summarize_multilabel(Y, P, M, ["a", "b", "c"], thresholds={"a": 0.5, "b": 0.5, "c": 0.5})
    assert given["per_label"]["c"]["threshold"] == 0.5
    assert given["per_label"]["c"]["tp"] == 0 and given["per_label"]["c"]["fn"] == 0
    for entry in given["per_label"].values():
        assert all(type(v) in (int, float, type(None)) for v in entry.values())


def test_confusion_matrix_and_most_confused() -> None:
    cm = m.confusion_matrix([0, 0, 1, 1, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0, 2, 1], 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 2], [1, 1, 1]])
    assert m.most_confused(cm, ["x", "y", "z"], k=2) == [("y", "z", 2), ("x", "y", 1)]
    assert len(m.most_confused(cm, ["x", "y", "z"], k=10)) == 4  # zero cells omitted
    with pytest.raises(ValueError, match="class indices"):
        m.confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="class names"):
        m.most_confused(cm, ["x"])


def test_top_losses() -> None:
    out = m.top_losses([0.1, 2.0, np.nan, 0.5], ["a", "b", "c", "d"], k=3)
    assert [i for i, _ in out] == ["c", "b", "d"]
    with pytest.raises(ValueError, match="ids"):
        m.top_losses([0.1], ["a", "b"])


def test_dice_known_values() -> None:
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    assert m.dice(a, b) == 1.0
    a[:, :4] = True  # 40 px
    b[:, 2:8] = True  # 60 px, overlap 20
    assert m.dice(a, b) == pytest.approx(2 * 20 / 100)
    assert m.dice(a, a) == 1.0
    assert m.dice(a, np.zeros_like(a)) == 0.0
    assert m.dice(a.astype(np.float32), b.astype(np.uint8)) == pytest.approx(0.4)  # 0/1 in any dtype
    with pytest.raises(ValueError, match="threshold"):
        m.dice(a.astype(float) * 0.7, b)
    with pytest.raises(ValueError, match="shape"):
        m.dice(a, b[:5])


def test_dice_per_structure() -> None:
    pred = np.zeros((2, 2, 8, 8), bool)
    true = np.zeros((2, 2, 8, 8), bool)
    pred[0, 0, :4] = true[0, 0, :4] = True  # image 0: perfect
    true[1, 0, :2] = True  # image 1: missed entirely
    # channel 1 empty in both everywhere: counts as perfect
    out = m.dice_per_structure(pred, true, ["heart", "lung"])
    assert out == {"heart": 0.5, "lung": 1.0}
    with pytest.raises(ValueError, match="names"):
        m.dice_per_structure(pred, true, ["heart"])


def test_roc_png_and_json_report(tmp_path) -> None:
    rng = np.random.default_rng(7)
    Y = rng.integers(0, 2, (300, 14))
    P = rng.normal(Y, 1.0)
    labels = [f"Finding number {i} with a rather long name" for i in range(14)]
    curves = m.per_label_roc_curves(Y, P, labels=labels)
    out = write_roc_png(tmp_path / "sub" / "roc.png", curves, "Validation ROC")
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (700, 900, 3)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # curves in several colours were drawn
    assert not list((tmp_path / "sub").glob("*.tmp"))
    with pytest.raises(ValueError, match="within"):
        render_roc({"x": (np.array([0, 2.0]), np.array([0, 1.0]), 0.5)}, "bad")

    report = {"auroc": np.float32(0.5), "n": np.int64(3), "arr": np.arange(3), "nan": float("nan"), 1: (1, 2)}
    path = write_json_report(tmp_path / "report.json", report)
    assert json.loads(path.read_text()) == {"auroc": 0.5, "n": 3, "arr": [0, 1, 2], "nan": None, "1": [1, 2]}


def test_f1_threshold_is_stricter_than_youden_at_low_prevalence() -> None:
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20), np.zeros(380)]
    s = np.r_[rng.normal(1.5, 1.0, 20), rng.normal(0.0, 1.0, 380)]
    youden = m.choose_threshold(y, s, "youden")
    f1 = m.choose_threshold(y, s, "f1")
    assert f1 > youden
    # brute force: no threshold among the scores has a higher F1
    def f1_at(t: float) -> float:
        pred = s >= t
        tp = (pred & (y == 1)).sum()
        return 2 * tp / (pred.sum() + 20)
    assert f1_at(f1) == pytest.approx(max(f1_at(t) for t in s))

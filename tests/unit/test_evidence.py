"""Evidence behind every AI statement: calibration, validated operating points, intervals (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from cxrview.inference.card import ModelCard
from cxrview.inference.evidence import calibrate, findings_from_probabilities, operating_points
from training import metrics
from training.evidence import (
    choose_operating_points,
    fit_calibration,
    fit_platt,
    ood_block,
    positives_on_normals,
    reliability,
    split_evidence,
    wilson,
)

LABELS = ["Common", "Rare", "Useless"]


def _validation(seed: int = 2, n: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw (over-confident) scores: 'Common' informative with 80 positives, 'Rare' 6, 'Useless' noise."""
    rng = np.random.default_rng(seed)
    Y = np.zeros((n, 3))
    Y[:80, 0] = 1
    Y[80:86, 1] = 1
    Y[100:180, 2] = 1
    rng.shuffle(Y)
    raw = np.empty_like(Y)
    raw[:, 0] = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.5 * Y[:, 0] + 1.0)))  # too high for the prevalence
    raw[:, 1] = 1 / (1 + np.exp(-(rng.normal(0, 1, n) + 2.5 * Y[:, 1])))
    raw[:, 2] = rng.random(n)
    return raw, Y, np.ones_like(Y)


def test_platt_fixes_overconfident_scores_and_is_monotone() -> None:
    raw, Y, M = _validation()
    calibration = fit_calibration(raw, Y, M, LABELS)
    assert calibration["method"] == "platt" and set(calibration["per_label"]) == set(LABELS)
    card = ModelCard(name="m", version="1", task="multilabel-classification", architecture="small-cnn",
                     labels=LABELS, input_size=32, calibration=calibration)
    calibrated = calibrate(card, raw)
    before, after = reliability(raw, Y, M)["ece"], reliability(calibrated, Y, M)["ece"]
    assert after < before / 2, (before, after)
    for j in range(3):  # monotone per label: the ranking, hence the AUROC, is unchanged
        assert metrics.auroc(Y[:, j], calibrated[:, j]) == pytest.approx(metrics.auroc(Y[:, j], raw[:, j]))
    a, b = fit_platt(np.full(50, 0.4), np.zeros(50))  # no positive at all: finite, sensible, a ≈ 1
    assert 0.5 < a < 2 and np.isfinite(b) and 1 / (1 + np.exp(-(a * np.log(0.4 / 0.6) + b))) < 0.1


def test_platt_stays_finite_and_ordered_when_validation_scores_run_the_wrong_way() -> None:
    """A finding whose few validation positives score *lower* than the negatives wants a negative
    scale; undamped Newton then sent the bias to -1e12 (classifier 5.0.0's Edema): every calibrated
    output 0, AUROC 0.5. The fit must stay finite, keep the ranking and be optimal on its bound."""
    rng = np.random.default_rng(1)
    z = rng.normal(-6, 2, 800)
    y = np.zeros(800)
    y[:12] = 1
    z[:12] -= 2
    raw = 1 / (1 + np.exp(-z))
    a, b = fit_platt(raw, y)
    assert a == pytest.approx(0.05) and -10 < b < 0
    calibrated = 1 / (1 + np.exp(-(a * z + b)))
    assert len(np.unique(np.round(calibrated, 12))) > 700  # not a constant
    assert metrics.auroc(y, calibrated) == pytest.approx(metrics.auroc(y, raw))
    t = np.where(y > 0, 13 / 14, 1 / 790)

    def loss(bias: float) -> float:
        u = a * z + bias
        return float(np.sum(t * np.logaddexp(0, -u) + (1 - t) * np.logaddexp(0, u)))

    assert all(loss(b) <= loss(other) + 1e-6 for other in np.linspace(b - 1, b + 1, 41))


def test_operating_points_need_positives_and_an_auroc_above_chance() -> None:
    raw, Y, M = _validation()
    thresholds, evidence = choose_operating_points(raw, Y, M, LABELS, {"specificity_floor": 0.9})
    per = evidence["per_label"]
    assert set(thresholds) == {"Common"} and per["Common"]["validated"]
    assert not per["Rare"]["validated"] and "6 positives" in per["Rare"]["reason"]
    assert not per["Useless"]["validated"] and "reaches below 0.60" in per["Useless"]["reason"]
    common = per["Common"]
    assert common["specificity"] >= 0.9 and common["threshold"] == thresholds["Common"]
    assert common["specificity_ci"][0] < common["specificity"] < common["specificity_ci"][1]
    assert common["auroc_ci"][0] > 0.5 and common["n_pos"] == 80
    # per-finding floor and a lower minimum
    thresholds2, evidence2 = choose_operating_points(raw, Y, M, LABELS, {
        "specificity_floor": 0.9, "floors": {"Common": 0.97}, "min_positives": 5})
    assert "Rare" in thresholds2 and evidence2["per_label"]["Common"]["specificity"] >= 0.97
    assert thresholds2["Common"] > thresholds["Common"]


def test_alarm_budget_raises_the_floor_until_normal_films_are_quiet() -> None:
    raw, Y, M = _validation()
    rule = {"specificity_floor": 0.8, "min_positives": 5}
    loose, ev_loose = choose_operating_points(raw, Y, M, LABELS, rule)
    tight, ev_tight = choose_operating_points(raw, Y, M, LABELS, {**rule, "max_normal_positives": 0.05})
    assert ev_loose["positives_per_normal"] > 0.05 >= ev_tight["positives_per_normal"]
    assert all(tight[k] >= loose[k] for k in tight)
    assert ev_tight["rule"]["common_floor"] > 0.8
    direct = positives_on_normals(raw, Y, M, LABELS, tight)
    assert direct["positives_per_normal"] == pytest.approx(ev_tight["positives_per_normal"])
    assert direct["n_normals"] == int((Y.sum(1) == 0).sum())


def test_wilson_interval() -> None:
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert wilson(0, 0) is None and wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0


def test_not_validated_findings_are_never_positive() -> None:
    raw, Y, M = _validation()
    thresholds, evidence = choose_operating_points(raw, Y, M, LABELS)
    # a stale threshold for a finding without evidence must not make it positive
    card = ModelCard(name="m", version="1", task="multilabel-classification", architecture="small-cnn",
                     labels=LABELS, input_size=32, thresholds={**thresholds, "Rare": 0.0}, evidence=evidence)
    assert operating_points(card) == thresholds
    findings = findings_from_probabilities(card, np.array([0.99, 0.99, 0.99]))
    assert findings["Common"]["positive"] and findings["Common"]["validated"]
    assert not findings["Rare"]["positive"] and findings["Rare"]["threshold"] is None
    assert findings["Rare"]["note"].startswith("not validated: 6 positives")
    assert findings["Common"]["sensitivity_ci"] is not None and findings["Rare"]["sensitivity"] is None


def test_split_evidence_and_ood_block() -> None:
    raw, Y, M = _validation()
    thresholds, _ = choose_operating_points(raw, Y, M, LABELS)
    test_raw, test_Y, test_M = _validation(seed=3)
    report = split_evidence(test_raw, test_Y, test_M, LABELS, thresholds)
    assert report["per_label"]["Common"]["sensitivity"] is not None
    assert "sensitivity" not in report["per_label"]["Rare"] and report["n_normals"] > 0
    rng = np.random.default_rng(0)
    train, val = rng.normal(0, 1, (300, 16)), rng.normal(0, 1, (100, 16))
    block = ood_block(train, val)
    assert len(block["mean"]) == 16 and block["threshold"] > 1.0
    from cxrview.inference.features import ood_scores

    assert (ood_scores(block, rng.normal(0, 1, (50, 16))) < block["threshold"]).mean() > 0.95
    assert (ood_scores(block, rng.normal(4, 1, (50, 16))) > block["threshold"]).all()

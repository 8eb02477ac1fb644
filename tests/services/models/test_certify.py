"""Certified thresholds: constructed cases whose right answers are known, and simulations of the guarantee."""

import numpy as np
import pytest

from services.models.certify import (
    ALPHA,
    GRID,
    certify,
    certify_class,
    clopper_pearson_low,
    cross_fit_calibration,
    fit_temperature,
    least_photos,
    more_photos_estimate,
    photos_needed,
    summary,
    temper,
)
from services.models.evaluation import calibration_error, suggest_thresholds


def test_clopper_pearson_matches_the_closed_form_when_every_photo_is_right():
    # all n right: the one-sided bound is alpha ** (1 / n); 149 perfect photos are the least that reach 98%
    assert clopper_pearson_low(149, 149) == pytest.approx(ALPHA ** (1 / 149))
    assert clopper_pearson_low(149, 149) >= 0.98 > clopper_pearson_low(148, 148)
    assert clopper_pearson_low(0, 10) == 0.0 and clopper_pearson_low(0, 0) == 0.0
    assert clopper_pearson_low(980, 1000) == pytest.approx(0.9714, abs=1e-3)  # 98.0% of 1,000: at least 97.1%


def test_a_perfect_sample_of_30_does_not_certify_98_percent():
    cert = certify_class(np.linspace(0.99, 0.9, 30), np.ones(30, bool), target=0.98)
    assert cert.threshold == 1.0 and cert.photos == 0
    # whereas the point estimate would promise everything
    y, proba = np.array(["a"] * 30), np.c_[np.linspace(0.99, 0.9, 30), 1 - np.linspace(0.99, 0.9, 30)]
    assert suggest_thresholds(y, proba, ["a", "b"], target=0.98)["a"] == 0.9


def test_enough_perfect_photos_certify_all_of_them_and_the_scan_is_a_fixed_sequence():
    conf = np.linspace(0.999, 0.6, 400)
    cert = certify_class(conf, np.ones(400, bool), target=0.98)
    assert cert.threshold == 0.5 and cert.photos == 400  # no photo lies under 0.6: the sequence runs to its end
    assert cert.accuracy_low == pytest.approx(clopper_pearson_low(400, 400))
    assert cert.accuracy_low >= 0.98
    # the sequence starts where a record with one mistake could pass: 236 photos at 98%
    assert least_photos(mistakes=0, target=0.98) == 149 and least_photos(mistakes=1, target=0.98) == 236
    assert least_photos(mistakes=0, target=1.0) is None  # no sample certifies 100%
    assert certify_class(conf, np.ones(400, bool), target=1.0).threshold == 1.0
    start = max(t for t in GRID if (conf >= t).sum() >= 236)
    assert cert.tests == sum(t <= start for t in GRID)
    # 149 perfect photos certify; 148 do not
    assert certify_class(np.linspace(0.999, 0.6, 149), np.ones(149, bool), target=0.98).threshold == 0.5
    assert certify_class(np.linspace(0.999, 0.6, 148), np.ones(148, bool), target=0.98).threshold == 1.0


def test_the_sequence_ends_at_its_first_failure():
    # 300 perfect photos at 0.995, then 300 at 0.9 of which 30 are wrong: 0.99 ... 0.92 pass, 0.9 fails, and
    # the 900 perfect photos under it (0.8) cannot rescue the sequence
    conf = np.r_[np.full(300, 0.995), np.full(300, 0.9), np.full(900, 0.8)]
    right = np.r_[np.ones(300, bool), np.arange(300) >= 30, np.ones(900, bool)]
    cert = certify_class(conf, right, target=0.98)
    assert cert.threshold == 0.92 and cert.photos == 300 and cert.right == 300
    assert clopper_pearson_low(1170, 1500) < 0.98 > clopper_pearson_low(570, 600)


def test_mistakes_at_the_bottom_lift_the_threshold_above_them():
    conf = np.linspace(0.999, 0.5, 1000)
    right = np.ones(1000, bool)
    right[-100:] = np.arange(100) % 2 == 0  # the least confident 100 (under 0.55): half wrong
    cert = certify_class(conf, right, target=0.98)
    assert cert.threshold == 0.55 and cert.photos < 1000
    assert cert.right / cert.photos >= 0.98


def test_a_mistake_among_the_most_confident_does_not_stop_the_search():
    conf = np.linspace(0.999, 0.7, 1000)
    right = np.ones(1000, bool)
    right[0] = False  # the single most confident photo is wrong
    cert = certify_class(conf, right, target=0.98)
    assert cert.threshold <= 0.7 and cert.photos == 1000


def test_thresholds_come_from_the_fixed_grid_and_never_below_half():
    conf = np.array([0.93] * 400 + [0.91] * 20)
    right = np.array([True] * 400 + [False] * 20)
    cert = certify_class(conf, right, target=0.98)
    assert cert.threshold == 0.92 and cert.photos == 400  # 0.9 would take the 20 wrong photos too
    many = certify_class(np.full(5000, 0.45), np.ones(5000, bool), target=0.98)
    assert many.threshold == 1.0 and min(GRID) == 0.5  # under an even chance, never automatic


@pytest.mark.parametrize("true_accuracy", [0.97, 0.975])
def test_a_model_below_the_target_is_certified_at_most_alpha_of_the_time(true_accuracy):
    """The guarantee itself: when the true accuracy is under the target at every confidence, the procedure
    certifies some threshold in at most about 5% of samples (the scan over thresholds included)."""
    rng = np.random.default_rng(11)
    runs, certified = 300, 0
    for _ in range(runs):
        conf = rng.uniform(0.5, 1.0, 1500)
        right = rng.random(1500) < true_accuracy
        certified += certify_class(conf, right, target=0.98).threshold < 1.0
    assert certified / runs <= ALPHA + 0.02  # binomial noise of 300 runs


def test_photos_needed_grows_as_the_accuracy_nears_the_target():
    assert photos_needed(accuracy=0.98, target=0.98) is None
    few, many = photos_needed(accuracy=1.0, target=0.98), photos_needed(accuracy=0.99, target=0.98)
    assert few == 149 and many is not None and few < many
    assert certify_class(np.linspace(0.99, 0.6, few), np.ones(few, bool), target=0.98).threshold < 1.0


def test_temperature_scaling_tames_an_overconfident_model():
    rng = np.random.default_rng(5)
    n = 2000
    y_idx = rng.integers(0, 4, n)
    wrong = rng.random(n) < 0.3  # 70% right, at 0.97 confidence
    pred = np.where(wrong, (y_idx + 1) % 4, y_idx)
    proba = np.full((n, 4), 0.01)
    proba[np.arange(n), pred] = 0.97
    t = fit_temperature(y_idx, proba)
    assert t > 1.5
    assert temper(proba, t).max(1).mean() == pytest.approx(0.7, abs=0.03)
    assert np.allclose(temper(proba, 1.0), proba)
    classes = ["a", "b", "c", "d"]
    y = np.array(classes)[y_idx]
    calibrated, t_all = cross_fit_calibration(y, proba, classes)
    assert t_all == pytest.approx(t)
    assert calibration_error(y, calibrated, classes) < 0.05 < calibration_error(y, proba, classes)


def test_the_certificate_says_how_much_is_certified_and_what_more_photos_would_do():
    classes = ["a", "b"]
    conf = np.linspace(0.99, 0.7, 60)
    y, proba = np.array(["a"] * 60), np.c_[conf, 1 - conf]
    certs = certify(y, proba, classes, target=0.98)
    more = more_photos_estimate(y, proba, classes, target=0.98, certified=certs)
    # 60 photos, all right: 149 like them certify 98%
    assert more == photos_needed(accuracy=1.0, target=0.98) - 60
    out = summary(certs, total=60, target=0.98, more_photos=more)
    assert out["automatic_share"] == 0.0 and out["thresholds"] == {"a": 1.0, "b": 1.0}
    assert out["text"] == f"certified: 0% automatic at 98% (95% confidence, on 60 held-back photos); about {more:,} more labelled photos would certify more"


def test_the_summary_names_the_confidence_it_was_made_at():
    from services.models.certify import summary

    assert "(95% confidence, on 10 held-back photos)" in summary({}, total=10, target=0.98, more_photos=None)["text"]
    other = summary({}, total=10, target=0.98, more_photos=None, alpha=0.1)
    assert "(90% confidence" in other["text"] and other["alpha"] == 0.1

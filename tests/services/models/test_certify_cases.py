"""Certified thresholds on cases worked out without the code under test: binomial tails summed by hand, the
exact photo counts they imply, temperature scaling in closed form, and the fixed sequence traced step by step."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.models.certify import (
    ClassCertificate,
    certify,
    certify_class,
    clopper_pearson_low,
    cross_fit_calibration,
    fit_temperature,
    least_photos,
    photos_needed,
    summary,
    temper,
)


def tail(p: float, right: int, n: int) -> float:
    """P(at least ``right`` of ``n`` right) at accuracy ``p``: the sum of binomial terms."""
    return sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(right, n + 1))


def lower_bound(right: int, n: int, alpha: float = 0.05) -> float:
    """The accuracy p at which seeing ``right`` or more of ``n`` has probability ``alpha``, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if tail(mid, right, n) < alpha else (lo, mid)
    return (lo + hi) / 2


def fewest(mistakes: int, target: float) -> int:
    n = mistakes + 1
    while lower_bound(n - mistakes, n) < target:
        n += 1
    return n


@pytest.mark.parametrize(("right", "n"), [(9, 10), (18, 20), (95, 100), (1, 3), (50, 50)])
def test_the_lower_bound_is_the_binomial_tail_at_alpha(right, n):
    assert clopper_pearson_low(right, n) == pytest.approx(lower_bound(right, n), abs=1e-9)
    assert clopper_pearson_low(right, n, alpha=0.2) == pytest.approx(lower_bound(right, n, alpha=0.2), abs=1e-9)
    assert clopper_pearson_low(0, n) == 0.0 and clopper_pearson_low(0, 0) == 0.0 and clopper_pearson_low(3, 0) == 0.0


def test_the_photo_counts_a_target_needs():
    assert least_photos(mistakes=0, target=0.98) == fewest(0, 0.98) == 149  # 0.05 ** (1 / 149) >= 0.98
    assert least_photos(mistakes=1, target=0.98) == fewest(1, 0.98)
    assert least_photos(mistakes=2, target=0.9) == fewest(2, 0.9)
    assert least_photos(mistakes=0, target=1.0) is None
    assert photos_needed(accuracy=1.0, target=0.98) == 149
    assert photos_needed(accuracy=0.98, target=0.98) is None and photos_needed(accuracy=0.9, target=0.98) is None
    # at 99% observed: the fewest n whose floor(0.99 n) right of n clear 98%, found by walking n up one at a time
    n = 1
    while lower_bound(math.floor(0.99 * n), n) < 0.98:
        n += 1 if n < 500 else 25
    need = photos_needed(accuracy=0.99, target=0.98)
    assert need is not None and clopper_pearson_low(math.floor(0.99 * need), need) >= 0.98
    assert clopper_pearson_low(math.floor(0.99 * (need - 1)), need - 1) < 0.98 or need - 1 < 149


def test_temperature_in_closed_form():
    p = np.array([[0.8, 0.2], [0.5, 0.5], [0.9, 0.1]])
    assert temper(p, 1.0) is p and temper(np.zeros((0, 2)), 3.0).shape == (0, 2)
    hot = temper(p, 2.0)  # p ** (1/2), normalised: 0.8 and 0.2 become 2/3 and 1/3
    assert np.allclose(hot[0], [2 / 3, 1 / 3]) and np.allclose(hot[1], [0.5, 0.5])
    assert np.allclose(hot[2], [3 / 4, 1 / 4])  # sqrt(0.9) : sqrt(0.1) = 3 : 1
    cold = temper(p, 0.5)  # squared: 0.64 : 0.04
    assert np.allclose(cold[0], [16 / 17, 1 / 17])
    assert np.allclose(temper(np.array([[1.0, 0.0]]), 2.0), [[1.0, 0.0]], atol=1e-5)  # zeros do not break it


def test_a_fitted_temperature_cools_overconfidence_and_warms_underconfidence():
    y = np.array([0] * 75 + [1] * 25)
    over = np.tile([[0.99, 0.01]], (100, 1))  # says 99%, right 75%
    t = fit_temperature(y, over)
    assert t > 1 and temper(over, t)[0, 0] == pytest.approx(0.75, abs=0.01)  # calibrated to what happens
    under = np.tile([[0.6, 0.4]], (100, 1))
    y = np.array([0] * 95 + [1] * 5)
    t = fit_temperature(y, under)
    assert t < 1 and temper(under, t)[0, 0] == pytest.approx(0.95, abs=0.01)
    assert fit_temperature(np.array([0]), over[:1]) == 1.0  # one photo: nothing to fit
    assert 0.05 <= fit_temperature(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) <= 20.0  # bounded


def test_cross_fitting_never_calibrates_a_photo_with_its_own_label():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.6, 1.0, 40)
    proba = np.c_[conf, 1 - conf]
    y = np.where(rng.random(40) < 0.8, "a", "b")
    out, t_all = cross_fit_calibration(y, proba, ["a", "b"], folds=5)
    assert t_all == pytest.approx(fit_temperature(np.array([["a", "b"].index(v) for v in y]), proba))
    assert not np.allclose(out, proba) and np.allclose(out.sum(axis=1), 1.0)
    few, t = cross_fit_calibration(y[:3], proba[:3], ["a", "b"])
    assert few is proba[:3] or np.array_equal(few, proba[:3]) and t == 1.0


def test_the_fixed_sequence_traced_step_by_step():
    # 149 right at 0.999: the sequence starts at 0.999 (enough photos for a perfect record) and every one of the 19
    # grid thresholds down to 0.5 holds the same 149 photos: all pass, the last (0.5) routes
    c = certify_class(np.full(149, 0.999), np.ones(149, bool), target=0.98)
    assert c == ClassCertificate(0.5, 149, 149, pytest.approx(0.05 ** (1 / 149)), 19)
    # 148 are too few for any record to pass: no test is run, nothing automatic
    assert certify_class(np.full(148, 0.999), np.ones(148, bool), target=0.98) == ClassCertificate(1.0, 0, 0, 0.0, 0)
    # 300 right at 0.999, then 300 at 0.97 of which 30 wrong: from 0.999 down the record holds until the grid
    # reaches 0.97, where 570 of 600 (lower bound under 98%) fails and ends the sequence
    conf = np.r_[np.full(300, 0.999), np.full(300, 0.97)]
    right = np.r_[np.ones(300, bool), np.arange(300) >= 30]
    c = certify_class(conf, right, target=0.98)
    passed = [0.999, 0.995, 0.99, 0.985, 0.98]
    assert (c.threshold, c.photos, c.right, c.tests) == (0.98, 300, 300, len(passed) + 1)
    assert c.accuracy_low == pytest.approx(0.05 ** (1 / 300))
    # a start set from the confidences: 160 photos at 0.999 and a mistake among them: the one-mistake count is
    # not reached at 0.999, so the sequence starts where the perfect-record count is; the mistake fails it at once
    conf = np.full(160, 0.999)
    right = np.arange(160) > 0
    assert certify_class(conf, right, target=0.98) == ClassCertificate(1.0, 0, 0, 0.0, 1)


def test_certify_per_class_and_the_summary_sentence():
    proba = np.r_[np.tile([[0.9995, 0.0005]], (200, 1)), np.tile([[0.3, 0.7]], (10, 1))]
    y = np.array(["a"] * 200 + ["b"] * 10)
    certs = certify(y, proba, ["a", "b"], target=0.98)
    assert certs["a"].threshold == 0.5 and certs["a"].photos == 200 and certs["b"].threshold == 1.0
    empty = certify(np.array([], dtype=str), np.zeros((0, 2)), ["a", "b"], target=0.98)
    assert all(c == ClassCertificate(1.0, 0, 0, 0.0, 0) for c in empty.values())
    s = summary(certs, total=210, target=0.98, more_photos=1234)
    assert s["text"] == ("certified: 95% automatic at 98% (95% confidence, on 210 held-back photos); about 1,234 more "
                         "labelled photos would certify more")
    assert (s["automatic_share"], s["automatic_photos"], s["automatic_accuracy"]) == (200 / 210, 200, 1.0)
    assert s["thresholds"] == {"a": 0.5, "b": 1.0} and s["per_class"]["a"]["photos"] == 200
    none = summary(empty, total=0, target=0.9, more_photos=None)
    assert none["automatic_share"] == 0.0 and none["automatic_accuracy"] is None
    assert none["text"] == ("certified: 0% automatic at 90% (95% confidence, on 0 held-back photos); label more "
                            "photos of every class: none is yet right often enough to certify")
    assert summary(empty, total=5, target=0.9, more_photos=0)["text"].endswith("on 5 held-back photos)")


def test_alpha_is_passed_all_the_way_down():
    # at 80% confidence (alpha 0.2) 0.2 ** (1/n) >= 0.98 from n = 80 on: 80 perfect photos certify, 79 do not
    assert photos_needed(accuracy=1.0, target=0.98, alpha=0.2) == 80 == least_photos(mistakes=0, target=0.98, alpha=0.2)
    proba = np.tile([[0.999, 0.001]], (80, 1))
    y = np.array(["a"] * 80)
    assert certify(y, proba, ["a", "b"], target=0.98, alpha=0.2)["a"].threshold == 0.5
    assert certify(y, proba, ["a", "b"], target=0.98)["a"].threshold == 1.0  # not at the default 95%
    assert certify(y[:79], proba[:79], ["a", "b"], target=0.98, alpha=0.2)["a"].threshold == 1.0


def test_how_many_more_photos_would_certify():
    from services.models.certify import more_photos_estimate

    # 'a': 100 photos at 0.999, all right (149 needed); 'b': 100 at 0.6, all wrong. Every grid threshold holds the
    # same 100 'a' photos at 100%: 149 of them are needed, and they are half of all photos, so 298 in all: 98 more
    proba = np.r_[np.tile([[0.999, 0.001]], (100, 1)), np.tile([[0.4, 0.6]], (100, 1))]
    y = np.array(["a"] * 100 + ["a"] * 100)
    certs = certify(y, proba, ["a", "b"], target=0.98)
    assert more_photos_estimate(y, proba, ["a", "b"], target=0.98, certified=certs) == 98
    # at alpha 0.2, 80 'a' photos would do: 160 in all, fewer than the 200 there are (certify them at 0.2 and see)
    assert more_photos_estimate(y, proba, ["a", "b"], target=0.98, certified=certs, alpha=0.2) == 0
    assert more_photos_estimate(y[100:], proba[100:], ["a", "b"], target=0.98,
                                certified=certify(y[100:], proba[100:], ["a", "b"], target=0.98)) is None


def test_calibration_edges():
    assert temper(np.array([[0.8, 0.2]]), 2.0) == pytest.approx(np.array([[2 / 3, 1 / 3]]))  # one row is tempered
    assert fit_temperature(np.array([0, 1]), np.array([[0.9, 0.1], [0.1, 0.9]])) < 0.1  # two photos are fitted
    coin = np.tile([[0.999, 0.001]], (100, 1))  # 99.9% sure, right half the time: as hot as allowed
    assert fit_temperature(np.array([0, 1] * 50), coin) == pytest.approx(20.0, rel=1e-3)
    y = np.array(["a", "b", "a", "a"])
    four = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.95, 0.05]])
    out, t = cross_fit_calibration(y, four, ["a", "b"])  # four photos are calibrated (three are not)
    assert t == pytest.approx(fit_temperature(np.array([0, 1, 0, 0]), four)) and t != 1.0


def test_a_photos_own_label_never_sets_its_calibration():
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.55, 1.0, 30)
    proba = np.c_[conf, 1 - conf]
    y = np.where(rng.random(30) < 0.85, "a", "b")
    y[:2] = "b"
    y[2:] = "a"  # two 'b': fewer than the folds, so plain k-fold (folds depend on the count alone)
    base, _ = cross_fit_calibration(y, proba, ["a", "b"], folds=5)
    assert np.array_equal(base, cross_fit_calibration(y, proba, ["a", "b"], folds=5, seed=0)[0])  # seed 0 by default
    flipped = y.copy()
    flipped[10] = "b"  # photo 10's label changes: its own calibrated probability does not
    again, _ = cross_fit_calibration(flipped, proba, ["a", "b"], folds=5)
    assert np.allclose(again[10], base[10]) and not np.allclose(again, base)


def test_small_cases_and_the_summary_fields():
    assert clopper_pearson_low(1, 1) == pytest.approx(0.05)  # one photo, right: 95% sure only of 5%
    s = summary({"a": ClassCertificate(0.9, 10, 9, 0.6, 3)}, total=20, target=0.9, more_photos=7)
    assert (s["alpha"], s["more_photos"], s["automatic_accuracy"]) == (0.05, 7, 0.9)


def test_more_photos_counts_only_the_photos_above_each_threshold():
    from services.models.certify import more_photos_estimate

    # 'a' predicted 200 times: 100 right at 0.999 and 100 wrong at 0.55. Above 0.6 the record is perfect, so
    # 149 photos there would certify: they are half of all photos, 298 in all, 98 more than the 200
    proba = np.r_[np.tile([[0.999, 0.001]], (100, 1)), np.tile([[0.55, 0.45]], (100, 1))]
    y = np.array(["a"] * 100 + ["b"] * 100)
    certs = certify(y, proba, ["a", "b"], target=0.98)
    assert certs["a"].threshold == 1.0
    assert more_photos_estimate(y, proba, ["a", "b"], target=0.98, certified=certs) == 98

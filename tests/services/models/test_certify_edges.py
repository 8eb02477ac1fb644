"""Certification edges the other tests leave open: the smallest counts a target needs (closed form), tempering
rows of zeros and tiny temperatures, the folds cross-fitting uses, and which thresholds the estimate of more
photos looks at."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold

from services.models.certify import (
    GRID,
    certify,
    certify_class,
    clopper_pearson_low,
    cross_fit_calibration,
    fit_temperature,
    least_photos,
    more_photos_estimate,
    photos_needed,
    temper,
)


@pytest.fixture(autouse=True)
def _uncached_counts():
    """The photo counts are cached per (mistakes, target, alpha): each test computes its own."""
    least_photos.cache_clear()
    yield
    least_photos.cache_clear()


@pytest.mark.parametrize("target", [0.04, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99])
@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_the_least_perfect_record_in_closed_form(target, alpha):
    # n right of n: the one-sided bound is alpha ** (1 / n), so the least n is the first with n >= ln alpha / ln target
    n = math.ceil(math.log(alpha) / math.log(target))
    if alpha ** (1 / n) < target:  # the ceiling landed on a rounding edge
        n += 1
    assert photos_needed(accuracy=1.0, target=target, alpha=alpha) == n
    assert least_photos(mistakes=0, target=target, alpha=alpha) == n
    assert isinstance(photos_needed(accuracy=1.0, target=target, alpha=alpha), int)


def test_one_photo_can_be_enough_for_a_low_target():
    # one right photo: the bound is alpha itself (0.05), so a target of 4% needs one photo, and 6% needs two
    assert photos_needed(accuracy=1.0, target=0.04) == 1 == least_photos(mistakes=0, target=0.04)
    assert photos_needed(accuracy=1.0, target=0.06) == 2 == least_photos(mistakes=0, target=0.06)
    # with one mistake the count starts at two: 1 of 2 right has the bound 1 - sqrt(0.95) = 0.0253
    assert least_photos(mistakes=1, target=0.02) == 2
    assert least_photos(mistakes=1, target=0.03) == 3


def test_a_row_of_zeros_stays_even_at_any_temperature():
    # every zero counts as 1e-12: a row of zeros is an even split, however hot or cold, and another row's scale
    # does not leak into it
    assert np.allclose(temper(np.array([[0.0, 0.0]]), 2.0), [[0.5, 0.5]])
    assert np.allclose(temper(np.array([[0.9, 0.1], [0.0, 0.0]]), 0.02), [[1.0, 0.0], [0.5, 0.5]])
    # a zero beside a one, warmed by 2: sqrt(1e-12) = 1e-6 against 1
    assert temper(np.array([[1.0, 0.0]]), 2.0)[0, 1] == pytest.approx(1e-6 / (1 + 1e-6), rel=1e-6)


def test_a_probability_over_one_counts_as_one():
    # rounding can leave 1.0000001; a value over one is read as one: [1.5, 0.5] warmed by 2 is 1 : sqrt(0.5)
    got = temper(np.array([[1.5, 0.5]]), 2.0)
    assert np.allclose(got, [[1 / (1 + math.sqrt(0.5)), math.sqrt(0.5) / (1 + math.sqrt(0.5))]])


def _reference_cross_fit(y, proba, classes, *, folds, seed, stratified):
    y_idx = np.array([classes.index(v) for v in y])
    k = min(folds, len(y))
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed) if stratified else KFold(k, shuffle=True,
                                                                                            random_state=seed)
    out = np.array(proba, dtype=float)
    for fit, apply in splitter.split(proba, y_idx):
        out[apply] = temper(proba[apply], fit_temperature(y_idx[fit], proba[fit]))
    return out


def _photos(n_a: int, n_b: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    n = n_a + n_b
    conf = rng.uniform(0.55, 0.99, n)
    proba = np.c_[conf, 1 - conf]
    y = np.array(["a"] * n_a + ["b"] * n_b)
    return y, proba


@pytest.mark.filterwarnings("ignore:The least populated class")
@pytest.mark.parametrize(("n_b", "folds", "stratified"), [
    (7, 5, True),  # every class has at least 5 photos: stratified folds
    (5, 5, True),  # exactly 5 of 'b': still stratified
    (4, 5, False),  # fewer 'b' than folds: plain folds
    (1, 5, False),  # a class of one photo: plain folds
    (6, 3, True),  # three folds asked for, three used
])
def test_cross_fitting_uses_seeded_folds_stratified_when_every_class_fills_them(n_b, folds, stratified):
    y, proba = _photos(30, n_b)
    classes = ["a", "b", "c"]  # 'c' never occurs: an absent class does not stop stratification
    out, _t = cross_fit_calibration(y, proba, classes, folds=folds)
    assert np.allclose(out, _reference_cross_fit(y, proba, classes, folds=folds, seed=0, stratified=stratified))
    other = _reference_cross_fit(y, proba, classes, folds=folds, seed=0, stratified=not stratified)
    assert not np.allclose(out, other)  # the two kinds of folds do differ here
    again, _t = cross_fit_calibration(y, proba, classes, folds=folds)
    assert np.array_equal(out, again)  # reproducible: the folds are seeded
    seeded, _t = cross_fit_calibration(y, proba, classes, folds=folds, seed=7)
    assert np.allclose(seeded, _reference_cross_fit(y, proba, classes, folds=folds, seed=7, stratified=stratified))


def test_cross_fitting_defaults_to_five_folds_and_returns_floats():
    y, proba = _photos(40, 12)
    out, _t = cross_fit_calibration(y, proba, ["a", "b"])
    assert np.allclose(out, _reference_cross_fit(y, proba, ["a", "b"], folds=5, seed=0, stratified=True))
    assert not np.allclose(out, _reference_cross_fit(y, proba, ["a", "b"], folds=6, seed=0, stratified=True))
    # single-precision input comes back in double precision, tempered per fold
    out32, _t = cross_fit_calibration(y, proba.astype(np.float32), ["a", "b"])
    assert out32.dtype == np.float64


def test_more_photos_counts_photos_exactly_at_a_grid_threshold():
    # 'a': 50 right at 0.95, 50 right at exactly 0.9, 50 wrong at 0.88 (never certified: 100 perfect photos are
    # too few). At 0.9 the record is perfect on 100 photos (the 50 at 0.9 count): 149 needed, 100 of 150 photos
    # land there, so 224 in all, 74 more. Leaving out the photos at 0.9 would halve what lands there.
    conf = np.r_[np.full(50, 0.95), np.full(50, 0.9), np.full(50, 0.88)]
    proba = np.c_[conf, 1 - conf]
    y = np.array(["a"] * 100 + ["b"] * 50)
    certs = certify(y, proba, ["a", "b"], target=0.98)
    assert certs["a"].threshold == 1.0
    assert 0.9 in GRID and more_photos_estimate(y, proba, ["a", "b"], target=0.98, certified=certs) == 74


def test_more_photos_looks_only_under_the_certified_threshold():
    # 'a': 149 right at 0.999, 100 right at exactly 0.9, 30 wrong at 0.88: certified at 0.9 (the sequence starts
    # at 0.9, where 249 photos lie, and fails at 0.85). Under 0.9 the accuracy (249 of 279) is far under the
    # target; at 0.9 and above is what is already certified: no estimate
    conf = np.r_[np.full(149, 0.999), np.full(100, 0.9), np.full(30, 0.88)]
    proba = np.c_[conf, 1 - conf]
    y = np.array(["a"] * 249 + ["b"] * 30)
    certs = certify(y, proba, ["a", "b"], target=0.98)
    assert certs["a"].threshold == 0.9 and certs["a"].photos == 249
    assert more_photos_estimate(y, proba, ["a", "b"], target=0.98, certified=certs) is None


def test_a_bound_exactly_at_the_target_certifies():
    # the target set to the bound of 149 of 149 itself: 149 photos reach it (>=), 148 do not
    exact = clopper_pearson_low(149, 149)
    assert photos_needed(accuracy=1.0, target=exact) == 149 == least_photos(mistakes=0, target=exact)
    cert = certify_class(np.full(149, 0.999), np.ones(149, bool), target=exact)
    assert cert.threshold == 0.5 and cert.accuracy_low == exact


def test_a_count_of_exactly_the_search_limit_is_still_found():
    # 390,625 x 2 ** 8 is the limit of 100,000,000 photos: the doubling lands on it exactly, and the count found
    # lies under it, so it is returned rather than given up on
    n = least_photos(mistakes=390_624, target=0.99605)
    assert n is not None and 50_000_000 < n <= 100_000_000
    assert clopper_pearson_low(n - 390_624, n) >= 0.99605 > clopper_pearson_low(n - 1 - 390_624, n - 1)


def test_the_start_of_the_sequence_uses_the_level_asked_for():
    # at alpha 0.2, 149 photos with room for one mistake (at 0.05 it would be 236): 200 perfect photos at 0.999
    # start the sequence at 0.999, so all 19 grid thresholds are tested; 40 more at 0.95 change nothing
    assert least_photos(mistakes=1, target=0.98, alpha=0.2) == 149 < 236 == least_photos(mistakes=1, target=0.98)
    conf = np.r_[np.full(200, 0.999), np.full(40, 0.95)]
    cert = certify_class(conf, np.ones(240, bool), target=0.98, alpha=0.2)
    assert (cert.threshold, cert.photos, cert.tests) == (0.5, 240, len(GRID))


def test_a_fit_that_does_not_converge_leaves_the_temperature_at_one():
    # a NaN among the predictions: the optimiser reports failure, and no temperature is applied
    proba = np.array([[np.nan, np.nan], [0.9, 0.1], [0.2, 0.8]])
    assert fit_temperature(np.array([0, 0, 1]), proba) == 1.0

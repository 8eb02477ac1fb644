"""Dawid-Skene steps worked out by hand: one M-step on gold photos (the pooled one-coin prior included), the E-step
with uneven priors and far-underflowing products, the starting accuracies of a single shared photo, and the
clips that keep every logarithm finite."""

from __future__ import annotations

import numpy as np
import pytest

from services.hitl.dawid_skene import _agreement_accuracy, _e_step, _encode, _group_answers, dawid_skene


def _one_m_step(smoothing: float, pooling: float | None = None):
    # gold photos of true class 0, 0, 1, 2 answered 0, 1, 1, 2 by one worker: one EM round is one M-step on the
    # one-hot gold posteriors
    answers = [("g0", "w", 0), ("g1", "w", 1), ("g2", "w", 1), ("g3", "w", 2)]
    gold = {"g0": 0, "g1": 0, "g2": 1, "g3": 2}
    kw = {} if pooling is None else {"pooling": pooling}
    return dawid_skene(answers, n_classes=4, gold=gold, max_iter=1, smoothing=smoothing, **kw)


def test_one_m_step_by_hand_at_the_defaults():
    ds = _one_m_step(1.0)
    # 3 of 4 right: accuracy (3 + 1) / (4 + 2) = 2/3, off the diagonal (1/3) / 3 = 1/9; 40 pseudo-answers a row
    acc, off, p = 2 / 3, 1 / 9, 40
    expected = np.array([
        [1 + p * acc, 1 + p * off, p * off, p * off],  # true 0: answered 0 once and 1 once
        [p * off, 1 + p * acc, p * off, p * off],  # true 1: answered 1 once
        [p * off, p * off, 1 + p * acc, p * off],  # true 2: answered 2 once
        [p * off, p * off, p * off, p * acc],  # true 3: never seen, the one-coin prior alone
    ])
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(ds.confusions["w"], expected, atol=1e-12)
    assert np.allclose(ds.priors, np.array([2 + 1, 1 + 1, 1 + 1, 0 + 1]) / (4 + 4))
    assert ds.iterations == 1


def test_one_m_step_by_hand_with_other_smoothing_and_pooling():
    ds = _one_m_step(2.0, pooling=3.0)
    acc = (3 + 2) / (4 + 2 * 2)  # 5/8
    off = (1 - acc) / 3
    expected = np.array([
        [1 + 3 * acc, 1 + 3 * off, 3 * off, 3 * off],
        [3 * off, 1 + 3 * acc, 3 * off, 3 * off],
        [3 * off, 3 * off, 1 + 3 * acc, 3 * off],
        [3 * off, 3 * off, 3 * off, 3 * acc],
    ])
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(ds.confusions["w"], expected, atol=1e-12)
    assert np.allclose(ds.priors, np.array([2 + 2, 1 + 2, 1 + 2, 0 + 2]) / (4 + 4 * 2))


def test_one_m_step_by_hand_with_two_classes():
    # true 0, 0, 1 answered 0, 1, 1: accuracy (2 + 1) / (3 + 2) = 3/5, the other class gets all of the rest
    ds = dawid_skene([("a", "w", 0), ("b", "w", 1), ("c", "w", 1)], n_classes=2, gold={"a": 0, "b": 0, "c": 1},
                     max_iter=1, pooling=5.0)
    acc, off = 3 / 5, 2 / 5
    expected = np.array([[1 + 5 * acc, 1 + 5 * off], [5 * off, 1 + 5 * acc]])
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(ds.confusions["w"], expected, atol=1e-12)


def test_no_confusion_entry_is_ever_exactly_zero():
    # without smoothing, a worker right on every gold photo has accuracy 1 and one wrong on every one has 0; the
    # one-coin prior is clipped to [1e-6, 1 - 1e-6], so no answer becomes impossible (no log of zero)
    right = [(f"r{i}", "good", i % 4) for i in range(8)]
    wrong = [(f"r{i}", "bad", (i + 1) % 4) for i in range(8)]
    ds = dawid_skene(right + wrong, n_classes=4, gold={f"r{i}": i % 4 for i in range(8)}, max_iter=1, smoothing=0.0,
                     pooling=1.0)
    good, bad = ds.confusions["good"], ds.confusions["bad"]
    assert np.all(good > 0) and np.all(bad > 0)
    # 'good': row k holds 2 right answers plus the prior (1 - 1e-6 on the diagonal, 1e-6 / 3 off it)
    assert good[0, 1] == pytest.approx((1e-6 / 3) / 3, rel=1e-6) and good[0, 0] == pytest.approx((2 + 1 - 1e-6) / 3)
    assert bad[0, 0] == pytest.approx(1e-6 / 3, rel=1e-6)


def test_the_e_step_by_hand_with_uneven_priors():
    # K = 3, priors (0.5, 0.3, 0.2); p(item = k) is proportional to prior_k x the product of pi_w[k, answered]
    pi_u = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])  # rows true, columns answered
    pi_v = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])
    priors = np.array([0.5, 0.3, 0.2])
    answers = [("x", "u", 1), ("y", "u", 1), ("y", "v", 0)]
    enc = _encode(answers, gold={"g": 2}, n_classes=3)
    post = _e_step(enc, grouped=_group_answers(enc, n_classes=3), confusions=np.stack([pi_u, pi_v]), priors=priors)
    x = priors * pi_u[:, 1]  # 0.1, 0.24, 0.06
    y = priors * pi_u[:, 1] * pi_v[:, 0]  # 0.06, 0.048, 0.006
    assert np.allclose(post[0], x / x.sum()) and np.allclose(post[0], [0.25, 0.6, 0.15])
    assert np.allclose(post[1], y / y.sum())
    assert np.array_equal(post[2], [0.0, 0.0, 1.0])  # gold stays one-hot


def test_the_e_step_survives_products_far_under_the_smallest_float():
    # 300 answers at 0.01 each: a product of 1e-600, computed in logs and shifted per item by its own largest
    answers = [("big", f"w{j}", 2) for j in range(300)] + [("small", "w0", 0)]
    enc = _encode(answers, gold={}, n_classes=3)
    flat = np.full((3, 3), 0.01)  # every answer is equally unlikely under every true class (rows need not sum to 1)
    confusions = np.stack([flat] * 300)
    post = _e_step(enc, grouped=_group_answers(enc, n_classes=3), confusions=confusions, priors=np.full(3, 1 / 3))
    assert np.all(np.isfinite(post)) and np.allclose(post[0], 1 / 3)  # equally unlikely everywhere: even
    assert np.allclose(post[1], 1 / 3)


def test_the_starting_accuracy_from_a_single_shared_photo():
    # two workers share one photo. Agreeing: d = (1 - 1/4) x 3/4 = 0.5625 and x = d / x_other grows to the cap
    # 1 - 1/4 - 0.001; disagreeing: d = -0.1875, x falls to its floor of 0.01 (accuracy 0.26, never under chance)
    empty = np.zeros(0, dtype=np.int64)
    agree = _agreement_accuracy(np.array([0, 0]), np.array([0, 1]), np.array([2, 2]), empty, empty,
                                n_workers=2, n_classes=4)
    assert agree == pytest.approx([1 - 0.001, 1 - 0.001], abs=1e-12)
    disagree = _agreement_accuracy(np.array([0, 0]), np.array([0, 1]), np.array([2, 3]), empty, empty,
                                   n_workers=2, n_classes=4)
    assert disagree == pytest.approx([0.25 + 0.01, 0.25 + 0.01], abs=1e-12)


def test_malformed_answers_are_refused_and_whole_float_classes_are_indices():
    with pytest.raises(ValueError):
        dawid_skene([("a", "w", 0), ("b", "w", 1, "extra")], n_classes=4)
    ints = [(i, w, (i + j) % 4 if j == 2 and i % 3 == 0 else i % 4) for i in range(30) for j, w in enumerate("uvw")]
    floats = [(i, w, float(c)) for i, w, c in ints]
    a, b = dawid_skene(ints, n_classes=4), dawid_skene(floats, n_classes=4)
    assert all(np.allclose(a.confusions[w], b.confusions[w]) for w in "uvw")
    assert all(np.allclose(a.posteriors[i], b.posteriors[i]) for i in range(30))

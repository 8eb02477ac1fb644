"""Dawid-Skene and the weighted vote (pure numpy): recovery, the reliable minority, gold weighting."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.config import CLASSES
from services.core.errors import InvalidInput
from services.hitl.dawid_skene import dawid_skene, gold_confusion, item_posterior

K = len(CLASSES)

def _noisy(rng, truth: np.ndarray, accuracy: float) -> np.ndarray:
    """Answers right with ``accuracy``, else a uniformly chosen wrong class."""
    wrong = (truth + rng.integers(1, K, size=truth.size)) % K
    return np.where(rng.random(truth.size) < accuracy, truth, wrong)


def _synthetic(seed: int = 0, n: int = 200):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, size=n)
    said = {"rel": _noisy(rng, truth, 0.95), "u1": _noisy(rng, truth, 0.4), "u2": _noisy(rng, truth, 0.4)}
    answers = [(i, w, int(said[w][i])) for i in range(n) for w in said]
    return truth, said, answers


def test_dawid_skene_recovers_confusions_and_truth():
    truth, said, answers = _synthetic()
    ds = dawid_skene(answers, n_classes=K)
    assert abs(np.diag(ds.confusions["rel"]).mean() - 0.95) < 0.08
    for w in ("u1", "u2"):
        assert abs(np.diag(ds.confusions[w]).mean() - 0.4) < 0.1
    for m in ds.confusions.values():
        assert np.allclose(m.sum(axis=1), 1.0)
    assert np.isclose(ds.priors.sum(), 1.0) and 1 <= ds.iterations <= 100
    est = np.array([np.argmax(ds.posteriors[i]) for i in range(len(truth))])
    majority_right = np.mean([np.bincount([said[w][i] for w in said], minlength=K).argmax() == truth[i]
                              for i in range(len(truth))])
    assert np.mean(est == truth) >= 0.93 > majority_right  # weighting beats the plain vote
    for seed in range(1, 10):  # and does on other draws too (200 items leave the estimate noisy, never worse)
        truth, said, answers = _synthetic(seed)
        ds = dawid_skene(answers, n_classes=K)
        weighted = np.mean([np.argmax(ds.posteriors[i]) == truth[i] for i in range(len(truth))])
        majority = np.mean([np.bincount([said[w][i] for w in said], minlength=K).argmax() == truth[i]
                            for i in range(len(truth))])
        assert weighted > majority + 0.05, seed
        assert np.diag(ds.confusions["rel"]).mean() > max(np.diag(ds.confusions[w]).mean() for w in ("u1", "u2")) + 0.2


def test_reliable_minority_beats_unreliable_majority():
    truth, said, answers = _synthetic()
    ds = dawid_skene(answers, n_classes=K)
    split = [i for i in range(len(truth))
             if said["rel"][i] == truth[i] and said["u1"][i] == said["u2"][i] != truth[i]]
    assert split, "the synthetic data must contain the two-against-one case"
    for i in split:
        assert np.argmax(ds.posteriors[i]) == truth[i]
    # the same through item_posterior with the learned confusions
    p = item_posterior([("rel", 0), ("u1", 2), ("u2", 2)], confusions=ds.confusions, priors=np.full(K, 1 / K),
                       default=gold_confusion(correct=0, total=0, n_classes=K))
    assert np.argmax(p) == 0 and p[0] > 0.6


def test_gold_weighting_alone_lets_the_reliable_minority_win():
    conf = {"rel": gold_confusion(correct=5, total=5, n_classes=K), "u1": gold_confusion(correct=1, total=5, n_classes=K),
            "u2": gold_confusion(correct=1, total=5, n_classes=K)}
    assert np.allclose(conf["rel"].sum(axis=1), 1) and np.isclose(conf["rel"][0, 0], 6 / 7)
    p = item_posterior([("rel", 1), ("u1", 3), ("u2", 3)], confusions=conf, priors=np.full(K, 1 / K),
                       default=gold_confusion(correct=0, total=0, n_classes=K))
    assert np.argmax(p) == 1 and p[1] > 0.8
    # equally trusted unknown inspectors: the majority wins
    p = item_posterior([("a", 1), ("b", 3), ("c", 3)], confusions={}, priors=np.full(K, 1 / K),
                       default=gold_confusion(correct=8, total=10, n_classes=K))
    assert np.argmax(p) == 3


def test_gold_items_stay_fixed_and_anchor_the_estimate():
    answers = [(i, "w", (i + 1) % K) for i in range(400)]  # w always answers "the next class"
    ds = dawid_skene(answers, n_classes=K, gold={i: i % K for i in range(400)})
    assert all(np.argmax(ds.posteriors[i]) == i % K and ds.posteriors[i].max() == 1.0 for i in range(400))
    # a systematic confusion is learnt once rows hold enough answers to outweigh the pooling prior
    assert min(ds.confusions["w"][k, (k + 1) % K] for k in range(K)) > 0.75
    assert max(np.diag(ds.confusions["w"])) < 0.1


def test_dawid_skene_scales_to_100k_answers_from_30_inspectors():
    rng = np.random.default_rng(1)
    n, workers = 20_000, [f"w{j}" for j in range(30)]
    truth = rng.integers(0, K, size=n)
    answers = []
    for _ in range(5):
        who = rng.integers(0, len(workers), size=n)
        said = _noisy(rng, truth, 0.8)
        answers += [(i, workers[w], int(c)) for i, w, c in zip(range(n), who, said)]
    ds = dawid_skene(answers, n_classes=K)  # vectorised: this size runs in well under a second (no timing asserted)
    assert len(ds.confusions) == 30 and len(ds.posteriors) == n
    assert np.mean([np.argmax(ds.posteriors[i]) == truth[i] for i in range(n)]) > 0.9


def test_bad_class_index_is_refused():
    with pytest.raises(InvalidInput):
        dawid_skene([(1, "a", 7)], n_classes=K)


# ---- asymmetric confusions: the direction of the matrix (rows true class, columns answered) matters

FULL, HALF = CLASSES.index("full_length"), CLASSES.index("half_length")
# rows: the true class; columns: what the inspector answered. Full-length shots are usually called half length
# (0.70), but half-length shots are rarely called full length (0.10): the matrix is far from its transpose.
ASYMMETRIC = np.full((K, K), 0.05)
np.fill_diagonal(ASYMMETRIC, 0.85)
ASYMMETRIC[FULL] = 0.05
ASYMMETRIC[FULL, FULL], ASYMMETRIC[FULL, HALF] = 0.20, 0.70
ASYMMETRIC[HALF] = 0.05
ASYMMETRIC[HALF, FULL], ASYMMETRIC[HALF, HALF] = 0.10, 0.80


def test_the_vote_reads_the_confusion_by_column_hand_computed():
    """p(true k | answered a) is proportional to prior_k * pi[k, a]: column ``a``, not row ``a``."""
    assert np.allclose(ASYMMETRIC.sum(axis=1), 1.0) and not np.allclose(ASYMMETRIC, ASYMMETRIC.T)
    uniform = np.full(K, 1 / K)
    # answered half length: column HALF = (0.05, 0.05, 0.70, 0.80) / 1.60
    p = item_posterior([("x", HALF)], confusions={"x": ASYMMETRIC}, priors=uniform, default=ASYMMETRIC)
    expected = np.full(K, 0.05 / 1.60)
    expected[FULL], expected[HALF] = 0.70 / 1.60, 0.80 / 1.60
    assert np.allclose(p, expected)
    # answered full length: column FULL = (0.05, 0.05, 0.20, 0.10) / 0.40, so full length wins; reading row
    # FULL instead (0.05, 0.05, 0.20, 0.70) would make it half length
    p = item_posterior([("x", FULL)], confusions={"x": ASYMMETRIC}, priors=uniform, default=ASYMMETRIC)
    expected = np.full(K, 0.05 / 0.40)
    expected[FULL], expected[HALF] = 0.20 / 0.40, 0.10 / 0.40
    assert np.allclose(p, expected) and np.argmax(p) == FULL
    # with priors: (0.4, 0.3, 0.2, 0.1) x column HALF, normalised
    priors = np.zeros(K)
    priors[:] = [0.4, 0.3, 0.2, 0.1]
    p = item_posterior([("x", HALF)], confusions={"x": ASYMMETRIC}, priors=priors, default=ASYMMETRIC)
    raw = priors * ASYMMETRIC[:, HALF]
    assert np.allclose(p, raw / raw.sum())
    assert np.isclose(p[FULL], 0.2 * 0.70 / (0.4 * 0.05 + 0.3 * 0.05 + 0.2 * 0.70 + 0.1 * 0.80))
    # two answers multiply: an unknown worker (default matrix) and x
    p = item_posterior([("x", FULL), ("nobody", FULL)], confusions={"x": ASYMMETRIC}, priors=uniform,
                       default=ASYMMETRIC)
    raw = ASYMMETRIC[:, FULL] ** 2
    assert np.allclose(p, raw / raw.sum())


def _systematic(n: int = 400):
    """Two reliable inspectors (wrong on 10% each, never on the same photo) and "c", who is right except that
    full-length shots are called half length 90% of the time. Deterministic: truth is i % K."""
    answers, truth = [], []
    for i in range(n):
        t = i % K
        truth.append(t)
        answers.append((i, "a", (t + 1) % K if i % 10 == 3 else t))
        answers.append((i, "b", (t + 2) % K if i % 10 == 7 else t))
        answers.append((i, "c", HALF if t == FULL and (i // K) % 10 != 0 else t))
    return answers, truth


def test_dawid_skene_learns_an_asymmetric_confusion_and_uses_it_the_right_way_round():
    answers, truth = _systematic()
    # "solo-full": only c answered, full length; c says full length only when it is (half-length shots are
    # always called half length), so the photo is full length. Read the other way round, c's "full length"
    # would point to half length.
    ds = dawid_skene(answers + [("solo-full", "c", FULL), ("solo-half", "c", HALF)], n_classes=K)
    c = ds.confusions["c"]
    assert c[FULL, HALF] > 0.5 > 0.1 > c[HALF, FULL]  # rows are the true class
    assert c[HALF, HALF] > 0.8 and c[FULL, FULL] < 0.35
    assert all(np.argmax(ds.posteriors[i]) == truth[i] for i in range(len(truth)))
    assert np.argmax(ds.posteriors["solo-full"]) == FULL
    # c's "half length" is weak evidence (full-length shots get it too): half length, but not sure
    assert np.argmax(ds.posteriors["solo-half"]) == HALF and ds.posteriors["solo-half"][FULL] > 0.25
    # the stored matrices give the same vote through item_posterior
    p = item_posterior([("c", FULL)], confusions=ds.confusions, priors=np.full(K, 1 / K),
                       default=gold_confusion(correct=0, total=0, n_classes=K))
    assert np.argmax(p) == FULL and p[FULL] > 0.5


# ---- edges: nothing to learn, gold only, the iteration count, bad input, extreme numbers


def test_no_answers_and_no_gold_gives_uniform_priors_and_nothing_else():
    ds = dawid_skene([], n_classes=K)
    assert ds.confusions == {} and ds.posteriors == {} and ds.iterations == 0
    assert np.array_equal(ds.priors, np.full(K, 1 / K))


def test_gold_only_items_keep_their_class_and_set_the_priors():
    ds = dawid_skene([], n_classes=K, gold={"g1": 0, "g2": 0, "g3": 2})
    assert ds.confusions == {} and ds.iterations == 0
    assert {k: int(np.argmax(v)) for k, v in ds.posteriors.items()} == {"g1": 0, "g2": 0, "g3": 2}
    assert all(v.max() == 1.0 and v.sum() == 1.0 for v in ds.posteriors.values())
    assert np.allclose(ds.priors, np.array([2 + 1, 0 + 1, 1 + 1, 0 + 1]) / (3 + K))  # Laplace, smoothing 1
    ds = dawid_skene([], n_classes=K, gold={"g1": 0, "g2": 0, "g3": 2}, smoothing=2.0)
    assert np.allclose(ds.priors, np.array([2 + 2, 0 + 2, 1 + 2, 0 + 2]) / (3 + 2 * K))


def test_iterations_count_the_em_rounds_run():
    truth, said, answers = _synthetic()
    assert dawid_skene(answers, n_classes=K, max_iter=0).iterations == 0
    assert dawid_skene(answers, n_classes=K, max_iter=1).iterations == 1
    assert dawid_skene(answers, n_classes=K, max_iter=3, tol=-1.0).iterations == 3  # never converges: all 3 run
    assert dawid_skene(answers, n_classes=K, max_iter=5).iterations == 5  # tol 1e-6: not reached in 5 rounds
    unanimous = dawid_skene([(i, w, i % K) for i in range(40) for w in "abc"], n_classes=K)
    assert unanimous.iterations < 20 and all(np.argmax(unanimous.posteriors[i]) == i % K for i in range(40))


@pytest.mark.parametrize(("answers", "gold", "message"), [
    ([(1, "a", K)], None, f"class indices must be between 0 and {K - 1}"),
    ([(1, "a", -1)], None, f"class indices must be between 0 and {K - 1}"),
    ([(1, "a", 0)], {2: K}, f"gold class indices must be between 0 and {K - 1}"),
    ([], {2: -1}, f"gold class indices must be between 0 and {K - 1}"),
])
def test_out_of_range_classes_are_refused_with_the_range(answers, gold, message):
    with pytest.raises(InvalidInput) as caught:
        dawid_skene(answers, n_classes=K, gold=gold)
    assert str(caught.value) == message
    assert dawid_skene([(1, "a", K - 1)], n_classes=K).posteriors[1].shape == (K,)  # the last class is fine


def test_gold_counts_are_checked():
    for correct, total in ((-1, 5), (6, 5), (1, 0), (0, -1)):
        with pytest.raises(InvalidInput) as caught:
            gold_confusion(correct=correct, total=total, n_classes=K)
        assert str(caught.value) == f"gold counts must satisfy 0 <= correct <= total, got {correct}/{total}"
    assert np.isclose(gold_confusion(correct=0, total=0, n_classes=K)[0, 0], 0.5)  # (0 + 1) / (0 + 2)


def test_symmetric_confusion_for_one_two_and_four_classes():
    from services.hitl.dawid_skene import symmetric_confusion

    assert np.array_equal(symmetric_confusion(0.9, 1), [[0.9]])
    assert np.allclose(symmetric_confusion(0.9, 2), [[0.9, 0.1], [0.1, 0.9]])
    four = symmetric_confusion(0.7, 4)
    assert np.allclose(np.diag(four), 0.7) and np.allclose(four[0, 1:], 0.1) and np.allclose(four.sum(axis=1), 1)


def test_the_vote_stays_finite_with_zeros_and_with_hundreds_of_answers():
    # impossible everywhere: a zero prior where the answer is possible and the reverse; no NaN, all equal
    pi = np.zeros((K, K))
    pi[:, 2] = [0.0, 0.0, 0.5, 0.5]
    pi[:, 0] = [1.0, 1.0, 0.5, 0.5]
    p = item_posterior([("x", 2)], confusions={"x": pi}, priors=np.array([0.5, 0.5, 0.0, 0.0]), default=pi)
    assert np.all(np.isfinite(p)) and np.allclose(p, 1 / K)
    # 400 answers multiply to far under the smallest float: computed in logs, shifted by the largest
    conf = symmetric_confusion_of(0.6)
    p = item_posterior([(f"w{j}", 1 if j % 3 else 2) for j in range(400)], confusions={}, priors=np.full(K, 1 / K),
                       default=conf)
    assert np.all(np.isfinite(p)) and np.argmax(p) == 1 and p[1] > 0.999
    # the same inside Dawid-Skene: one item with 400 answers beside items with three
    answers = [("big", f"w{j}", 1) for j in range(400)] + [(i, w, i % K) for i in range(30) for w in ("w0", "w1", "w2")]
    ds = dawid_skene(answers, n_classes=K)
    assert all(np.all(np.isfinite(v)) and np.isclose(v.sum(), 1.0) for v in ds.posteriors.values())
    assert np.argmax(ds.posteriors["big"]) == 1 and all(np.argmax(ds.posteriors[i]) == i % K for i in range(30))


def symmetric_confusion_of(accuracy: float) -> np.ndarray:
    m = np.full((K, K), (1 - accuracy) / (K - 1))
    np.fill_diagonal(m, accuracy)
    return m


def test_the_starting_accuracies_follow_pairwise_agreement():
    """The initialisation's method of moments, hand-computed: P(j and k agree) = 1/K + K/(K-1) x_j x_k with
    x = accuracy - 1/K. a and b are always right, c right on every other photo: a and c agree half the time, so
    x_c = (0.5 - 1/4) x 3/4 / x_a, with x_a at its cap (1 - 1/K - 0.001)."""
    from services.hitl.dawid_skene import _agreement_accuracy

    n = 400
    truth = np.arange(n) % K
    said = {0: truth, 1: truth, 2: np.where(np.arange(n) % 2 == 0, truth, (truth + 1) % K)}
    ii = np.concatenate([np.arange(n)] * 3)
    ww = np.repeat([0, 1, 2], n)
    cc = np.concatenate([said[w] for w in (0, 1, 2)])
    empty = np.zeros(0, dtype=np.int64)
    acc = _agreement_accuracy(ii, ww, cc, empty, empty, n_workers=3, n_classes=K)
    top = 1 - 1 / K - 1e-3
    assert acc[:2] == pytest.approx([1 / K + top] * 2, abs=1e-3)
    assert acc[2] == pytest.approx(1 / K + 0.25 * 3 / 4 / top, abs=1e-3)
    # a worker who shares no photo with anyone starts at 0.75; gold is a perfect worker to agree with
    lonely = _agreement_accuracy(np.array([0, 1]), np.array([0, 1]), np.array([2, 3]), empty, empty,
                                 n_workers=2, n_classes=K)
    assert lonely == pytest.approx([0.75, 0.75])
    gold_rows, gold_cls = np.arange(n), truth
    with_gold = _agreement_accuracy(np.arange(n), np.zeros(n, dtype=np.int64), said[2], gold_rows, gold_cls,
                                    n_workers=1, n_classes=K)
    assert with_gold[0] == pytest.approx(1 / K + 0.25 * 3 / 4 / top, abs=1e-3)

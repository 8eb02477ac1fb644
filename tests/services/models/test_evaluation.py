"""Evaluation: threshold selection and the out-of-fold report, on constructed cases whose right answers are known."""

import numpy as np
import pytest

from services.core.errors import ModelError
from services.models.evaluation import (
    automatic_at,
    calibration_error,
    check_counts,
    oof_metrics,
    suggest_thresholds,
    thin_classes,
    tradeoff_curve,
    wilson_low,
)

CLASSES = ["a", "b"]


def _case():
    """20 photos predicted 'a' at confidences 0.99 .. 0.80 (step 0.01): the 15 most confident are right, then
    wrong ones at 0.84 and 0.82; 10 photos predicted 'b' at 0.95, all right."""
    conf_a = np.round(np.arange(0.99, 0.795, -0.01), 2)
    y = ["a"] * 15 + ["b", "a", "b", "a", "a"]
    proba = [[c, 1 - c] for c in conf_a] + [[0.05, 0.95]] * 10
    return np.array(y + ["b"] * 10), np.array(proba)


def test_thresholds_decide_the_largest_share_that_keeps_the_target_accuracy():
    y, proba = _case()
    # at 100% only the 15 right 'a' predictions above the first mistake (0.84) may be automatic: threshold 0.85
    assert suggest_thresholds(y, proba, CLASSES, target=1.0) == {"a": 0.85, "b": 0.95}
    # at 90%: down to 0.80 the 'a' decisions hold 18 right of 20 (0.90); the whole 'a' column qualifies
    assert suggest_thresholds(y, proba, CLASSES, target=0.9) == {"a": 0.8, "b": 0.95}
    # at 94%: 0.84 alone gives 15/16 = 0.9375, but going on to 0.83 gives 16/17 = 0.941: the lower threshold
    # wins (more automatic, still on target), although a threshold in between would miss it
    thresholds = suggest_thresholds(y, proba, CLASSES, target=0.94)
    assert thresholds["a"] == pytest.approx(0.83, abs=1e-4)
    at = automatic_at(y, proba, CLASSES, thresholds=thresholds)
    assert (at["automatic_share"], at["automatic_accuracy"], at["automatic_photos"]) == (27 / 30, 26 / 27, 27)


def test_the_lower_bound_warns_when_few_photos_back_an_accuracy():
    assert wilson_low(0, 0) is None
    assert wilson_low(60, 60) == pytest.approx(0.9398, abs=1e-4)  # 60 of 60 right: plausibly only 94%
    assert wilson_low(9800, 10000) == pytest.approx(0.9771, abs=1e-4)  # 98.0% of 10,000: at least 97.7%


def test_tied_confidences_are_taken_or_left_together():
    y = np.array(["a", "b", "a", "a"])
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.99, 0.01], [0.95, 0.05]])
    # 0.9 holds one right and one wrong: including it gives 3/4; a threshold cannot take only the right one
    assert suggest_thresholds(y, proba, CLASSES, target=0.8)["a"] == 0.95


def test_a_class_never_right_enough_is_never_decided_automatically():
    y = np.array(["b", "b", "a"])
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8]])  # every 'a' prediction is wrong
    thresholds = suggest_thresholds(y, proba, CLASSES, target=0.98)
    assert thresholds["a"] == 1.0
    assert automatic_at(y, proba, CLASSES, thresholds=thresholds)["automatic_share"] == 0.0
    assert automatic_at(y, proba, CLASSES, thresholds=thresholds)["automatic_accuracy_low"] is None


def test_a_threshold_is_never_under_one_half_even_where_lower_confidences_are_right():
    """Four classes: a top-class confidence can be as low as 0.25. Every prediction below is right, so the
    accuracy alone would allow each class's lowest confidence; the floor keeps every threshold at 0.5 or
    above, and a prediction under 0.5 is never decided automatically."""
    four = ["a", "b", "c", "d"]
    rows = {"a": [0.9, 0.6, 0.45, 0.3], "b": [0.7, 0.49], "c": [0.5001], "d": [0.8, 0.5]}
    y, proba = [], []
    for k, confs in rows.items():
        for c in confs:
            row = np.full(4, (1 - c) / 3)
            row[four.index(k)] = c
            y.append(k)
            proba.append(row)
    y, proba = np.array(y), np.array(proba)
    assert (proba.max(1) < 0.5).sum() == 3 and (proba.argmax(1) == [four.index(k) for k in y]).all()
    thresholds = suggest_thresholds(y, proba, four, target=0.98)
    # a: lowest right 0.3 -> raised to 0.5; b: 0.49 -> 0.5; c: 0.5001 stays; d: 0.5 exactly
    assert thresholds == {"a": 0.5, "b": 0.5, "c": 0.5001, "d": 0.5}
    at = automatic_at(y, proba, four, thresholds=thresholds)
    assert at["automatic_photos"] == 6 and at["automatic_accuracy"] == 1.0  # 0.45, 0.3 and 0.49 go to people
    # the floor does not lift a higher threshold: the 0.6 'a' is wrong, so at 100% 'a' needs 0.9
    y2 = y.copy()
    y2[1] = "b"
    assert suggest_thresholds(y2, proba, four, target=1.0)["a"] == 0.9
    # and a threshold is floored to four places, never rounded up past the example that set it
    assert suggest_thresholds(np.array(["a"]), np.array([[0.87659, 0.12341]]), CLASSES, target=1.0) == {
        "a": 0.8765, "b": 1.0}


def test_tradeoff_curve_gives_up_automatic_share_as_the_target_rises():
    y, proba = _case()
    curve = tradeoff_curve(y, proba, CLASSES, targets=[0.85, 0.9, 0.95, 1.0])
    points = [p["point_share"] for p in curve]  # trusting the observed accuracy of 30 photos
    assert points == sorted(points, reverse=True) and points[0] == 1.0 and points[-1] == 25 / 30
    # 30 photos certify nothing at these targets: the certified share stays at zero however tempting the sample
    assert [p["automatic_share"] for p in curve] == [0.0] * 4 and all(set(p["thresholds"].values()) == {1.0} for p in curve)


def test_the_certified_curve_gives_up_share_as_the_target_rises_and_keeps_it():
    rng = np.random.default_rng(3)
    conf = rng.uniform(0.5, 1.0, 3000)
    right = rng.random(3000) < np.where(conf > 0.8, 0.998, 0.85)  # the confident 40% are nearly always right
    y = np.where(right, "a", "b")
    proba = np.c_[conf, 1 - conf]
    curve = tradeoff_curve(y, proba, CLASSES, targets=[0.9, 0.95, 0.98])
    shares = [p["automatic_share"] for p in curve]
    assert shares == sorted(shares, reverse=True) and shares[-1] > 0
    assert all(p["automatic_accuracy"] >= p["target"] for p in curve if p["automatic_photos"])


def test_out_of_fold_report_has_per_class_figures_confusion_matrix_and_the_chosen_point():
    y, proba = _case()
    m = oof_metrics(y, proba, CLASSES, target=1.0)
    assert m["confusion_matrix"] == [[18, 0], [2, 10]]  # rows: true a, true b
    assert m["per_class"]["a"]["precision"] == pytest.approx(18 / 20)
    assert m["per_class"]["b"]["recall"] == pytest.approx(10 / 12)
    assert m["accuracy"] == pytest.approx(28 / 30)
    # the point estimate trusts 30 photos (at least the 10 'b', all right: folds are calibrated apart, so the 'a'
    # ranking may shift a little); the certificate does not, and says so
    assert m["point_estimate"]["automatic_photos"] >= 10 and m["point_estimate"]["automatic_accuracy"] == 1.0
    assert m["thresholds"] == {"a": 1.0, "b": 1.0} and m["at_target"]["automatic_share"] == 0.0
    assert m["certificate"]["text"].startswith("certified: 0% automatic at 100%")
    assert m["temperature"] > 0 and m["expected_calibration_error"] >= 0
    assert len(m["tradeoff"]) == 21 and m["tradeoff"][0]["target"] == 0.8


def test_too_few_photos_says_how_many_more_each_class_needs():
    with pytest.raises(ModelError, match="half_length needs 1 more"):
        check_counts(np.array(["product"] * 5 + ["half_length"]), folds=5)
    with pytest.raises(ModelError, match="at least two classes.*label some"):
        check_counts(np.array(["product"] * 5), folds=5)
    assert check_counts(np.array(["a"] * 3 + ["b"] * 9), folds=5) == 3


def test_thin_classes_are_named_with_how_many_more_photos_they_need():
    y = np.array(["product"] * 25 + ["package"] * 19 + ["full_length"])
    assert thin_classes(y) == [
        "package has 19 labelled photos: 1 more make its figures dependable",
        "full_length has 1 labelled photo: 19 more make its figures dependable",
        "half_length has 0 labelled photos: 20 more make its figures dependable",
    ]


def test_calibration_error_hand_computed_with_bin_edges():
    """Ten bins (lo, hi]: 1.0 and 0.95 share the top bin (right, wrong: 0.5 right at 0.975 confidence), 0.75 and
    0.72 the (0.7, 0.8] bin (0.5 at 0.735), 0.5 sits in (0.4, 0.5] alone (right at 0.5).
    ECE = 2/5 x 0.475 + 2/5 x 0.235 + 1/5 x 0.5 = 0.384."""
    conf = np.array([1.0, 0.95, 0.75, 0.72, 0.5])
    y = np.array(["a", "b", "a", "b", "a"])
    proba = np.c_[conf, 1 - conf]
    assert calibration_error(y, proba, CLASSES) == pytest.approx(0.384)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert calibration_error(np.array(["a", "b"]), perfect, CLASSES) == 0.0


def test_the_report_keeps_the_callers_class_order_and_names_every_figure():
    y, proba = _case()
    order = ["b", "a"]  # not sorted: columns follow this order
    m = oof_metrics(y, proba[:, ::-1], order, target=1.0)
    assert m["classes"] == order
    assert m["confusion_matrix"] == [[10, 2], [0, 18]]  # rows and columns in the caller's order
    assert set(m["per_class"]["a"]) == {"precision", "recall", "f1", "support"}
    assert (m["per_class"]["a"]["support"], m["per_class"]["b"]["support"]) == (18, 12)
    f1_a, f1_b = 2 * 18 / (2 * 18 + 2), 2 * 10 / (2 * 10 + 2)
    assert m["per_class"]["a"]["f1"] == pytest.approx(f1_a) and m["macro_f1"] == pytest.approx((f1_a + f1_b) / 2)
    assert m["uncalibrated_calibration_error"] == pytest.approx(calibration_error(y, proba[:, ::-1], order))
    assert m["certificate"]["text"].endswith("on 30 held-back photos); label more photos of every class: none is "
                                             "yet right often enough to certify")
    # a class never predicted has precision 0, not 1
    three = ["a", "b", "c"]
    m = oof_metrics(np.array(["a", "b", "c", "a"] * 3), np.tile([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1],
                                                                 [0.6, 0.3, 0.1], [0.7, 0.2, 0.1]], (3, 1)), three)
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 3}


def test_automatic_share_of_no_photos_is_zero():
    none = automatic_at(np.array([]), np.zeros((0, 2)), CLASSES, thresholds={"a": 0.5, "b": 0.5})
    assert none == {"automatic_share": 0.0, "automatic_accuracy": None, "automatic_accuracy_low": None,
                    "automatic_photos": 0}


def test_check_counts_messages_in_full():
    with pytest.raises(ModelError) as caught:
        check_counts(np.array([], dtype=str), folds=5)
    assert str(caught.value) == "training needs at least two classes with photos; have none"
    with pytest.raises(ModelError) as caught:
        check_counts(np.array(["product"] * 5), folds=5)
    assert str(caught.value) == ("training needs at least two classes with photos; have {'product': 5} "
                                 "(label some package, full_length, half_length photos)")
    with pytest.raises(ModelError) as caught:
        check_counts(np.array(["a", "b", "b"]), folds=5)
    assert str(caught.value) == ("every class needs at least 2 photos for cross-validation: a needs 1 more "
                                 "(have {'a': 1, 'b': 2})")
    assert check_counts(np.array(["a", "a", "b", "b"]), folds=5) == 2  # two photos each is enough
    assert check_counts(np.array(["a"] * 9 + ["b"] * 9), folds=5) == 5


def test_a_class_with_exactly_the_dependable_number_is_not_thin():
    y = np.array(["product"] * 20 + ["package"] * 19 + ["full_length"] * 20 + ["half_length"] * 21)
    assert thin_classes(y) == ["package has 19 labelled photos: 1 more make its figures dependable"]


def test_calibration_bins_are_a_tenth_wide():
    # 0.85 (wrong) alone in (0.8, 0.9]: |0 - 0.85| x 1/3; 0.95 and 0.99 (right) in (0.9, 1.0]: |1 - 0.97| x 2/3
    conf = np.array([0.85, 0.95, 0.99])
    y = np.array(["b", "a", "a"])
    assert calibration_error(y, np.c_[conf, 1 - conf], CLASSES) == pytest.approx(0.85 / 3 + 0.03 * 2 / 3)


def test_the_report_names_its_target_point_estimate_and_more_photos():
    rng = np.random.default_rng(5)
    conf = rng.uniform(0.9, 1.0, 120)
    y = np.where(rng.random(120) < 0.995, "a", "b")
    m = oof_metrics(y, np.c_[conf, 1 - conf], CLASSES, target=0.98)
    assert m["target_accuracy"] == 0.98
    assert set(m["point_estimate"]["thresholds"]) == {"a", "b"}
    assert m["certificate"]["more_photos"] is not None and m["certificate"]["more_photos"] > 0
    assert f"about {m['certificate']['more_photos']:,} more labelled photos would certify more" in m["certificate"]["text"]


def test_every_short_class_is_named():
    with pytest.raises(ModelError) as caught:
        check_counts(np.array(["a", "b", "c", "c"]), folds=5)
    assert str(caught.value) == ("every class needs at least 2 photos for cross-validation: a needs 1 more, "
                                 "b needs 1 more (have {'a': 1, 'b': 1, 'c': 2})")

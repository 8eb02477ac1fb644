"""Evaluating a classifier from held-back (out-of-fold) predictions: per-class precision, recall and F1, the
confusion matrix, calibration, the per-class thresholds that decide the largest share automatically at a target
accuracy, the trade-off curve, and how many more photos a class needs. Pure functions of labels and
probabilities, so every backend (head, fine-tuning) reports the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from services.core.config import CLASSES
from services.core.errors import ModelError
from services.models.certify import certify, cross_fit_calibration, more_photos_estimate, summary

TARGET_ACCURACY = 0.98


def suggest_thresholds(y: np.ndarray, proba: np.ndarray, classes: list[str], *, target: float) -> dict[str, float]:
    """Per class, the lowest threshold at which the automatic decisions for that class (predicted it, with at
    least that confidence) are still right at least ``target`` of the time: the largest automatic share that
    keeps the target. 1.0 (nothing automatic) for a class that never reaches it; never under 0.5."""
    pred = np.array(classes)[proba.argmax(1)]
    conf = proba.max(1)
    out = {}
    for cls in classes:
        mask = pred == cls
        c, right = conf[mask], (y[mask] == cls)
        order = np.argsort(-c, kind="stable")
        c, right = c[order], right[order]
        accuracy = np.cumsum(right) / np.arange(1, len(c) + 1)
        last_of_tie = np.r_[c[1:] != c[:-1], True] if len(c) else np.zeros(0, dtype=bool)  # a threshold takes ties whole
        ok = np.flatnonzero(last_of_tie & (accuracy >= target))
        best = float(c[ok[-1]]) if len(ok) else 1.0
        out[cls] = float(min(max(np.floor(best * 1e4) / 1e4, 0.5), 1.0))  # floor: never above the example
    return out


def automatic_at(y: np.ndarray, proba: np.ndarray, classes: list[str], *, thresholds: dict[str, float]) -> dict[str, Any]:
    """The share decided automatically at ``thresholds`` and the accuracy of those decisions."""
    pred = np.array(classes)[proba.argmax(1)]
    conf = proba.max(1)
    auto = np.zeros(len(y), dtype=bool)
    for cls, t in thresholds.items():
        if t < 1.0:  # 1.0: nothing of the class is decided automatically
            auto |= (pred == cls) & (conf >= t)
    n, right = int(auto.sum()), int((pred[auto] == y[auto]).sum())
    return {"automatic_share": float(auto.mean()) if len(y) else 0.0,
            "automatic_accuracy": right / n if n else None,
            "automatic_accuracy_low": wilson_low(right, n), "automatic_photos": n}


def wilson_low(right: int, n: int, *, z: float = 1.96) -> float | None:
    """The lower end of the 95% Wilson interval of an accuracy of ``right`` of ``n``: how low the true accuracy
    of the automatic decisions may plausibly be when it was measured on few photos."""
    if n == 0:
        return None
    p = right / n
    centre = p + z * z / (2 * n)
    margin = z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5
    return float((centre - margin) / (1 + z * z / n))


def tradeoff_curve(y: np.ndarray, proba: np.ndarray, classes: list[str], *,
                   targets: Iterable[float] = tuple(np.round(np.arange(0.80, 1.0001, 0.01), 2))) -> list[dict[str, Any]]:
    """For each target accuracy, the certified per-class thresholds and the automatic share and accuracy they
    give on these (held-back, calibrated) predictions, beside the point estimate (``suggest_thresholds``, which
    trusts the observed accuracy however few photos back it): the curve an admin picks a point on."""
    out = []
    for target in targets:
        certified = certify(y, proba, classes, target=float(target))
        thresholds = {k: c.threshold for k, c in certified.items()}
        point = automatic_at(y, proba, classes, thresholds=suggest_thresholds(y, proba, classes, target=float(target)))
        out.append({"target": float(target), **automatic_at(y, proba, classes, thresholds=thresholds),
                    "thresholds": thresholds, "point_share": point["automatic_share"]})
    return out


def oof_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str], *, target: float = TARGET_ACCURACY) -> dict[str, Any]:
    """Per-class precision/recall/F1, macro-F1, accuracy, confusion matrix and calibration error of out-of-fold
    probabilities, then: the temperature that calibrates them (cross-fitted, see ``certify``), the thresholds
    certified for ``target`` with the automatic share they give, the point estimate beside them, and the
    trade-off curve, all on the calibrated probabilities."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    raw_ece = calibration_error(y, proba, classes)
    proba, temperature = cross_fit_calibration(y, proba, classes)
    pred = np.array(classes)[proba.argmax(1)]
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    certified = certify(y, proba, classes, target=target)
    point = suggest_thresholds(y, proba, classes, target=target)
    more = more_photos_estimate(y, proba, classes, target=target, certified=certified)
    certificate = summary(certified, total=len(y), target=target, more_photos=more)
    return {
        "classes": classes,
        "per_class": {
            k: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
            for i, k in enumerate(classes)
        },
        "macro_f1": float(np.mean(f1)),
        "accuracy": float((pred == y).mean()),
        "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist(),
        "expected_calibration_error": calibration_error(y, proba, classes),
        "uncalibrated_calibration_error": raw_ece,
        "temperature": temperature,
        "target_accuracy": target,
        "thresholds": certificate["thresholds"],
        "at_target": automatic_at(y, proba, classes, thresholds=certificate["thresholds"]),
        "certificate": certificate,
        "point_estimate": {"thresholds": point, **automatic_at(y, proba, classes, thresholds=point)},
        "tradeoff": tradeoff_curve(y, proba, classes),
    }


def calibration_error(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """Expected calibration error of the top-class confidence over ten equal-width bins."""
    pred = np.array(classes)[proba.argmax(1)]
    conf = proba.max(1)
    bins = np.linspace(0, 1, 11)
    ece = 0.0
    for lo, hi in zip(bins[:-1], bins[1:]):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs((pred[sel] == y[sel]).mean() - conf[sel].mean())
    return float(ece)


def check_counts(y: np.ndarray, *, folds: int) -> int:
    """The number of folds to use for labels ``y``. Raises ModelError for one class, or a class with too few
    photos to cross-validate (saying how many more it needs)."""
    counts = {k: int((y == k).sum()) for k in sorted(set(y.tolist()))}
    if len(counts) < 2:
        raise ModelError(f"training needs at least two classes with photos; have {counts or 'none'}"
                         + (f" (label some {', '.join(c for c in CLASSES if c not in counts)} photos)" if counts else ""))
    short = {k: 2 - n for k, n in counts.items() if n < 2}
    if short:
        raise ModelError("every class needs at least 2 photos for cross-validation: "
                         + ", ".join(f"{k} needs {n} more" for k, n in short.items()) + f" (have {counts})")
    return min(folds, min(counts.values()))


DEPENDABLE_PER_CLASS = 20  # fewer photos than this in a class and its figures swing by a photo or two


def thin_classes(y: np.ndarray, *, minimum: int = DEPENDABLE_PER_CLASS) -> list[str]:
    """A warning per class (of the four) with fewer than ``minimum`` labelled photos, saying how many more it needs:
    training still runs, but its cross-validated figures for that class are rough."""
    counts = {k: int((y == k).sum()) for k in CLASSES}
    return [f"{k} has {n} labelled photo{'s' if n != 1 else ''}: {minimum - n} more make its figures dependable"
            for k, n in counts.items() if n < minimum]

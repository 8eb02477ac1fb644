"""Thresholds that keep their promise: calibrate held-back predictions, then choose each class's threshold so
that a lower confidence bound of its automatic accuracy reaches the target.

Three steps, each on photos the earlier one did not use:

1. **Fitting.** The probabilities come from cross-validation: each photo's prediction is made by a model that
   did not see it (out-of-fold).
2. **Calibration.** A temperature is fitted to those predictions by *cross-fitting*: each photo's calibrated
   probability uses a temperature fitted on the other folds of the held-back predictions, never on itself.
   (The temperature fitted on all of them is the one stored with the version for new photos.)
3. **Threshold choice.** Per class, among photos predicted as that class, the thresholds of a fixed grid
   (``GRID``, chosen before seeing any data) are tested in a fixed sequence, from the most confident down: a
   threshold's automatic decisions are certified when the one-sided Clopper-Pearson lower bound of their
   accuracy reaches the target at level ``alpha``, and the scan stops at the first threshold that fails. A fixed
   sequence pays for the scan without splitting ``alpha`` (Learn-then-Test's fixed-sequence procedure): with 95%
   confidence every certified threshold keeps the target, so the last one passed is chosen. Where the sequence
   starts is set from the confidences alone, never from which photos were right: at the highest threshold with
   enough photos above it that a record with one mistake could still pass (else with enough that a perfect
   record could), because a test on a handful of photos would fail and end the sequence before it began.
   Given the confidences, that start is fixed, so the guarantee holds. A class without enough evidence gets
   1.0: nothing automatic.

With a 98% target and no error at all, a class needs 149 photos above its threshold before a threshold can be
certified; a perfect sample of 30 certifies nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import beta
from sklearn.model_selection import KFold, StratifiedKFold

ALPHA = 0.05  # one-sided: the certified accuracy holds with 95% confidence
# the thresholds tested, fixed in advance (never under an even chance); denser where models are confident
GRID = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995, 0.999)


def clopper_pearson_low(right: int, n: int, *, alpha: float = ALPHA) -> float:
    """The one-sided exact (Clopper-Pearson) lower confidence bound of an accuracy of ``right`` of ``n``."""
    if n <= 0 or right <= 0:
        return 0.0
    return float(beta.ppf(alpha, right, n - right + 1))


def photos_needed(*, accuracy: float, target: float, alpha: float = ALPHA) -> int | None:
    """How many photos at ``accuracy`` certify ``target`` (their lower bound reaches it); None when ``accuracy``
    does not exceed the target."""
    if accuracy <= target:
        return None

    return _fewest(lambda n: clopper_pearson_low(int(math.floor(accuracy * n)), n, alpha=alpha) >= target,
                   start=1, limit=10_000_000)


def _fewest(enough: Callable[[int], bool], *, start: int, limit: int) -> int | None:
    """The least n from ``start`` for which ``enough(n)`` (true from some n on): doubling, then bisection; None
    when it is not true by ``limit``."""
    hi = start
    while not enough(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = max(start - 1, hi // 2)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi


# ------------------------------------------------------------------------------------------- calibration
def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their log-odds divided by ``temperature`` (1.0 leaves them unchanged)."""
    if temperature == 1.0 or len(proba) == 0:
        return proba
    logp = np.log(np.clip(proba, 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(axis=1, keepdims=True)


def fit_temperature(y_idx: np.ndarray, proba: np.ndarray) -> float:
    """The temperature (0.05 to 20) that minimises the negative log-likelihood of the true classes."""
    if len(y_idx) < 2:
        return 1.0
    rows = np.arange(len(y_idx))

    def nll(log_t: float) -> float:
        return float(-np.log(np.clip(temper(proba, math.exp(log_t))[rows, y_idx], 1e-12, 1.0)).mean())

    best = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(best.x)) if best.success else 1.0


def cross_fit_calibration(y: np.ndarray, proba: np.ndarray, classes: list[str], *, folds: int = 5,
                          seed: int = 0) -> tuple[np.ndarray, float]:
    """(calibrated probabilities, the temperature fitted on all): each photo's calibrated probability comes
    from a temperature fitted on the other folds only."""
    y_idx = np.array([classes.index(v) for v in y])
    if len(y) < 4:
        return proba, 1.0
    counts = np.bincount(y_idx, minlength=len(classes))
    k = min(folds, len(y))
    stratified = counts[counts > 0].min() >= k
    splitter = (StratifiedKFold(k, shuffle=True, random_state=seed) if stratified
                else KFold(k, shuffle=True, random_state=seed))
    out = np.array(proba, dtype=float, copy=True)
    for fit, apply in splitter.split(proba, y_idx):
        out[apply] = temper(proba[apply], fit_temperature(y_idx[fit], proba[fit]))
    return out, fit_temperature(y_idx, proba)


# ------------------------------------------------------------------------------------------- certification
@dataclass(frozen=True)
class ClassCertificate:
    """The certified threshold of one class and the evidence behind it."""

    threshold: float  # 1.0: nothing automatic
    photos: int  # photos predicted as the class at or above the threshold
    right: int  # of which right
    accuracy_low: float  # the lower bound of their accuracy, at level alpha
    tests: int  # thresholds tested in the sequence


@lru_cache(maxsize=256)
def least_photos(*, mistakes: int, target: float, alpha: float = ALPHA) -> int | None:
    """The fewest photos with ``mistakes`` wrong among them whose lower bound reaches ``target``; None when no
    number does (a target of 100%)."""
    if target >= 1.0:
        return None

    return _fewest(lambda n: clopper_pearson_low(n - mistakes, n, alpha=alpha) >= target, start=mistakes + 1,
                   limit=100_000_000)


def certify_class(conf: np.ndarray, right: np.ndarray, *, target: float, alpha: float = ALPHA) -> ClassCertificate:
    """The lowest threshold of the fixed sequence whose automatic decisions are certified right at least
    ``target`` of the time (1.0 when none is).

    ``conf`` and ``right`` are the confidences of the photos predicted as this class and whether each was right.
    """
    order = sorted(GRID, reverse=True)
    above = [int((conf >= t).sum()) for t in order]
    start = None  # chosen from the confidences only (see the module docstring)
    for least in (least_photos(mistakes=1, target=target, alpha=alpha),
                  least_photos(mistakes=0, target=target, alpha=alpha)):
        if least is None:
            continue
        start = next((i for i, n in enumerate(above) if n >= least), None)
        if start is not None:
            break
    best = ClassCertificate(1.0, 0, 0, 0.0, 0)
    if start is None:
        return best
    for tests, t in enumerate(order[start:], start=1):
        mask = conf >= t
        n, ok = int(mask.sum()), int(right[mask].sum())
        low = clopper_pearson_low(ok, n, alpha=alpha)
        if low < target:  # the sequence ends at its first failure
            return ClassCertificate(best.threshold, best.photos, best.right, best.accuracy_low, tests)
        best = ClassCertificate(float(t), n, ok, low, tests)
    return best


def certify(y: np.ndarray, proba: np.ndarray, classes: list[str], *, target: float,
            alpha: float = ALPHA) -> dict[str, ClassCertificate]:
    """Per class, its certificate from held-back (calibrated) predictions."""
    pred = np.array(classes)[proba.argmax(1)] if len(proba) else np.array([], dtype=str)
    conf = proba.max(1) if len(proba) else np.zeros(0)
    return {cls: certify_class(conf[pred == cls], y[pred == cls] == cls, target=target, alpha=alpha)
            for cls in classes}


def more_photos_estimate(y: np.ndarray, proba: np.ndarray, classes: list[str], *, target: float,
                         certified: dict[str, ClassCertificate], alpha: float = ALPHA) -> int | None:
    """About how many more labelled photos like these would certify more than today, if the model stays as
    accurate as it looks: for each class and grid threshold whose observed accuracy beats the target, the photos
    that accuracy needs for a certificate, scaled by the share of all photos landing there; the smallest such
    total, less what exists (``certified``: today's certificates, from ``certify``). None when no class looks
    accurate enough anywhere."""
    pred = np.array(classes)[proba.argmax(1)]
    conf = proba.max(1)
    totals = []
    for cls in classes:
        for t in GRID:
            mask = (pred == cls) & (conf >= t)
            n = int(mask.sum())
            if n == 0 or t >= certified[cls].threshold:
                continue
            need = photos_needed(accuracy=float((y[mask] == cls).mean()), target=target, alpha=alpha)
            if need is not None:
                totals.append(math.ceil(need * len(y) / n))
    return max(0, min(totals) - len(y)) if totals else None


def summary(certificates: dict[str, ClassCertificate], *, total: int, target: float,
            more_photos: int | None, alpha: float = ALPHA) -> dict[str, Any]:
    """The certified share of all photos with the sentence the console shows for it (``alpha``: the level the
    certificates were made at). Raises nothing."""
    photos = sum(c.photos for c in certificates.values())
    right = sum(c.right for c in certificates.values())
    share = photos / total if total else 0.0
    text = (f"certified: {share:.0%} automatic at {target:.0%} ({1 - alpha:.0%} confidence, on {total} held-back "
            "photos)")
    if more_photos:
        text += f"; about {more_photos:,} more labelled photos would certify more"
    elif share == 0 and more_photos is None:
        text += "; label more photos of every class: none is yet right often enough to certify"
    return {"thresholds": {k: c.threshold for k, c in certificates.items()},
            "automatic_share": share, "automatic_photos": photos,
            "automatic_accuracy": right / photos if photos else None,
            "per_class": {k: asdict(c) for k, c in certificates.items()},
            "alpha": alpha, "more_photos": more_photos, "text": text}

"""The bin state machine of the tray counter, frame by frame, compiled with numba (no database, no UI).

It reads smoothed per-frame counts and their timestamps and finds where one bin was hidden by the next.
Every rule is stated in seconds, so one set of settings holds from 5 to 30 frames a second.

* **Filling.** The bin's *local counter* is the most trays seen in it. A *fall* starts when the count drops
  to ``_drop_threshold(local counter)`` or below, once the bin is armed (its local counter climbed
  ``min_bin_trays`` above its floor). A fall that lasts ``fall_s`` seconds is a bin change in progress.
* **Settling.** While the next bin slides over the full one, the view shrinks step by step (0.3 to 5 s) and
  may stay empty for a while. Nothing seen now counts for the new bin: the machine follows the *low point*
  (the lowest count since the fall began) and counts the new bin only from the last time the view was at
  its low point. The new bin is armed when the count climbs ``min_bin_trays`` above that low point, and
  only then is the old bin finished. If, within ``resume_s`` of the fall, the count comes back to the old
  bin's level, the fall was an occlusion (an arm, camera jitter): the old bin goes on and nothing is counted.
* **The old bin's trays** are the most seen in the last ``final_s`` seconds before its fall began, so a tray
  taken out of a full bin is not counted, and a count that never reaches zero changes nothing.
* **Outages.** A gap between frames longer than ``blind_s`` hides what happened. Trays of the bin filling
  now are still there after the gap (the count is cumulative), so nothing is lost while the bin stays. If
  the fall begins at the first frame after a gap, the change happened unseen and the old bin may have got
  more trays before it: its count is *estimated* from the line's pace and usual bin size, with a range. A bin
  that could have filled up during a gap without a change being seen is marked estimated too.

Everything the machine needs to go on is in two small arrays (``F_*`` floats and ``I_*`` integers), which
the counter keeps in its JSON state, so a stream fed in any chunking gives the same bins.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# float state
F_LAST_TS, F_BIN_START, F_RUN_START, F_FALL_TS, F_TYPICAL, F_RATE, F_BIN_GAP_S, F_GAP_MS, F_E0, F_N0 = range(10)
F_SIZE = 10
# integer state
(I_PHASE, I_BIN_MAX, I_FLOOR, I_RUN_MIN, I_RUN_SINCE, I_PENDING, I_LOW, I_SINCE_LOW, I_HIDDEN, I_GAP_BEFORE,
 I_GAP_EXTRA, I_BIN_OUTAGE, I_TOTAL, I_BINS, I_GAPS, I_EST_BINS, I_TOTAL_LOW, I_TOTAL_HIGH, I_V_AFTER,
 I_AFTER_GAP, I_DONE) = range(21)
I_SIZE = 21
FILLING, SETTLING = 0, 1
# parameters, in this order (see CounterParams)
(P_FALL_S, P_DROP_MARGIN, P_DROP_RATIO, P_RESUME_S, P_RESUME_RATIO, P_FINAL_S, P_MIN_BIN, P_ZERO_LEVEL,
 P_MAX_GAP_S, P_BLIND_S, P_PRIOR_RATE, P_PLATEAU_S, P_LAG) = range(13)
LEVELS = 64  # the miss rate is measured per smoothed count (0 .. LEVELS - 1; higher counts share the last)
L_D2, L_SX, L_NP = range(3)
# bin columns
B_START, B_END, B_TRAYS, B_ZERO, B_EST, B_LOW, B_HIGH = range(7)


def new_levels() -> np.ndarray:
    """Per-count noise sums of a line that has seen no frame."""
    return np.zeros((3, LEVELS))


@njit(cache=True)
def _drop_threshold(peak: int, margin: float, ratio: float) -> int:
    fall = max(margin, math.ceil(ratio * peak - 1e-9))
    return int(peak - fall)


@njit(cache=True)
def _final_level(t: np.ndarray, v: np.ndarray, r: np.ndarray, fall_idx: int, fall_ts: float, p: np.ndarray,
                 f: np.ndarray, lv: np.ndarray, fallback: int) -> int:
    """The bin's trays, from the frames before its fall began (frame ``fall_idx``): the highest smoothed count
    in the ``final_s`` seconds before it sets the top; the last frame within a tray of the top is where the
    slide began; the mean raw count over the ``plateau_s`` seconds up to there, corrected for the line's
    false detections and misses (``_noise``), is the count. ``fallback`` when no frame is there. Only frames
    before the fall are read, so a stream read in pieces counts as the whole of it."""
    top = -1
    k = fall_idx - 1
    while k >= 0 and t[k] >= fall_ts - p[P_FINAL_S]:
        top = max(top, v[k])
        k -= 1
    if top < 0:
        return fallback
    anchor = fall_idx - 1
    while v[anchor] < top - 1:
        anchor -= 1
    lag = int(p[P_LAG])  # the trailing median at k + lag is centred on the raw frame k
    anchor = max(anchor - lag, 0)
    # a frame counts when the smoothed counts just before and just after it (medians that leave it out, so
    # choosing frames this way does not choose their values) hold the plateau: a camera shake or an arm
    # that dims the view for a moment before the slide is left out instead of pulling the mean down (the
    # median after a frame is not asked when it reaches into the fall itself)
    low = _drop_threshold(top, p[P_DROP_MARGIN], p[P_DROP_RATIO])
    d = 2 * lag + 1
    total, frames, total_all, frames_all = 0.0, 0, 0.0, 0
    k = anchor
    while k >= 0 and t[k] >= t[anchor] - p[P_PLATEAU_S]:
        if r[k] > 0:
            total_all += r[k]
            frames_all += 1
            if k >= 1 and v[k - 1] > low and (k + d >= fall_idx or v[k + d] > low):
                total += r[k]
                frames += 1
        k -= 1
    if frames == 0:
        if frames_all == 0:
            return top
        total, frames = total_all, frames_all
    miss, extra = _noise(f, lv, top)
    return max(0, int(round((total / frames - extra) / (1.0 - miss))))


@njit(cache=True)
def _empty(v: np.ndarray, k: int, frames: int) -> bool:
    """Whether the smoothed count was zero over the ``frames`` frames up to ``k``."""
    for j in range(k - frames + 1, k + 1):
        if v[j] != 0:
            return False
    return True


@njit(cache=True)
def _noise(f: np.ndarray, lv: np.ndarray, level: int) -> tuple[float, float]:
    """(miss rate at smoothed count ``level``, false detections a frame) of the line's detector so far.

    False detections: the mean raw count while the smoothed view is empty. Misses: on steady levels, the
    frame-to-frame variance less the false detections' share, over the mean count less it (binomial misses:
    variance = mean x miss rate), from the levels within two trays of ``level`` once they have 200 frame
    pairs (occlusion may grow with the pile), else from every level."""
    extra = f[F_E0] / f[F_N0] if f[F_N0] >= 100 else 0.0
    lo, hi = max(0, min(level, LEVELS - 1) - 2), min(LEVELS, min(level, LEVELS - 1) + 3)
    d2, sx, pairs = lv[L_D2, lo:hi].sum(), lv[L_SX, lo:hi].sum(), lv[L_NP, lo:hi].sum()
    if pairs < 200:
        if lv[L_SX].sum() < 1000.0:
            return 0.0, extra
        d2, sx, pairs = lv[L_D2].sum(), lv[L_SX].sum(), lv[L_NP].sum()
    var = d2 - extra * pairs
    mean = sx - extra * pairs
    return (min(0.3, max(0.0, var / mean)) if mean > 0 else 0.0), extra


@njit(cache=True)
def _finish(f: np.ndarray, s: np.ndarray, out: np.ndarray, nb: int, end_ts: float, p: np.ndarray) -> int:
    """Write the pending bin to ``out`` row ``nb`` and update totals and the line's pace; returns nb + 1."""
    trays = s[I_PENDING]
    low = high = trays
    est = 0
    extra = s[I_GAP_EXTRA]
    if s[I_HIDDEN] == 1:  # the change happened during a gap: the old bin may have got more trays before it
        before = s[I_GAP_BEFORE]
        guess = before + max(0, extra - s[I_V_AFTER])
        if f[F_TYPICAL] > 0:
            guess = min(guess, max(before, int(round(f[F_TYPICAL]))))
        trays = max(before, guess)
        low, high, est = before, max(trays, before + extra), 1
    elif s[I_BIN_OUTAGE] == 1 and extra > 0 and (f[F_TYPICAL] <= 0 or s[I_GAP_BEFORE] + extra >= 0.8 * f[F_TYPICAL]):
        low, high, est = trays, trays + extra, 1  # it could have filled, changed and started again unseen
        if f[F_RATE] > 0 and f[F_TYPICAL] > 0:
            # at the line's pace the bin's time (the outage included) holds this many trays; more than half a
            # usual bin beyond what was seen says a change was hidden, and the pace's count is the better guess
            expect = int(round(f[F_RATE] * (end_ts - f[F_BIN_START])))
            if expect - trays > 0.5 * f[F_TYPICAL]:
                trays = min(expect, high)
    out[nb, B_START] = f[F_BIN_START]
    out[nb, B_END] = end_ts
    out[nb, B_TRAYS] = trays
    out[nb, B_ZERO] = 1.0 if s[I_LOW] <= p[P_ZERO_LEVEL] else 0.0
    out[nb, B_EST] = est
    out[nb, B_LOW] = low
    out[nb, B_HIGH] = high
    s[I_TOTAL] += trays
    s[I_TOTAL_LOW] += low
    s[I_TOTAL_HIGH] += high
    s[I_BINS] += 1
    s[I_EST_BINS] += est
    if est == 0 and trays > 0:  # the line's usual bin and pace, from bins seen whole
        seconds = end_ts - f[F_BIN_START] - f[F_BIN_GAP_S]
        f[F_TYPICAL] = trays if f[F_TYPICAL] <= 0 else 0.8 * f[F_TYPICAL] + 0.2 * trays
        if seconds > 0:
            r = trays / seconds
            f[F_RATE] = r if f[F_RATE] <= 0 else 0.8 * f[F_RATE] + 0.2 * r
    return nb + 1


@njit(cache=True)
def _open_next(f: np.ndarray, s: np.ndarray, start_ts: float) -> None:
    """The new bin, armed, filling from the low point of the change."""
    f[F_BIN_START] = start_ts
    f[F_BIN_GAP_S] = 0.0
    s[I_PHASE] = FILLING
    s[I_BIN_MAX] = s[I_SINCE_LOW]
    s[I_FLOOR] = s[I_LOW]
    s[I_PENDING] = s[I_DONE] = 0
    s[I_HIDDEN] = s[I_BIN_OUTAGE] = s[I_GAP_EXTRA] = s[I_GAP_BEFORE] = s[I_V_AFTER] = 0
    f[F_RUN_START] = np.nan


@njit(cache=True)
def run(t: np.ndarray, v: np.ndarray, r: np.ndarray, first: int, f: np.ndarray, s: np.ndarray, lv: np.ndarray,
        p: np.ndarray) -> np.ndarray:
    """Advance the state (``f``, ``s``, ``lv``: changed in place) over frames ``first`` .. len(t) - 1 of ``t`` (times),
    ``v`` (smoothed counts) and ``r`` (raw counts); frames before ``first`` are history for a bin's final
    count only. Returns the finished bins, one row each (columns ``B_*``)."""
    n = len(t)
    out = np.zeros((max(4, (n - first) // 2 + 2), 7))
    nb = 0
    margin, ratio = p[P_DROP_MARGIN], p[P_DROP_RATIO]
    lag = int(p[P_LAG])
    d = 2 * lag + 1
    for k in range(first, n):
        tk, vk = t[k], v[k]
        # a steady level's spread (binomial misses): the raw pair a few frames back, on a level the smoothed
        # count holds before and after it; the medians that say so do not include the pair itself, so
        # choosing pairs this way does not choose their values
        if k >= 2 * d + 2 and vk >= p[P_MIN_BIN] and vk == v[k - d - 2]:
            a, c = r[k - d - 1], r[k - d]
            low = _drop_threshold(vk, margin, ratio)  # a pair dimmed to a fall (a shake, an arm) is not noise
            if a > low and c > low and abs(a - c) <= 10:
                b = min(vk, LEVELS - 1)
                lv[L_D2, b] += 0.5 * (a - c) ** 2
                lv[L_SX, b] += 0.5 * (a + c)
                lv[L_NP, b] += 1.0
        elif vk == 0 and k >= 4 * lag + 2 and _empty(v, k, 4 * lag + 2):  # an empty view: false detections
            f[F_E0] += r[k - 2 * lag - 1]  # in the middle of the empty stretch, away from either edge
            f[F_N0] += 1.0
        if s[I_AFTER_GAP] < 1_000_000:
            s[I_AFTER_GAP] += 1
        if not np.isnan(f[F_LAST_TS]):
            gap = tk - f[F_LAST_TS]
            if gap > p[P_MAX_GAP_S]:
                s[I_GAPS] += 1
                f[F_GAP_MS] += round(gap * 1000.0)
            if gap > p[P_BLIND_S]:
                s[I_AFTER_GAP] = 0
                rate = f[F_RATE] if f[F_RATE] > 0 else p[P_PRIOR_RATE]
                s[I_GAP_EXTRA] += int(math.ceil(gap * rate))
                f[F_BIN_GAP_S] += gap
                if s[I_PHASE] == FILLING and k > 0:  # what the bin held when the view went: the last level
                    # before this gap (not its peak: a tray taken out counts; not the first gap's: the bin was
                    # seen filling between them)
                    s[I_GAP_BEFORE] = v[k - 1]
                elif s[I_BIN_OUTAGE] == 0:
                    s[I_GAP_BEFORE] = s[I_SINCE_LOW]
                s[I_BIN_OUTAGE] = 1
        else:
            f[F_BIN_START] = tk
        f[F_LAST_TS] = tk
        if s[I_PHASE] == FILLING:
            if vk > s[I_BIN_MAX]:
                s[I_BIN_MAX] = vk
            peak = s[I_BIN_MAX]
            armed = peak >= s[I_FLOOR] + p[P_MIN_BIN]
            if armed and vk <= _drop_threshold(peak, margin, ratio):
                if np.isnan(f[F_RUN_START]):
                    f[F_RUN_START] = tk
                    s[I_RUN_MIN] = s[I_RUN_SINCE] = vk
                    # the smoothed count lags the raw one by the median's half window: a fall that starts
                    # that soon after a gap started during it
                    s[I_HIDDEN] = 1 if s[I_AFTER_GAP] <= 2 * lag else 0
                    s[I_V_AFTER] = r[k]
                elif vk <= s[I_RUN_MIN]:
                    s[I_RUN_MIN] = s[I_RUN_SINCE] = vk
                elif vk > s[I_RUN_SINCE]:
                    s[I_RUN_SINCE] = vk
                if tk - f[F_RUN_START] >= p[P_FALL_S]:  # a bin change is under way
                    fall_ts = f[F_RUN_START]
                    j = k
                    while j > 0 and t[j - 1] >= fall_ts:
                        j -= 1
                    s[I_PENDING] = _final_level(t, v, r, j, fall_ts, p, f, lv, peak)
                    if s[I_HIDDEN] == 1:
                        s[I_PENDING] = s[I_GAP_BEFORE]
                    f[F_FALL_TS] = fall_ts
                    s[I_LOW], s[I_SINCE_LOW] = s[I_RUN_MIN], s[I_RUN_SINCE]
                    s[I_PHASE] = SETTLING
                    f[F_RUN_START] = np.nan
            else:
                f[F_RUN_START] = np.nan
                s[I_HIDDEN] = 0
        else:
            dt = tk - f[F_FALL_TS]
            old = s[I_PENDING]
            back = _drop_threshold(old, margin, p[P_RESUME_RATIO])  # "the old bin's level": within the resume share
            if dt <= p[P_RESUME_S] and vk >= back and s[I_HIDDEN] == 0:  # the old bin was only hidden for a moment
                s[I_PHASE] = FILLING
                s[I_BIN_MAX] = max(old, vk)
                s[I_PENDING] = 0
                continue
            if vk <= s[I_LOW]:
                s[I_LOW] = s[I_SINCE_LOW] = vk
            elif vk > s[I_SINCE_LOW]:
                s[I_SINCE_LOW] = vk
            if dt > p[P_RESUME_S] and s[I_DONE] == 0:  # no occlusion: the old bin is finished
                nb = _finish(f, s, out, nb, f[F_FALL_TS], p)
                s[I_DONE] = 1
            if s[I_DONE] == 1 and vk >= s[I_LOW] + p[P_MIN_BIN]:  # the new bin fills from the low point
                _open_next(f, s, f[F_FALL_TS])
    return out[:nb]

"""The counter against an independent per-frame reference and hand-computed drop thresholds.

``reference_bins`` below is the rule book of ``services/lines/bin_machine.py`` (fall, settling, resume, the
final count) written again frame by frame in plain Python, for clean streams: no smoothing (``window=1``),
frames every 0.1 s without gaps, and every level held at least four frames (so the detector-noise measures
are zero and the final count is the plain mean of the plateau). It calls nothing of the counter: its drop
threshold is exact integer arithmetic (``Fraction``), not the production float expression. The thresholds
themselves are also checked against a table worked out by hand, through what the counter does.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from services.lines.counter import CounterParams, count_frames, open_bin

FPS = 10.0
P = CounterParams(window=1)

# peak -> (the count a fall starts at or below, the count that means "the old bin is back"), for the default
# drop_margin 2, drop_ratio 0.4 and resume_ratio 0.15, worked out by hand: a fall is at least 2 trays and at
# least 40% of the peak rounded *up* (12 x 0.4 = 4.8: 5 trays, so 7; rounding down would give 8). 25 x 0.4 is
# exactly 10: 15 (the docstring's example). The resume level: 15% of the peak rounded up, at least 2.
HAND = {
    7: (4, 5),  # 2.8 -> 3; 1.05 -> 2
    10: (6, 8),  # 4.0 -> 4; 1.5 -> 2
    12: (7, 10),  # 4.8 -> 5; 1.8 -> 2
    13: (7, 11),  # 5.2 -> 6; 1.95 -> 2
    14: (8, 11),  # 5.6 -> 6; 2.1 -> 3
    20: (12, 17),  # 8.0 -> 8; 3.0 -> 3
    25: (15, 21),  # 10.0 -> 10; 3.75 -> 4
    27: (16, 22),  # 10.8 -> 11; 4.05 -> 5
}


def frames(*segments: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Counts from (value, seconds) segments at 10 frames a second."""
    counts = np.concatenate([np.full(max(1, round(d * FPS)), v) for v, d in segments])
    return np.arange(len(counts)) / FPS + 1_700_000_000.0, counts


def climb(top: int, each_s: float = 0.5) -> list[tuple[int, float]]:
    return [(k, each_s) for k in range(1, top + 1)]


@pytest.mark.parametrize("peak", sorted(HAND))
def test_a_fall_starts_exactly_at_the_hand_computed_threshold(peak):
    drop, _back = HAND[peak]
    # 1 s at the threshold (longer than fall_s), then empty: the bin ended when the count reached the threshold
    ts, counts = frames(*climb(peak), (peak, 2.0), (drop, 1.0), (0, 4.0), *climb(6))
    at_drop = ts[round((peak * 0.5 + 2.0) * FPS)]  # the first frame at the threshold
    bins, _ = count_frames(ts, counts, params=P)
    assert [(b.trays, b.end_ts) for b in bins] == [(peak, at_drop)], (peak, drop)
    # 1 s one tray above it is no fall: the bin ended only when the count went to zero
    ts, counts = frames(*climb(peak), (peak, 2.0), (drop + 1, 1.0), (0, 4.0), *climb(6))
    at_zero = ts[round((peak * 0.5 + 3.0) * FPS)]  # the first empty frame
    bins, _ = count_frames(ts, counts, params=P)
    assert [(b.trays, b.end_ts) for b in bins] == [(peak, at_zero)], (peak, drop + 1)
    # however long it stays there: the same bin, still open at its peak
    ts, counts = frames(*climb(peak), (peak, 2.0), (drop + 1, 10.0), (peak, 2.0))
    bins, state = count_frames(ts, counts, params=P)
    assert bins == [] and open_bin(state) == (ts[0], peak), (peak, drop + 1)


@pytest.mark.parametrize("peak", [12, 14, 20, 25, 27])
def test_the_old_bin_is_back_exactly_at_the_hand_computed_resume_level(peak):
    drop, back = HAND[peak]
    # a fall (1 s at the threshold), then the count comes back to the resume level within resume_s: an occlusion
    ts, counts = frames(*climb(peak), (peak, 2.0), (drop, 1.0), (back, 6.0))
    bins, state = count_frames(ts, counts, params=P)
    assert bins == [] and open_bin(state) == (ts[0], peak), (peak, back)
    # one tray short of it: the old bin is finished once resume_s has passed
    ts, counts = frames(*climb(peak), (peak, 2.0), (drop, 1.0), (back - 1, 6.0))
    bins, _ = count_frames(ts, counts, params=P)
    assert [b.trays for b in bins] == [peak], (peak, back - 1)


# ---- the reference


def _threshold(peak: int, margin: int, ratio: float) -> int:
    """The count at or below which the view has fallen from ``peak``: at least ``margin`` trays and at least
    ``ratio`` of the peak, rounded up (exact arithmetic)."""
    return peak - max(margin, math.ceil(Fraction(str(ratio)) * peak))


def reference_bins(ts: np.ndarray, counts: np.ndarray, p: CounterParams = P) -> list[tuple[float, float, int, str]]:
    """(start, end, trays, reason) of every finished bin, frame by frame, per the rules in bin_machine's
    docstring (clean streams only: see the module docstring)."""
    t, v = [float(x) for x in ts], [int(x) for x in counts]
    out = []
    filling, start, peak, floor = True, t[0], 0, 0
    run_start = None
    run_min = run_since = low = since_low = pending = 0
    fall_ts, done = 0.0, False
    for k, (tk, vk) in enumerate(zip(t, v)):
        if filling:
            peak = max(peak, vk)
            if peak >= floor + p.min_bin_trays and vk <= _threshold(peak, p.drop_margin, p.drop_ratio):
                if run_start is None:
                    run_start, run_min, run_since = tk, vk, vk
                elif vk <= run_min:
                    run_min = run_since = vk
                elif vk > run_since:
                    run_since = vk
                if tk - run_start >= p.fall_s:  # a bin change is under way
                    fall_ts, j = run_start, k
                    while j > 0 and t[j - 1] >= fall_ts:
                        j -= 1
                    pending = _final(t, v, j, fall_ts, p, fallback=peak)
                    low, since_low = run_min, run_since
                    filling, run_start, done = False, None, False
            else:
                run_start = None
            continue
        dt = tk - fall_ts
        if dt <= p.resume_s and vk >= _threshold(pending, p.drop_margin, p.resume_ratio):  # only hidden
            filling, peak, pending = True, max(pending, vk), 0
            continue
        if vk <= low:
            low = since_low = vk
        elif vk > since_low:
            since_low = vk
        if dt > p.resume_s and not done:
            out.append((start, fall_ts, pending, "zero" if low <= p.zero_level else "drop"))
            done = True
        if done and vk >= low + p.min_bin_trays:  # the next bin, from the low point of the change
            filling, start, peak, floor, run_start = True, fall_ts, since_low, low, None
    return out


def _final(t: list[float], v: list[int], fall_idx: int, fall_ts: float, p: CounterParams, *, fallback: int) -> int:
    """The finished bin's trays: the top of the last ``final_s`` before the fall; from the last frame within a
    tray of it, the mean count over ``plateau_s`` back (frames showing no tray left out), rounded."""
    before = [k for k in range(fall_idx) if t[k] >= fall_ts - p.final_s]
    if not before:
        return fallback
    top = max(v[k] for k in before)
    anchor = max(k for k in range(fall_idx) if v[k] >= top - 1)
    plateau = [v[k] for k in range(anchor + 1) if t[k] >= t[anchor] - p.plateau_s and v[k] > 0]
    return round(sum(plateau) / len(plateau)) if plateau else top


def _story(rng: np.random.Generator, bins: int) -> list[tuple[int, float]]:
    """Bins filling and changing, with the hard cases the rules are about: dips to just below and just above
    the drop threshold, occlusions that end just at or just under the resume level, trays taken out, changes
    that never reach zero. Every level lasts at least 0.4 s (four frames), and a bin is full for at least
    1.6 s after a dip (longer than plateau_s), so its final count never straddles one."""
    seg: list[tuple[int, float]] = []
    level = 0
    for _ in range(bins):
        top = int(rng.integers(6, 31))
        for k in range(level + 1, top + 1):
            seg.append((k, float(rng.choice([0.4, 0.7, 1.5]))))
        seg.append((top, float(rng.uniform(0.4, 3.0))))
        drop = _threshold(top, P.drop_margin, P.drop_ratio)
        back = _threshold(top, P.drop_margin, P.resume_ratio)
        for _ in range(int(rng.integers(0, 3))):
            what = rng.integers(0, 4)
            if what == 0:  # a long wobble one tray above the threshold: never a fall
                seg += [(drop + 1, float(rng.uniform(0.4, 4.0))), (top, 1.6)]
            elif what == 1:  # an arm over the bin, then back to or just under the resume level
                seg += [(int(rng.integers(0, drop + 1)), float(rng.uniform(0.7, 2.0))),
                        (back - int(rng.integers(0, 2)), float(rng.uniform(0.4, 4.0))), (top, 1.6)]
            elif what == 2:  # a short dip to the threshold (shorter or longer than fall_s)
                seg += [(drop, float(rng.choice([0.4, 0.5, 0.6, 0.7, 0.8]))), (top, 1.6)]
            else:  # a tray taken out
                top -= 1
                seg.append((top, float(rng.uniform(0.4, 2.0))))
        to = int(rng.choice([0, 0, 1, 3]))
        for k in range(top - 1, to - 1, -1):  # the slide, step by step
            seg.append((k, float(rng.choice([0.4, 0.5, 1.0]))))
        seg.append((to, float(rng.uniform(0.4, 6.0))))
        level = to
    return seg


@pytest.mark.parametrize("seed", range(12))
def test_the_counter_gives_the_reference_bins_frame_by_frame(seed):
    rng = np.random.default_rng(seed)
    ts, counts = frames(*_story(rng, bins=12))
    want = reference_bins(ts, counts)
    bins, _ = count_frames(ts, counts, params=P)
    got = [(b.start_ts, b.end_ts, b.trays, b.reason) for b in bins]
    assert got == want, seed
    assert len(want) >= 8 and not any(b.estimated for b in bins)
    # and fed a frame or a few at a time
    state, chunked = None, []
    cuts = np.unique(rng.integers(0, len(ts), 60))
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(ts)]):
        part, state = count_frames(ts[lo:hi], counts[lo:hi], state=state, params=P)
        chunked += part
    assert chunked == bins

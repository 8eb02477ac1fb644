"""The tray counter against truths that do not come from the project's simulator (``services/lines/simulator.py``).

Two sources, neither calling anything of ``services.lines`` but the counter under test:

* **Written by hand**: short per-frame count sequences at 8 frames a second, with the bins they hold counted by
  hand in the comments.
* **A small generator written here** (``camera_line``), on assumptions plainly unlike the simulator's: 12 frames a
  second with jittered timestamps, single dropped frames and dropped bursts (the simulator's frames are regular,
  with outages only); trays placed in batches of 1 to 3 at regular intervals (not a Poisson process); detector
  errors drawn from a fixed discrete table (-2, -1, +1 trays, whatever the pile), not per-tray misses nor
  Poisson false detections; an arm that covers half of the pile for up to 1.8 s; camera restarts (a 3-6 s
  gap, then two frames reading 0 while the camera warms up); slides that leave two trays of the old bin in view
  until the new bin's first tray; a bin changed when only partly filled; a tray taken out of a full bin. The
  truth of each bin is what it holds when the next one covers it, known by construction.

What the README promises (``## Packaging-line counting``): every rule in seconds, so any frame rate; an arm or a
shake that goes within 2.5 s is no change; a shrinking slide and an empty view count nothing for the new bin; a
tray taken out of a full bin is not counted; a bin whose change an outage could have hidden is *estimated* with a
range; line totals within 1% of the truth. Asserted here: the bins one by one (the same number of bins; each bin
seen whole exact or within a tray, an estimated bin's range holding its truth) and the line's total within 1%.
On seeds 0-39 every bin seen whole is exact and the worst line is +0.84%; the test runs seeds 0-9.

Left out of the generator, and why: a camera restart within 3 s of an arm (the arm's end is not seen, so the
counter rightly takes a change: no rule can tell). Two cases this generator found are hand-written tests below,
fixed in ``bin_machine.py`` since (a bin's level at its latest outage, not its first, nor its peak): a second
restart in one bin that hides its change, and a restart that hides the change of a bin a tray was taken out of.
Trays hidden under others in proportion to the pile are not in the default noise either: the counter
over-corrects them (xfail below, with figures).

Planted bugs in ``bin_machine.py`` this file catches: the drop threshold rounded down (the lasting-dip case),
the final count taken as the top instead of the plateau mean, the resume rule off or at half its time, the low
point not followed while settling, a plateau over ``final_s`` instead of ``plateau_s``, a hidden change never
flagged. Not caught here (caught by ``test_counter.py``): no miss-rate correction, ``fall_s`` read as a fifth,
the plateau-frame filter off.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.lines.counter import count_frames

# --- written by hand ------------------------------------------------------------------------------------------

FPS_HAND = 8.0


def by_hand(*segments: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Frames at 8 a second: each segment is (count, seconds); a count of None is a gap with no frames."""
    ts, counts, t = [], [], 1_000.0
    for count, seconds in segments:
        n = int(round(seconds * FPS_HAND))
        if count is not None:
            ts += [t + k / FPS_HAND for k in range(n)]
            counts += [count] * n
        t += n / FPS_HAND
    return np.array(ts), np.array(counts)


def fill(start: int, stop: int, step_s: float = 1.0) -> list[tuple[int, float]]:
    """A bin filling one tray at a time from ``start`` to ``stop`` trays, ``step_s`` seconds a tray."""
    return [(n, step_s) for n in range(start, stop + 1)]


def test_hand_written_bins_count_as_counted_by_hand():
    ts, counts = by_hand(
        *fill(1, 12),  # bin 1: 12 trays
        (12, 3.0), (12, 0.25), (6, 0.5), (2, 0.5), (0, 4.0),  # a 1 s slide that shrinks in steps, 4 s empty view
        *fill(1, 7),  # bin 2: changed when 7 trays in (a partly filled bin)
        (3, 1.0), (1, 2.0),  # a slow slide that never reaches zero
        (2, 1.0), *fill(3, 15),  # bin 3: its first tray lands on the old bin's last one in view: 15 trays
        (4, 1.0), (15, 3.0),  # an arm over the pile for 1 s: no change
        (14, 4.0),  # a tray taken out of the full bin: it holds 14
        (7, 0.5), (0, 3.0),  # a fast slide
        *fill(1, 9),  # bin 4: still filling when the stream ends, not finished
    )
    bins, state = count_frames(ts, counts)
    assert [b.trays for b in bins] == [12, 7, 14]  # counted by hand above
    assert not any(b.estimated for b in bins) and state.total == 33 and state.bin_max == 9


def test_hand_written_lasting_dip_of_a_third_of_the_pile_is_no_change():
    """A fall is at least 40% of the bin's count (CounterParams.drop_ratio), rounded up: 12 trays must fall by 5."""
    ts, counts = by_hand(
        *fill(1, 12), (12, 2.0),
        (8, 3.0),  # a box leans on a third of the pile (4 of 12) for 3 s: longer than an arm, but no fall
        (12, 1.0), *fill(13, 16), (16, 3.0),  # the bin goes on to 16
        (8, 0.5), (0, 3.0),  # the slide
        *fill(1, 8),
    )
    bins, _ = count_frames(ts, counts)
    assert [b.trays for b in bins] == [16]


def test_hand_written_camera_restart_inside_a_bin_is_no_change():
    ts, counts = by_hand(
        *fill(1, 10),  # bin 1: trays 1-10 seen ...
        (None, 4.0),  # ... the camera restarts (4 s without frames; no tray added meanwhile) ...
        (0, 0.25),  # ... and reads 0 for two frames while it warms up
        *fill(10, 18),  # bin 1 goes on to 18
        (18, 2.0), (9, 0.5), (0, 3.0),  # the slide
        *fill(1, 8),  # bin 2, still filling
    )
    bins, state = count_frames(ts, counts)
    assert [b.trays for b in bins] == [18] and state.gaps == 0  # a 4 s gap is not an outage (max_gap_s 30)
    assert bins[0].low <= 18 <= bins[0].high


# --- a small generator with its own assumptions ---------------------------------------------------------------

ERRORS = np.array([-2, -1, 0, 1])  # the detector's error on a frame, whatever the pile: a fixed table
ERROR_P = np.array([0.01, 0.05, 0.91, 0.03])


def camera_line(seed: int, bins: int = 24, hidden_share: float = 0.0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(timestamps, counts, trays each bin held when covered) of one line; the stream ends while the bin after the
    last one fills, so every bin of the truth is finished. ``hidden_share``: trays hidden under others in a frame,
    Poisson with this share of the pile as its mean (none by default)."""
    rng = np.random.default_rng(seed)
    fps = 12.0
    # the truth, as a piecewise-constant count of trays in view: (from this time, this many)
    steps: list[tuple[float, int]] = [(0.0, 0)]
    arms: list[tuple[float, float]] = []  # (start, end) of an arm over the pile: half of it hidden
    restarts: list[tuple[float, float]] = []  # (start, end) of a camera restart: no frames
    truth: list[int] = []
    lives: list[tuple[float, float]] = []  # (first tray, end of the slide that covered it) of each bin
    took_out: list[tuple[float, float]] = []  # (tray taken out, end of the slide) of those bins
    t, residual = 0.0, 0
    plan = [int(rng.integers(16, 27)) for _ in range(bins)]
    plan[5] = 8  # a bin changed when only partly filled
    for b, size in enumerate(plan + [6]):
        n, first = 0, t
        while n < size:  # trays arrive in batches of 1-3, at regular intervals with some spread
            t += float(rng.uniform(1.2, 2.4))
            n = min(size, n + int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05])))
            steps.append((t, n))  # the new bin's first tray covers what was left of the old one
            if 4 <= n < size - 2 and rng.random() < 0.15 and (not arms or arms[-1][1] < t - 3.0):
                arms.append((t + 0.3, t + 0.3 + float(rng.uniform(0.3, 1.8))))  # an arm reaches over the pile
        if b == len(plan):
            t += 3.0
            break
        t += float(rng.uniform(1.0, 5.0))  # the full bin waits
        out = t
        if b % 7 == 3:  # a tray is taken out of the full bin
            n -= 1
            steps.append((t, n))
            t += float(rng.uniform(2.0, 4.0))
        truth.append(n)
        slide = float(rng.choice([0.4, 1.5, 3.0, 4.5]))  # the next bin slides over in steps
        residual = 2 if b % 4 == 1 else 0  # or leaves two trays of the old bin in view
        for k, level in enumerate(np.linspace(n, residual, 5)[1:]):
            steps.append((t + slide * (k + 1) / 4, int(round(level))))
        t += slide + float(rng.choice([0.0, 2.0, 6.0]))  # the view stays as the slide left it
        lives.append((first, t))
        if b % 7 == 3:
            took_out.append((out, t))
    end = t
    # camera restarts, about one in 4 minutes, whatever the worker is doing (trays go on arriving meanwhile), save
    # where this test does not ask the counter to see through them (see the module docstring)
    for start in np.sort(rng.uniform(10.0, end - 20.0, size=max(1, int(end / 240)))):
        a, z = float(start), float(start + rng.uniform(3.0, 6.0))
        near_arm = any(a - 3.0 < y and x < z + 3.0 for x, y in arms)
        second_in_bin = any(lo <= a <= hi and any(lo <= c <= hi for c, _ in restarts) for lo, hi in lives)
        hides_a_removal = any(a < y and x < z for x, y in took_out)
        if not (near_arm or second_in_bin or hides_a_removal):
            restarts.append((a, z))
    # frames: jittered times, single drops and dropped bursts, none during a restart
    grid = np.arange(0.0, end, 1.0 / fps)
    ts = grid + rng.uniform(-0.02, 0.02, size=len(grid))
    keep = rng.random(len(ts)) >= 0.06
    for start in rng.uniform(0, end, size=int(end / 120)):
        keep &= ~((ts >= start) & (ts < start + rng.uniform(0.2, 0.8)))
    for a, z in restarts:
        keep &= ~((ts >= a) & (ts < z))
    ts = np.sort(ts[keep & (ts >= 0)])
    at = np.array([s[0] for s in steps])
    visible = np.array([s[1] for s in steps])[np.searchsorted(at, ts, side="right") - 1]
    for a, z in arms:
        inside = (ts >= a) & (ts < z)
        visible[inside] -= (visible[inside] + 1) // 2
    counts = np.maximum(0, visible + rng.choice(ERRORS, size=len(ts), p=ERROR_P))
    if hidden_share:  # trays hidden under others, more on a higher pile
        counts = np.maximum(0, counts - np.minimum(visible, rng.poisson(hidden_share * visible)))
    counts[(visible == 0)] = (rng.random(int((visible == 0).sum())) < 0.02).astype(int)  # an empty view: ghosts
    for _, z in restarts:  # two frames reading 0 after a restart, while the camera warms up
        first = int(np.searchsorted(ts, z))
        counts[first : first + 2] = 0
    return 1_700_000_000.0 + ts, counts, truth


@pytest.mark.parametrize("seed", range(10))
def test_generated_lines_count_bin_by_bin_and_within_one_percent(seed):
    ts, counts, truth = camera_line(seed)
    bins, state = count_frames(ts, counts)
    got = [b.trays for b in bins]
    assert len(got) == len(truth), (got, truth)
    for b, want in zip(bins, truth):
        if b.estimated:
            assert b.low <= want <= b.high, (b, want)
        else:
            assert abs(b.trays - want) <= 1, (got, truth)
    assert abs(state.total - sum(truth)) <= 0.01 * sum(truth), (state.total, sum(truth))


# --- found by these truths, not fixed yet (strict: a fix makes them pass, and then the mark must go) -----------


def test_a_change_hidden_by_the_second_restart_in_a_bin_keeps_what_was_seen_between():
    ts, counts = by_hand(
        *fill(1, 8), (None, 4.0), (0, 0.25),  # a camera restart at 8 trays
        *fill(10, 20), (20, 3.0),  # the bin fills to 20, seen plainly for 3 s ...
        (None, 4.0), (0, 3.0),  # ... then a second restart hides its change: the view is empty after it
        *fill(1, 8),
    )
    [b], _ = count_frames(ts, counts)
    assert b.estimated and b.low <= 20 <= b.high, b  # was 14 trays, range 8-14 (the first outage's level)


def test_a_change_hidden_by_a_restart_after_a_tray_was_taken_out_ranges_over_what_the_bin_held():
    ts, counts = by_hand(
        *fill(1, 18), (18, 3.0), (17, 4.0),  # a tray taken out of the full bin: it holds 17 ...
        (None, 4.0), (0, 3.0),  # ... when a restart hides its change
        *fill(1, 8),
    )
    [b], _ = count_frames(ts, counts)
    assert b.estimated and b.low <= 17 <= b.high, b  # was 21 trays, range 18-21 (the peak, not what it held)


@pytest.mark.xfail(strict=True, reason="counter: trays hidden under others in proportion to the pile (Poisson, 6% "
                   "of it) are over-corrected: lines +1.15% on average over seeds 0-19, 12 of 20 over 1% "
                   "(+0.28% at 3%, +0.05% without)")
def test_lines_with_trays_hidden_under_others_within_one_percent():
    off = []
    for seed in range(10):
        ts, counts, truth = camera_line(seed, hidden_share=0.06)
        _, state = count_frames(ts, counts)
        off.append((state.total - sum(truth)) / sum(truth))
    assert max(abs(x) for x in off) <= 0.01, [f"{x:+.2%}" for x in off]

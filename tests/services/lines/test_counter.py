"""The tray counter: accuracy on simulated shifts against the naive method, incrementality, hysteresis,
outages, bad input. Pure numpy: no workspace needed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.errors import InvalidInput
from services.lines import counter as linecount
from services.lines.counter import Bin, CounterParams, LineState, count_frames, naive_count, open_bin, total_trays
from services.lines.simulator import simulate

# the hard cases at once: missed and extra detections, flicker to zero (single frames, sometimes two),
# occlusion while a new bin is placed (half the time to zero, half to the few trays left visible),
# camera outages, several lines with different paces
HARD = dict(miss_rate=0.05, extra_rate=0.03, flicker_rate=0.003, outages=3, outage_s=(5.0, 60.0))


def reference(ts: np.ndarray, counts: np.ndarray, params: CounterParams) -> tuple[list[Bin], int]:
    """The counter's rules written frame by frame, plainly (slow): the vectorised counter must agree."""
    w = params.window
    padded = np.concatenate(([counts[0]] * (w - 1), counts))
    bins: list[Bin] = []
    peak = floor = 0
    start = float(ts[0])
    runs = {"zero": [0, None, 0], "drop": [0, None, 0]}  # length, start ts, max
    for i in range(len(counts)):
        v = int(np.median(padded[i : i + w]))
        peak = max(peak, v)
        armed = peak >= floor + params.min_bin_trays
        cond = {"zero": armed and v <= params.zero_level, "drop": armed and v <= params.drop_threshold(peak)}
        for name, run in runs.items():
            if cond[name]:
                if run[0] == 0:
                    run[1], run[2] = float(ts[i]), v
                run[0] += 1
                run[2] = max(run[2], v)
            else:
                run[:] = [0, None, 0]
        fired = "zero" if runs["zero"][0] >= params.zero_frames else "drop" if runs["drop"][0] >= params.drop_frames else None
        if fired:
            run = runs[fired]
            bins.append(Bin(start_ts=start, end_ts=run[1], trays=peak, reason=fired))
            start, peak, floor = run[1], run[2], v
            runs = {"zero": [0, None, 0], "drop": [0, None, 0]}
    return bins, peak


def frames(*segments: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Counts from (value, frames) segments at 30 fps."""
    counts = np.concatenate([np.full(n, v) for v, n in segments])
    return np.arange(len(counts)) / 30.0 + 1_700_000_000.0, counts


def climb(top: int, per: int = 10) -> list[tuple[int, int]]:
    """A bin filling: 1, 2, ... ``top`` trays, ``per`` frames each."""
    return [(k, per) for k in range(1, top + 1)]


# ---- accuracy: 8-hour shifts, this counter vs the naive one, in the same test


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_eight_hour_shift_within_one_percent_and_naive_far_off(seed):
    streams, truth = simulate(lines=3, hours=8, seed=seed, **HARD)
    lines = []
    for line_id, s in streams.items():
        bins, state = count_frames(s.ts, s.counts, params=CounterParams())
        true_total = sum(truth[line_id])
        ours = total_trays(state)
        naive = naive_count(s.counts)
        assert ours == sum(b.trays for b in bins) + open_bin(state)[1]
        ours_err = abs(ours - true_total) / true_total
        naive_err = abs(naive - true_total) / true_total
        lines.append((line_id, true_total, ours, naive, ours_err, naive_err, len(bins), len(truth[line_id])))
    report = "; ".join(f"{lid}: truth {t}, ours {o} ({100 * oe:.2f}%), naive {n} ({100 * ne:.1f}%), bins {b}/{tb}"
                       for lid, t, o, n, oe, ne, b, tb in lines)
    for _, _, _, _, ours_err, naive_err, n_bins, n_true in lines:
        assert ours_err < 0.01, report
        assert naive_err > 10 * ours_err and naive_err > 0.05, report
        assert abs(n_bins - n_true) <= 3, report  # bins found ~ bins packed (the last one still filling)
    shift_truth = sum(t for _, t, *_ in lines)
    shift_ours = sum(o for _, _, o, *_ in lines)
    assert abs(shift_ours - shift_truth) / shift_truth < 0.01, report


def test_bin_ends_are_found_within_a_few_frames():
    streams, _ = simulate(lines=2, hours=2, seed=5, **{**HARD, "outages": 0})
    for s in streams.values():
        bins, _ = count_frames(s.ts, s.counts)
        found = np.array([b.end_ts for b in bins])
        nearest = found[np.clip(np.searchsorted(found, s.bin_ends), 0, len(found) - 1)]
        delay = nearest - s.bin_ends
        # the end is dated at the first frame of the confirming run: the smoothing lag, a few frames
        assert np.median(np.abs(delay)) < 0.2
        assert np.mean(np.abs(delay) < 0.5) > 0.97


def test_partial_occlusion_defeats_the_naive_method():
    """Bins whose change never reaches zero: the naive method merges them, this one does not."""
    streams, truth = simulate(lines=1, hours=2, seed=9, miss_rate=0.0, extra_rate=0.0, flicker_rate=0.0,
                              outages=0, occlusion_s=(1.0, 1.5), fill_seconds=0.5)
    s = streams["line-1"]
    bins, state = count_frames(s.ts, s.counts)
    assert [b.trays for b in bins] == truth["line-1"][: len(bins)]  # every finished bin exactly
    assert len(bins) == len(truth["line-1"]) - 1
    assert abs(total_trays(state) - sum(truth["line-1"])) <= 1  # the very last tray may be within the median's lag
    assert {b.reason for b in bins} == {"zero", "drop"}
    assert naive_count(s.counts) < 0.9 * sum(truth["line-1"])


# ---- the vectorised counter is the per-frame rules, in any chunking


def test_agrees_with_the_per_frame_reference():
    streams, _ = simulate(lines=2, hours=0.25, seed=4, **{**HARD, "flicker_rate": 0.01, "extra_rate": 0.1})
    for params in (CounterParams(), CounterParams(window=3, drop_frames=5, zero_frames=3, drop_ratio=0.2),
                   CounterParams(window=7, min_bin_trays=3, zero_level=1)):
        for s in streams.values():
            bins, state = count_frames(s.ts, s.counts, params=params)
            ref_bins, ref_open = reference(s.ts, s.counts, params)
            assert bins == ref_bins
            assert state.bin_max == ref_open


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_chunking_through_json_gives_the_same_bins_and_state(seed):
    streams, _ = simulate(lines=1, hours=1, seed=seed, **{**HARD, "flicker_rate": 0.01})
    s = streams["line-1"]
    whole_bins, whole_state = count_frames(s.ts, s.counts)
    rng = np.random.default_rng(seed)
    # many cuts, some chunks of one frame or none, most in the middle of runs
    cuts = np.unique(np.concatenate((rng.integers(0, len(s.ts), 300), rng.integers(0, 2000, 50))))
    state, bins = None, []
    for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(s.ts)]))):
        got, state = count_frames(s.ts[lo:hi], s.counts[lo:hi], state=state)
        bins += got
        state = LineState.from_json(json.loads(json.dumps(json.loads(state.to_json()))))
    assert bins == whole_bins
    assert state.to_json() == whole_state.to_json()
    assert len(whole_bins) > 20


def test_frame_by_frame_and_tiny_blocks_agree(monkeypatch):
    ts, counts = frames((0, 20), *climb(12, 6), (12, 40), (2, 12), (0, 30), *climb(9, 5), (9, 20), (0, 1), (9, 5))
    whole, whole_state = count_frames(ts, counts)
    state, one_by_one = None, []
    for i in range(len(ts)):
        got, state = count_frames(ts[i : i + 1], counts[i : i + 1], state=state)
        one_by_one += got
    assert one_by_one == whole and state == whole_state
    monkeypatch.setattr(linecount, "_MIN_BLOCK", 1)
    monkeypatch.setattr(linecount, "_MAX_BLOCK", 3)
    assert count_frames(ts, counts) == (whole, whole_state)
    assert [b.trays for b in whole] == [12]


# ---- hysteresis and outages


def test_a_single_frame_flicker_to_zero_does_not_end_a_bin():
    ts, counts = frames(*climb(15), (15, 30), (0, 1), (15, 30), (0, 2), (16, 30), (0, 5), (16, 30))
    bins, state = count_frames(ts, counts)
    assert bins == []
    assert open_bin(state) == (ts[0], 16)
    # the naive method sees four bins here: the same trays counted again after every flicker
    assert naive_count(counts) == 15 + 15 + 16 + 16


def test_a_one_frame_drop_does_not_end_a_bin_but_a_sustained_drop_does():
    ts, counts = frames(*climb(20), (20, 30), (4, 1), (20, 30), (4, 7), (20, 30))
    assert count_frames(ts, counts)[0] == []
    ts, counts = frames(*climb(20), (20, 30), (3, 40), *[(k, 10) for k in range(3, 11)])
    bins, state = count_frames(ts, counts)
    assert [(b.trays, b.reason) for b in bins] == [(20, "drop")]
    fall = ts[20 * 10 + 30]  # after the climb and the full bin
    assert fall < bins[0].end_ts <= fall + 4 / 30  # dated at the start of the fall (plus the median's lag)
    assert open_bin(state) == (bins[0].end_ts, 10)
    # partial occlusion (a few trays still visible), then the new bin empty: one bin change, not two
    ts, counts = frames(*climb(20), (20, 30), (3, 40), (0, 40), *climb(18), (18, 10))
    bins, state = count_frames(ts, counts)
    assert [b.trays for b in bins] == [20] and total_trays(state) == 38


def test_a_sustained_zero_ends_a_bin_quickly():
    ts, counts = frames(*climb(22), (22, 30), (0, 45), *climb(19), (19, 30), (0, 45), (1, 10))
    bins, state = count_frames(ts, counts)
    assert [(b.trays, b.reason) for b in bins] == [(22, "zero"), (19, "zero")]
    first_zero = ts[np.flatnonzero(counts == 0)[0]]
    assert 0 < bins[0].end_ts - first_zero <= 3 / 30
    assert bins[1].start_ts == bins[0].end_ts and bins[0].start_ts == ts[0]
    assert state.total == 41 and state.bins == 2 and total_trays(state) == 42


def test_an_outage_alone_does_not_end_or_split_a_bin():
    ts, counts = frames(*climb(14), (14, 60))
    later = ts[-1] + 600.0 + np.arange(90) / 30.0  # ten minutes without frames, then the same bin fills on
    ts2 = np.concatenate((ts, later))
    counts2 = np.concatenate((counts, np.full(45, 14), np.full(45, 17)))
    bins, state = count_frames(ts2, counts2)
    assert bins == []
    assert open_bin(state) == (ts[0], 17)
    assert state.gaps == 1 and state.gap_ms == 600_000
    # the gap falling between two calls changes nothing
    _, s1 = count_frames(ts, counts)
    bins2, s2 = count_frames(later, counts2[len(ts) :], state=LineState.from_json(s1.to_json()))
    assert bins2 == [] and s2 == state


def test_a_bin_change_during_an_outage_is_found_after_it():
    ts, counts = frames(*climb(20), (20, 30))
    later = ts[-1] + 120.0 + np.arange(300) / 30.0  # back on: the new bin holds 4 trays, then 8
    bins, state = count_frames(np.concatenate((ts, later)), np.concatenate((counts, np.full(150, 4), np.full(150, 8))))
    assert [(b.trays, b.reason) for b in bins] == [(20, "drop")]
    assert bins[0].end_ts == pytest.approx(later[2], abs=0.1)
    assert open_bin(state)[1] == 8


# ---- API edges


def test_empty_input_changes_nothing():
    bins, state = count_frames(np.array([]), np.array([], dtype=int))
    assert bins == [] and state == LineState() and open_bin(state) is None and open_bin(None) is None
    ts, counts = frames((5, 10))
    _, s1 = count_frames(ts, counts)
    bins, s2 = count_frames([], [], state=s1)
    assert bins == [] and s2 == s1 and s2 is not s1
    assert naive_count([]) == 0 and total_trays(None) == 0


def test_the_state_passed_in_is_not_changed():
    ts, counts = frames(*climb(10), (0, 20))
    _, s1 = count_frames(ts[:50], counts[:50])
    before = s1.to_json()
    count_frames(ts[50:], counts[50:], state=s1)
    assert s1.to_json() == before


@pytest.mark.parametrize(
    ("ts", "counts", "message"),
    [
        ([0.0, 1.0, 2.0], [3, -1, 2], "negative"),
        ([0.0, 2.0, 1.0], [1, 2, 3], "sorted"),
        ([0.0, 1.0], [1, 2, 3], "2 timestamps but 3 counts"),
        ([0.0, float("nan")], [1, 2], "finite"),
        ([0.0, 1.0], [1.5, 2], "whole number"),
        (["a", "b"], [1, 2], "numbers"),
    ],
)
def test_bad_input_raises_invalid_input(ts, counts, message):
    with pytest.raises(InvalidInput, match=message):
        count_frames(ts, counts)


def test_frames_older_than_the_state_are_refused():
    _, state = count_frames([10.0, 11.0], [1, 2])
    with pytest.raises(InvalidInput, match="newer than the ones already counted"):
        count_frames([10.5], [3], state=state)
    count_frames([11.0, 12.0], [3, 4], state=state)  # the same instant again is allowed (another camera)


def test_bad_params_and_bad_state_raise_invalid_input():
    for params in (CounterParams(window=4), CounterParams(drop_frames=0), CounterParams(drop_ratio=1.0),
                   CounterParams(max_gap_s=0), CounterParams(min_bin_trays=1, zero_level=1)):
        with pytest.raises(InvalidInput):
            count_frames([0.0], [1], params=params)
    for text in ("not json", "[1, 2]", '{"bogus": 1}', '{"version": 99}', '{"bin_max": "many"}'):
        with pytest.raises(InvalidInput):
            LineState.from_json(text)


def test_state_json_round_trip():
    ts, counts = frames(*climb(12), (12, 20), (0, 5))  # a zero run in progress at the end
    _, state = count_frames(ts, counts)
    assert state.zero_run == 3 and state.zero_start_ts is not None
    again = LineState.from_json(state.to_json())
    assert again == state and LineState.from_json(json.loads(state.to_json())) == state


def test_absurdly_large_counts_are_counted_the_same_way(monkeypatch):
    ts, counts = frames(*climb(22), (22, 30), (3, 40), *climb(19), (19, 30), (0, 45), (1, 10))
    expected = count_frames(ts, counts)
    monkeypatch.setattr(linecount, "_MAX_TABLE", 4)  # the arithmetic path, as for counts in the millions
    assert count_frames(ts, counts) == expected
    bins, _ = count_frames(ts, counts * 1_000_000)
    assert [b.trays for b in bins] == [22_000_000, 19_000_000]


def test_naive_count_is_the_published_baseline():
    assert naive_count([0, 3, 5, 0, 0, 2, 4, 0, 1]) == 5 + 4 + 1
    assert naive_count([2, 4, 3]) == 4
    assert naive_count(np.zeros(5, int)) == 0

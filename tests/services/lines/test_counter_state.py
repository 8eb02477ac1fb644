"""The counter's state and small helpers, case by case (issue 22: mutants of ``services/lines/counter.py`` that
the behavioural tests could not see: a state read back with the wrong types, a version-1 field dropped, a
bin's range defaults, the published baseline at its edges)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.errors import InvalidInput
from services.lines import bin_machine as machine
from services.lines.counter import Bin, LineState, count_frames, naive_count, open_bin, total_trays


def test_a_bins_range_defaults_to_its_count_and_keeps_what_is_given():
    b = Bin(start_ts=0.0, end_ts=9.0, trays=12, reason="drop")
    assert (b.low, b.high, b.estimated) == (12, 12, False)
    assert (Bin(start_ts=0.0, end_ts=9.0, trays=12, reason="zero", estimated=True, low=10, high=15).low,
            Bin(start_ts=0.0, end_ts=9.0, trays=12, reason="zero", estimated=True, low=10, high=15).high) == (10, 15)
    assert Bin(start_ts=0.0, end_ts=9.0, trays=12, reason="drop", low=11).high == 12


def _counted() -> LineState:
    ts = np.arange(0, 60, 0.2)
    counts = np.where((ts % 20) < 12, np.minimum((ts % 20) * 2, 20), 0).astype(int)
    _, state = count_frames(ts, counts)
    assert state.bins >= 2 and state.tail and state.hist_ts and state.level_noise
    return state


def test_a_state_reads_back_from_text_bytes_or_a_dict_with_its_types():
    state = _counted()
    text = state.to_json()
    for source in (text, text.encode(), json.loads(text)):
        assert LineState.from_json(source) == state
    loose = json.loads(text)  # numbers as another writer may have written them
    loose.update(frames=float(loose["frames"]), bins=float(loose["bins"]), gap_ms=float(loose["gap_ms"]) + 0.0,
                 tail=[float(x) for x in loose["tail"]], hist_v=[float(x) for x in loose["hist_v"]],
                 hist_raw=[float(x) for x in loose["hist_raw"]], hist_ts=[int(x) for x in loose["hist_ts"]],
                 pace=int(loose["pace"]), typical_trays=int(loose["typical_trays"]),
                 level_noise=[[int(x) for x in row] for row in loose["level_noise"]], last_ts=int(loose["last_ts"]))
    read = LineState.from_json(loose)
    for name in ("frames", "bins", "gap_ms", "total", "phase", "bin_max"):
        assert type(getattr(read, name)) is int, name
    for name in ("pace", "typical_trays", "last_ts", "bin_gap_s", "empty_sum"):
        assert type(getattr(read, name)) is float, name
    assert all(type(x) is int for x in read.tail + read.hist_v + read.hist_raw)
    assert all(type(x) is float for x in read.hist_ts) and all(type(x) is float for row in read.level_noise for x in row)
    assert read.gap_ms == state.gap_ms and read.frames == state.frames


def test_an_absent_time_stays_absent_and_a_needed_number_must_be_one():
    fresh = LineState.from_json("{}")
    assert (fresh.last_ts, fresh.bin_start_ts, fresh.run_start_ts, fresh.fall_ts) == (None, None, None, None)
    assert open_bin(fresh) is None and total_trays(fresh) == 0
    with pytest.raises(InvalidInput, match="malformed field"):
        LineState.from_json({"pace": None})  # not one of the times that may be absent
    with pytest.raises(InvalidInput, match="malformed field"):
        LineState.from_json({"bins": "many"})


def test_a_state_that_is_not_one_is_refused_with_the_reason():
    with pytest.raises(InvalidInput, match="not valid JSON"):
        LineState.from_json("{")
    with pytest.raises(InvalidInput, match="must be a JSON object"):
        LineState.from_json("[1, 2]")
    with pytest.raises(InvalidInput, match="unknown fields: alpha, zeta"):
        LineState.from_json({"zeta": 1, "alpha": 2, "bins": 3})
    with pytest.raises(InvalidInput, match="version 99 is not 2"):
        LineState.from_json({"version": 99})
    with pytest.raises(InvalidInput, match=f"level_noise must be 3 x {machine.LEVELS}"):
        LineState.from_json({"level_noise": [[0.0] * machine.LEVELS] * 2})
    assert LineState.from_json({"level_noise": []}).level_noise == []


def test_a_version_1_state_keeps_every_field_it_had_in_common():
    old = {"version": 1, "frames": 10, "last_ts": 5.0, "tail": [3, 4, 5, 6], "bin_start_ts": 1.0, "bin_max": 7,
           "floor": 2, "zero_run": 4, "total": 120, "bins": 5, "gaps": 3, "gap_ms": 40000, "bin_frames": 8}
    state = LineState.from_json(old)
    assert (state.frames, state.last_ts, state.tail, state.bin_start_ts, state.bin_max, state.floor) == \
        (10, 5.0, [3, 4, 5, 6], 1.0, 7, 2)
    assert (state.total, state.bins, state.gaps, state.gap_ms, state.total_low, state.total_high) == \
        (120, 5, 3, 40000, 120, 120)
    assert state.version == 2
    bare = LineState.from_json({"version": 1})
    assert (bare.total, bare.total_low, bare.total_high, bare.frames, bare.last_ts) == (0, 0, 0, 0, None)


def test_the_open_bin_during_a_change_is_the_hidden_one_then_the_next():
    state = LineState(bin_start_ts=10.0, bin_max=14, total=100)
    assert open_bin(state) == (10.0, 14) and total_trays(state) == 114
    state.phase, state.pending, state.fall_ts = machine.SETTLING, 13, 25.0
    assert open_bin(state) == (10.0, 13) and total_trays(state) == 113  # being hidden: not finished yet
    state.done = 1
    assert open_bin(state) == (25.0, 0) and total_trays(state) == 100  # finished: the next starts at the change
    state.fall_ts = None
    assert open_bin(state) == (10.0, 0)
    assert open_bin(None) is None and total_trays(None) == 0


@pytest.mark.parametrize(("counts", "expected"), [
    ([], 0), ([0], 0), ([7], 7), ([0, 0, 0], 0), ([4, 0, 3], 7), ([0, 0, 2, 0, 3], 5), ([2, 6, 1, 0, 0, 5, 2], 11),
    ([1, 0, 1, 0, 1], 3), ([3, 3, 0], 3)])
def test_the_naive_baseline_at_its_edges(counts, expected):
    assert naive_count(counts) == expected
    assert naive_count(np.asarray(counts, dtype=np.int32)) == expected


@pytest.mark.parametrize("window", [1, 3, 5, 7, 9])
def test_the_trailing_median_of_every_window_is_numpys(window):
    from services.lines.counter import _median

    rng = np.random.default_rng(window)
    ext = rng.integers(0, 30, size=200)
    expected = np.array([np.median(ext[i:i + window]) for i in range(len(ext) - window + 1)])
    got = _median(ext, window)
    assert got.shape == expected.shape and np.array_equal(got, expected.astype(got.dtype))
    assert not np.shares_memory(_median(ext, 1), ext)  # a copy: the caller's counts are never changed


@pytest.mark.parametrize("window", [1, 3, 5, 7])
def test_smoothing_in_chunks_with_the_carried_look_back_is_smoothing_at_once(window):
    from services.lines.counter import _smooth

    rng = np.random.default_rng(100 + window)
    raw = rng.integers(0, 25, size=120)
    padded = np.concatenate((np.full(window - 1, raw[0]), raw))  # the first frame pads the look-back
    expected = np.array([int(np.median(padded[i:i + window])) for i in range(len(raw))])
    whole, tail = _smooth(raw, tail=[], window=window)
    assert np.array_equal(whole, expected) and whole.dtype == np.int64
    assert tail == ([int(x) for x in raw[-(window - 1):]] if window > 1 else [])
    parts, carried = [], []
    for chunk in np.array_split(raw, [1, 2, 17, 60, 61]):
        smoothed, carried = _smooth(chunk, tail=carried, window=window)
        parts.append(smoothed)
    assert np.array_equal(np.concatenate(parts), expected) and carried == tail
    short, _ = _smooth(np.array([9, 9, 9]), tail=[4], window=window)  # a look-back shorter than the window
    if window > 1:  # is padded with its own first value
        assert short.tolist() == [int(np.median(([4] * (window - 1) + [9, 9, 9])[i:i + window])) for i in range(3)]


@pytest.mark.parametrize(("ts", "counts", "message"), [
    ([0.0, 1.0, 2.0, 3.0], [3, 0, 2, -1], "Frame count -1 at frame 3 (ts 3.0) is negative."),
    ([0.0, 1.0, 2.0, 2.0, 1.5], [1, 2, 3, 4, 5],
     "Frame timestamps must be sorted: frame 4 (ts 1.5) is older than the frame before it (2.0)."),
    ([0.0, 1.0, float("inf")], [1, 2, 3], "Frame timestamp at frame 2 is not a finite number (inf)."),
    ([0.0, 1.0, 2.0], [1.0, 2.0, 2.5], "Frame count 2.5 at frame 2 is not a whole number."),
    ([0.0, 1.0, 2.0], [1.0, float("nan"), 2.0], "Frame count nan at frame 1 is not a whole number."),
    ([0.0, 1.0], ["1", "x"], "Frame counts must be whole numbers: "),
])
def test_bad_frames_are_named_exactly(ts, counts, message):
    with pytest.raises(InvalidInput) as refused:
        count_frames(ts, counts)
    assert str(refused.value).startswith(message), str(refused.value)


def test_frames_given_as_columns_floats_or_booleans_count_as_whole_numbers():
    ts = np.arange(0, 30, 0.2)
    counts = np.where((ts % 15) < 9, np.minimum((ts % 15) * 3, 20), 0).astype(int)
    bins, state = count_frames(ts, counts)
    assert bins
    column_bins, column_state = count_frames(ts.reshape(-1, 1), counts.reshape(-1, 1))  # a column of a table
    assert column_bins == bins and column_state.total == state.total
    float_bins, _ = count_frames(ts.tolist(), counts.astype(float).tolist())  # 3.0 is three trays
    assert float_bins == bins
    flags = np.array([1, 0, 1, 1], dtype=bool)
    assert count_frames([0.0, 1.0, 2.0, 3.0], flags)[1].frames == 4
    with pytest.raises(InvalidInput, match="2 timestamps but 3 counts"):
        count_frames(np.zeros((1, 2)), np.zeros((3, 1), dtype=int))


@pytest.mark.parametrize(("params", "message"), [
    ({"window": 4}, "Counter window must be an odd number of frames >= 1, not 4."),
    ({"window": -1}, "Counter window must be an odd number of frames >= 1, not -1."),
    ({"drop_margin": 0}, "Counter parameter drop_margin must be at least 1, not 0."),
    ({"min_bin_trays": 0}, "Counter parameter min_bin_trays must be at least 1, not 0."),
    ({"plateau_s": 0.0}, "Counter parameter plateau_s must be a positive number of seconds, not 0.0."),
    ({"blind_s": float("inf")}, "Counter parameter blind_s must be a positive number of seconds, not inf."),
    ({"zero_level": -1}, "Counter zero_level must be >= 0, not -1."),
    ({"drop_ratio": 1.0}, "Counter drop_ratio must be in [0, 1), not 1.0."),
    ({"resume_ratio": -0.01}, "Counter resume_ratio must be in [0, 1), not -0.01."),
    ({"min_bin_trays": 3, "zero_level": 3}, "Counter min_bin_trays must be above zero_level."),
])
def test_bad_parameters_are_named_exactly(params, message):
    from services.lines.counter import CounterParams

    with pytest.raises(InvalidInput) as refused:
        CounterParams(**params).check()
    assert str(refused.value) == message


def test_the_smallest_parameters_allowed_are_allowed():
    from services.lines.counter import CounterParams

    CounterParams(window=1, drop_margin=1, min_bin_trays=1, zero_level=0, drop_ratio=0.0, resume_ratio=0.0).check()
    bins, _ = count_frames(np.arange(0, 20, 0.5), [0, 2, 4, 6, 6, 6, 6, 0, 0, 0] * 4,
                           params=CounterParams(window=1, drop_margin=1, min_bin_trays=1, drop_ratio=0.0))
    assert bins

"""The line simulator: its truth is consistent with what it shows, its noise is what was asked for, and
the files it writes are the frame format ingestion reads."""

from __future__ import annotations

import csv
import json
from datetime import datetime

import numpy as np
import pytest

from services.core.errors import InvalidInput
from services.lines.simulator import DEFAULT_START_TS, simulate, write_csv, write_jsonl

CLEAN = dict(miss_rate=0.0, extra_rate=0.0, flicker_rate=0.0, outages=0)


def test_without_noise_the_counts_are_the_truth():
    streams, truth = simulate(lines=2, hours=1, seed=3, **CLEAN)
    for line_id, s in streams.items():
        assert np.array_equal(s.counts, s.visible) and np.array_equal(s.raw_counts, s.counts)
        # between two true bin ends the most trays visible is that bin's truth
        cuts = np.searchsorted(s.ts, s.bin_ends + 0.5)  # past the occlusion's start, before the next bin fills
        peaks = [int(seg.max()) for seg in np.split(s.visible, cuts)]
        assert peaks[: len(s.bin_ends)] == truth[line_id][: len(s.bin_ends)]
        assert len(truth[line_id]) in (len(s.bin_ends), len(s.bin_ends) + 1)
        assert all(18 <= n <= 30 for n in truth[line_id][:-1])
        assert s.open_trays == truth[line_id][-1]
        assert len(s.ts) == 3600 * 30 and s.ts[0] == DEFAULT_START_TS
        assert np.all(np.diff(s.ts) > 0) and np.allclose(s.ts, np.round(s.ts, 3))


def test_same_seed_same_stream_and_lines_differ():
    a, ta = simulate(lines=3, hours=0.5, seed=7)
    b, tb = simulate(lines=3, hours=0.5, seed=7)
    c, _ = simulate(lines=3, hours=0.5, seed=8)
    assert ta == tb and all(np.array_equal(a[k].counts, b[k].counts) for k in a)
    assert not np.array_equal(a["line-1"].counts, c["line-1"].counts)
    assert len({round(s.fill_seconds, 3) for s in a.values()}) == 3  # each line its own pace
    assert list(a) == ["line-1", "line-2", "line-3"]
    named, _ = simulate(lines=["L-north", "L-south"], hours=0.1, seed=1)
    assert list(named) == ["L-north", "L-south"] and named["L-north"].camera_id == "cam-L-north"


def test_the_noise_is_what_was_asked_for():
    streams, _ = simulate(lines=1, hours=2, seed=1, miss_rate=0.1, extra_rate=0.05, flicker_rate=0.0, outages=0)
    s = streams["line-1"]
    seen = s.visible > 0
    shortfall = (s.visible[seen] - s.counts[seen]).astype(float)
    # missed: binomial, extra: Poisson -> mean shortfall = 0.1 * visible - 0.05
    assert np.mean(shortfall) == pytest.approx(0.1 * s.visible[seen].mean() - 0.05, rel=0.05)
    flick, _ = simulate(lines=1, hours=2, seed=1, miss_rate=0.0, extra_rate=0.0, flicker_rate=0.01, outages=0)
    f = flick["line-1"]
    dropped = (f.visible > 0) & (f.counts == 0)
    assert 0.009 < dropped.sum() / (f.visible > 0).sum() < 0.016  # single frames, a quarter of them doubled


def test_occlusion_drops_to_zero_or_a_few_then_climbs():
    streams, _ = simulate(lines=1, hours=2, seed=2, occlusion_s=(1.0, 2.0), **CLEAN)
    s = streams["line-1"]
    during = [s.visible[np.searchsorted(s.ts, e) + 3] for e in s.bin_ends]
    assert set(during) <= {0, 1, 2, 3}
    assert 0.3 < np.mean(np.asarray(during) == 0) < 0.7  # half to zero, half partial


def test_outages_leave_gaps_and_the_truth_unchanged():
    streams, truth = simulate(lines=2, hours=1, seed=4, outages=[(600.0, 90.0), (2000.0, 30.0)])
    clean, clean_truth = simulate(lines=2, hours=1, seed=4, outages=0)
    assert truth == clean_truth  # trays are packed whether or not the camera sees them
    for s in streams.values():
        gaps = np.diff(s.ts)
        assert sorted(np.round(gaps[gaps > 1.0], 1).tolist()) == [30.0, 90.0]
    random_outages, _ = simulate(lines=1, hours=1, seed=4, outages=2, outage_s=(20.0, 20.0))
    gaps = np.diff(random_outages["line-1"].ts)
    assert (gaps > 19.0).sum() in (1, 2)  # two outages (they may overlap)


def test_rate_changes_slow_a_line_down():
    base, truth = simulate(lines=["a", "b"], hours=2, seed=6, fill_seconds=2.0, **CLEAN)
    slow, slow_truth = simulate(lines=["a", "b"], hours=2, seed=6, fill_seconds=2.0,
                                rate_changes={"a": [(1800.0, 3600.0, 0.5)]}, **CLEAN)
    assert sum(slow_truth["a"]) < 0.85 * sum(truth["a"])
    assert slow_truth["b"] == truth["b"]
    with pytest.raises(InvalidInput):
        simulate(lines=["a"], hours=1, rate_changes={"a": [(0.0, 60.0, 0.0)]})


def test_boxes_carry_confidences_and_counts_leave_out_low_ones():
    streams, _ = simulate(lines=1, hours=0.1, seed=2, boxes=True, min_confidence=0.5, junk_rate=0.5)
    s = streams["line-1"]
    per_frame = np.diff(s.box_offsets)
    assert np.array_equal(per_frame, s.raw_counts)
    high = np.add.reduceat((s.box_conf >= 0.5).astype(int), s.box_offsets[:-1])
    high[per_frame == 0] = 0
    assert np.array_equal(high, s.counts)
    assert (s.raw_counts > s.counts).mean() > 0.3
    boxes = s.boxes(int(np.argmax(s.raw_counts)))
    assert len(boxes) == s.raw_counts.max() and all(0 < b["confidence"] < 1 for b in boxes)


def test_write_jsonl_merges_lines_in_time_order(tmp_path):
    streams, _ = simulate(lines=2, hours=0.05, seed=1, outages=0)
    path = tmp_path / "frames.jsonl"
    n = write_jsonl(path, streams)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert n == len(rows) == sum(len(s.ts) for s in streams.values())
    assert set(rows[0]) == {"line_id", "camera_id", "ts", "count"}
    stamps = [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")).timestamp() for r in rows]
    assert stamps == sorted(stamps) and rows[0]["ts"].endswith("Z")
    line1 = [r for r in rows if r["line_id"] == "line-1"]
    assert [r["count"] for r in line1] == streams["line-1"].counts.tolist()
    assert [round(t, 3) for t, r in zip(stamps, rows) if r["line_id"] == "line-1"] == streams["line-1"].ts.tolist()

    part = tmp_path / "part.jsonl"
    lo, hi = streams["line-1"].ts[100], streams["line-1"].ts[200]
    write_jsonl(part, streams, ts_format="epoch", since_ts=lo, until_ts=hi)
    got = [json.loads(line) for line in part.read_text().splitlines()]
    assert len(got) == 200 and all(lo <= r["ts"] < hi for r in got) and isinstance(got[0]["ts"], float)
    assert write_jsonl(part, streams, since_ts=hi, until_ts=hi + 1, append=True) == 60
    assert len(part.read_text().splitlines()) == 260


def test_write_with_boxes_and_csv(tmp_path):
    streams, _ = simulate(lines=1, hours=0.02, seed=1, boxes=True)
    s = streams["line-1"]
    write_jsonl(tmp_path / "b.jsonl", streams)
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert all(r["count"] == len(r["boxes"]) for r in rows)  # with boxes, count is every box reported
    kept = [sum(b["confidence"] >= 0.5 for b in r["boxes"]) for r in rows]
    assert kept == s.counts.tolist()

    n = write_csv(tmp_path / "b.csv", streams, ts_format="epoch")
    with open(tmp_path / "b.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert n == len(table) == len(s.ts)
    assert list(table[0]) == ["line_id", "camera_id", "ts", "count", "boxes"]
    assert [len(json.loads(r["boxes"])) for r in table] == s.raw_counts.tolist()
    write_csv(tmp_path / "plain.csv", streams, boxes=False)
    with open(tmp_path / "plain.csv", newline="") as f:
        plain = list(csv.DictReader(f))
    assert list(plain[0]) == ["line_id", "camera_id", "ts", "count"]
    assert [int(r["count"]) for r in plain] == s.counts.tolist()
    no_boxes, _ = simulate(lines=1, hours=0.01, seed=1)
    with pytest.raises(InvalidInput, match="without boxes"):
        write_jsonl(tmp_path / "x.jsonl", no_boxes, boxes=True)
    with pytest.raises(InvalidInput, match="ts_format"):
        write_csv(tmp_path / "x.csv", no_boxes, ts_format="unix")


@pytest.mark.parametrize(
    "kwargs",
    [dict(lines=0), dict(lines=["a", "a"]), dict(hours=0), dict(fps=-1), dict(miss_rate=1.0),
     dict(extra_rate=-0.1), dict(bin_size=(10, 5)), dict(fill_seconds=0), dict(occlusion_s=(2.0, 1.0))],
)
def test_bad_parameters_raise_invalid_input(kwargs):
    with pytest.raises(InvalidInput):
        simulate(**kwargs)

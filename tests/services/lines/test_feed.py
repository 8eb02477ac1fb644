"""Line-counting ingestion and persistence: files read once and resumably, bad rows counted, the counter
continued from its saved state, pruning and replay. Real SQLite, local files, and the real S3 fixture."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from services.core.config import Workspace, set_setting
from services.core.errors import InvalidInput, NotFound
from services.core.storage import ObjectStore
from services.lines import feed as lines
from services.lines import replay as line_replay
from services.lines import simulator as linesim
from services.lines import sources as line_sources

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
STORE = ObjectStore()


def fill_stream(line: str, bins: list[int], *, t0: float, camera: str = "cam1", hold: int = 8, gap: int = 12,
                step: float = 1.0) -> tuple[list[dict], float]:
    """Frames of bins filled one tray at a time (each count held ``hold`` frames), then hidden (zeros)."""
    frames, t = [], t0
    for size in bins:
        for c in range(1, size + 1):
            for _ in range(hold):
                frames.append({"line_id": line, "camera_id": camera, "ts": t, "count": c})
                t += step
        for _ in range(gap):
            frames.append({"line_id": line, "camera_id": camera, "ts": t, "count": 0})
            t += step
    return frames, t


def jsonl(frames: list[dict]) -> str:
    return "".join(json.dumps(f) + "\n" for f in frames)


def table(db, name: str, order: str) -> list[dict]:
    cols = {"line_bins": "line_id, start_ts, end_ts, trays, reason",
            "line_minutes": "line_id, minute, frames, round(mean_count, 9) AS mean, max_count, trays_binned",
            "line_state": "line_id, state, counted_to_ts",
            "line_files": "uri, offset, size, etag, frames_added, duplicates, skipped, samples, state",
            "line_frames": "line_id, camera_id, ts, count, raw_count",
            "lines": "id, last_frame_ts"}[name]
    return list(db.query(f"SELECT {cols} FROM {name} ORDER BY {order}"))


def snapshot(db) -> dict[str, list[dict]]:
    return {"bins": table(db, "line_bins", "line_id, end_ts"),
            "minutes": table(db, "line_minutes", "line_id, minute"),
            "state": table(db, "line_state", "line_id"),
            "files": table(db, "line_files", "uri"),
            "frames": table(db, "line_frames", "line_id, camera_id, ts"),
            "lines": table(db, "lines", "id")}


def totals(db) -> dict[str, tuple[int, int]]:
    return {s["line_id"]: (s["bins"], s["trays"]) for s in lines.line_summary(db)}


# ---------------------------------------------------------------------------------------------------
# counting through the database


def test_ingest_counts_bins_and_rolls_up_minutes(db, tmp_path):
    frames, _ = fill_stream("L1", [6, 7, 8], t0=T0)
    (tmp_path / "a.jsonl").write_text(jsonl(frames))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["files"] == report["files_read"] == 1
    assert report["frames_added"] == report["rows"] == len(frames)
    assert report["counted"] == {"lines": 1, "frames": len(frames), "bins": 3, "trays": 21}
    bins = table(db, "line_bins", "end_ts")
    assert [b["trays"] for b in bins] == [6, 7, 8]
    assert bins[0]["start_ts"] == T0 and all(b["reason"] == "zero" for b in bins)
    assert [b["start_ts"] for b in bins[1:]] == [b["end_ts"] for b in bins[:-1]]
    minutes = table(db, "line_minutes", "minute")
    assert sum(m["frames"] for m in minutes) == len(frames)
    assert sum(m["trays_binned"] for m in minutes) == 21
    assert max(m["max_count"] for m in minutes) == 8
    expected_mean = {}
    for f in frames:
        expected_mean.setdefault(int(f["ts"] // 60), []).append(f["count"])
    assert {m["minute"]: m["mean"] for m in minutes} == pytest.approx(
        {k: sum(v) / len(v) for k, v in expected_mean.items()})
    (summary,) = lines.line_summary(db, raw_frames=True)
    assert summary["line_id"] == "L1" and summary["frames"] == summary["raw_frames"] == len(frames)
    assert summary["bins"] == 3 and summary["trays"] == 21
    assert summary["last_frame_ts"] == summary["counted_to_ts"] == frames[-1]["ts"]
    assert summary["open_bin"]["trays"] == 0  # the zeros after the last bin: a new, empty bin
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'lines.ingest'").fetchone()[0] == 1


def test_open_bin_is_the_bin_filling_now(db, tmp_path):
    frames, t = fill_stream("L1", [6], t0=T0)
    more = [{"line_id": "L1", "ts": t + i, "count": 1 + i // 8} for i in range(48)]  # up to 6 trays
    (tmp_path / "a.jsonl").write_text(jsonl(frames + more))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    (summary,) = lines.line_summary(db)
    assert summary["trays"] == 6
    assert summary["open_bin"]["trays"] == 6
    assert T0 < summary["open_bin"]["start_ts"] <= t


def test_a_bin_change_hidden_by_an_outage_is_stored_as_estimated_with_its_range(db, tmp_path):
    before, t = fill_stream("L1", [6, 7], t0=T0)  # two bins seen whole (a tray every 8 s): the line's pace
    seen = [{"line_id": "L1", "ts": t + i, "count": 1 + i // 8} for i in range(40)]  # 5 trays, then silence
    t2 = t + 40 + 120  # two minutes without frames: the bin was changed unseen; the new one holds 2 trays
    after = [{"line_id": "L1", "ts": t2 + i, "count": 2 + i // 8} for i in range(80)]
    (tmp_path / "a.jsonl").write_text(jsonl(before + seen + after))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    rows = db.execute("SELECT trays, estimated, trays_low, trays_high FROM line_bins ORDER BY end_ts").fetchall()
    assert [r[0] for r in rows[:2]] == [6, 7] and all(r[1] == 0 and r[2] == r[3] == r[0] for r in rows[:2])
    trays, estimated, low, high = rows[2]
    assert estimated == 1 and low == 5 and low <= trays <= high and high > low
    (summary,) = lines.line_summary(db)
    assert summary["estimated_bins"] == 1 and summary["trays_range"] == (13 + low, 13 + high)


def test_several_cameras_on_one_line_count_once_with_the_larger_count(db, tmp_path):
    frames, _ = fill_stream("L1", [6, 9], t0=T0)
    cam2 = [{**f, "camera_id": "cam2", "count": max(0, f["count"] - 2)} for f in frames]  # partly hidden view
    (tmp_path / "a.jsonl").write_text(jsonl(frames))
    (tmp_path / "b.jsonl").write_text(jsonl(cam2))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["frames_added"] == 2 * len(frames)
    assert report["counted"]["frames"] == len(frames)  # one per timestamp
    assert [b["trays"] for b in table(db, "line_bins", "end_ts")] == [6, 9]


def test_boxes_under_the_minimum_confidence_are_not_counted(db, tmp_path):
    set_setting(db, key="line_min_confidence", value=0.6, actor="t")
    rows = [
        {"line_id": "L1", "ts": T0, "count": 3, "boxes": [{"confidence": 0.9}, {"confidence": 0.6}, {"confidence": 0.2}]},
        {"line_id": "L1", "ts": T0 + 1, "boxes": [{"confidence": 0.59, "x": 1}, {"confidence": 0.95}]},
    ]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["line_id", "camera_id", "ts", "count", "boxes"])
    w.writerow(["L2", "", T0, 2, json.dumps([{"confidence": 0.7}, {"confidence": 0.1}])])
    w.writerow(["L2", "camA", T0 + 1, "", json.dumps([])])
    (tmp_path / "a.jsonl").write_text(jsonl(rows))
    (tmp_path / "b.csv").write_text(buf.getvalue())
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["skipped"] == {} and report["frames_added"] == 4
    got = [(f["line_id"], f["camera_id"], f["count"], f["raw_count"]) for f in table(db, "line_frames", "line_id, ts")]
    assert got == [("L1", "cam1", 2, 3), ("L1", "cam1", 1, 2), ("L2", "cam1", 1, 2), ("L2", "camA", 0, 0)]


# ---------------------------------------------------------------------------------------------------
# bad input


def test_every_bad_row_is_skipped_with_a_counted_visible_reason(db, tmp_path):
    good = [{"line_id": "L1", "ts": T0 + i, "count": 1} for i in range(5)]
    bad = [
        '{"line_id": "L1", "ts": 1700000100, "count": 1',  # malformed (line 6)
        '[1, 2, 3]',  # malformed: not an object
        json.dumps({"ts": T0 + 10, "count": 1}),  # missing_field
        json.dumps({"line_id": "L1", "count": 1}),  # missing_field
        json.dumps({"line_id": "L1", "ts": T0 + 11}),  # missing_field (no count, no boxes)
        json.dumps({"line_id": "L1", "ts": T0 + 12, "count": -1}),  # negative_count
        json.dumps({"line_id": "L1", "ts": T0 + 13, "count": 501}),  # absurd_count
        json.dumps({"line_id": "L1", "ts": T0 + 14, "count": 2.5}),  # bad_count
        json.dumps({"line_id": "L1", "ts": T0 + 15, "count": "many"}),  # bad_count
        json.dumps({"line_id": "L1", "ts": "yesterday", "count": 1}),  # bad_ts
        json.dumps({"line_id": "L1", "ts": T0 + 3 * 86400, "count": 1}),  # future_ts (now = T0)
        json.dumps({"line_id": "L1", "ts": (T0 + 16) * 1000, "count": 1}),  # future_ts: milliseconds
        json.dumps({"line_id": "L1", "ts": "1999-12-31T23:59:59Z", "count": 1}),  # past_ts
        json.dumps({"line_id": "L1", "ts": T0 + 17, "boxes": "nope"}),  # bad_boxes
        json.dumps({"line_id": "L1", "ts": T0 + 18, "boxes": [{"confidence": "high"}]}),  # bad_boxes
    ]
    tail = [{"line_id": "L1", "ts": "2023-11-14T22:14:00Z", "count": 2},  # ISO-8601 = T0 + 40
            {"line_id": "L1", "ts": "2023-11-14T22:14:01", "count": 2}]  # naive = UTC
    text = jsonl(good) + "\n".join(bad) + "\n\n" + jsonl(tail)  # a blank line is not a row
    (tmp_path / "f.jsonl").write_bytes(text.encode() + b'{"line_id": "L1", "ts": 1700000050, "count": "\xff"}\n')
    csv_text = ("line_id,camera_id,ts,count\n"
                "L1,cam2,1700000000,1\n"
                "L1,cam2,1700000001\n"  # malformed: too few values
                "L1,cam2,1700000002,1,9\n"  # malformed: too many values
                ",cam2,1700000003,1\n"  # missing_field
                "L1,cam2,1700000004,600\n")  # absurd_count
    (tmp_path / "g.csv").write_text(csv_text)
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t", now_ts=T0)
    assert report["skipped"] == {"absurd_count": 2, "bad_boxes": 2, "bad_count": 2, "bad_ts": 1, "future_ts": 2,
                                 "malformed": 5, "missing_field": 4, "negative_count": 1, "past_ts": 1}
    assert report["frames_added"] == len(good) + len(tail) + 1
    assert report["rows"] == report["frames_added"] + report["duplicates"] + sum(report["skipped"].values())
    samples = {(s["uri"].rsplit("/", 1)[-1], s["line"]): s["reason"] for s in report["samples"]}
    assert samples[("f.jsonl", 6)] == "malformed"
    assert samples[("f.jsonl", 12)] == "absurd_count"
    assert samples[("f.jsonl", 24)] == "malformed"  # not UTF-8, after the blank line and two good rows
    assert samples[("g.csv", 3)] == "malformed" and samples[("g.csv", 6)] == "absurd_count"
    ms = next(s for s in report["samples"] if s["line"] == 17 and s["uri"].endswith("f.jsonl"))
    assert "milliseconds" in ms["detail"]
    stored = {r["uri"].rsplit("/", 1)[-1]: r for r in table(db, "line_files", "uri")}
    assert json.loads(stored["f.jsonl"]["skipped"])["malformed"] == 3
    assert json.loads(stored["g.csv"]["skipped"]) == {"absurd_count": 1, "malformed": 2, "missing_field": 1}
    assert [s["line"] for s in json.loads(stored["g.csv"]["samples"])] == [3, 4, 5, 6]
    assert len(json.loads(stored["f.jsonl"]["samples"])) == lines.MAX_SAMPLES  # the first few; totals exact
    assert stored["f.jsonl"]["frames_added"] == 7 and stored["f.jsonl"]["state"] == "done"
    ts = [f["ts"] for f in table(db, "line_frames", "ts") if f["camera_id"] == "cam1"]
    assert ts[-2:] == [T0 + 40, T0 + 41]


def test_unknown_line_ids_are_skipped_when_only_known_lines_are_wanted(db, tmp_path):
    (tmp_path / "a.jsonl").write_text(jsonl([{"line_id": "L1", "ts": T0, "count": 1}]))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    (tmp_path / "b.jsonl").write_text(jsonl([{"line_id": "L1", "ts": T0 + 1, "count": 1},
                                             {"line_id": "L9", "ts": T0 + 1, "count": 1}]))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t", known_lines_only=True)
    assert report["skipped"] == {"unknown_line": 1} and report["frames_added"] == 1
    assert report["samples"][0]["line"] == 2
    assert [r["id"] for r in table(db, "lines", "id")] == ["L1"]


def test_unusable_csv_header_is_a_file_error_and_other_files_still_load(db, tmp_path):
    (tmp_path / "a.csv").write_text("line,when,trays\nL1,1700000000,1\n")
    (tmp_path / "b.jsonl").write_text(jsonl([{"line_id": "L1", "ts": T0, "count": 1}]))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["frames_added"] == 1
    (err,) = report["errors"]
    assert err["uri"].endswith("a.csv") and "missing column(s) ts" in err["reason"]


def test_missing_source_raises_not_found(db, tmp_path):
    with pytest.raises(NotFound):
        lines.ingest_source(db, uri=str(tmp_path / "nope"), store=STORE, actor="t")


# ---------------------------------------------------------------------------------------------------
# files read once, resumably


def test_truncated_last_line_is_resumed_after_the_file_grows(db, tmp_path):
    frames, _ = fill_stream("L1", [6, 7], t0=T0)
    text = jsonl(frames)
    path = tmp_path / "live.jsonl"
    cut = len(text) // 2 + 7  # in the middle of a line
    path.write_text(text[:cut])
    first = lines.ingest_source(db, uri=str(path), store=STORE, actor="t")
    assert first["skipped"] == {} and first["pending_files"] == [str(path)]
    (row,) = table(db, "line_files", "uri")
    assert row["state"] == "partial" and row["offset"] == text[:cut].rfind("\n") + 1 and row["size"] == cut
    assert first["frames_added"] == text[:cut].count("\n")
    again = lines.ingest_source(db, uri=str(path), store=STORE, actor="t")  # nothing new yet
    assert again["files_unchanged"] == 1 and again["rows"] == 0
    with path.open("a") as f:
        f.write(text[cut:])
    second = lines.ingest_source(db, uri=str(path), store=STORE, actor="t")
    assert second["skipped"] == {} and second["pending_files"] == []
    assert first["frames_added"] + second["frames_added"] == len(frames)
    assert table(db, "line_files", "uri")[0]["offset"] == len(text)
    assert [b["trays"] for b in table(db, "line_bins", "end_ts")] == [6, 7]


def test_last_line_without_newline(db, tmp_path):
    """A JSON object that parses is whole; a CSV row waits until the file has settled."""
    (tmp_path / "a.jsonl").write_text(jsonl([{"line_id": "L1", "ts": T0, "count": 1}]).rstrip("\n")
                                      + "\n" + json.dumps({"line_id": "L1", "ts": T0 + 1, "count": 1}))
    (tmp_path / "b.csv").write_text("line_id,ts,count\nL2,1700000000,1\nL2,1700000001,1")
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["frames_added"] == 3 and report["pending_files"] == [str(tmp_path / "b.csv")]
    later = os.stat(tmp_path / "b.csv").st_mtime + lines.SETTLE_SECONDS + 1
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t", now_ts=later)
    assert report["frames_added"] == 1 and report["pending_files"] == [] and report["skipped"] == {}
    assert lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t", now_ts=later)["rows"] == 0


def test_reingesting_changes_nothing(db, tmp_path, monkeypatch):
    monkeypatch.setattr(line_sources, "CHUNK_BYTES", 4096)  # several transactions per file
    a, t = fill_stream("L1", [6, 7, 8], t0=T0)
    b, _ = fill_stream("L2", [9, 5], t0=T0)
    (tmp_path / "a.jsonl").write_text(jsonl(a) + '{"line_id": "L1", "ts": oops}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(jsonl(b))
    (tmp_path / "notes.txt").write_text("not frames")
    first = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert first["files"] == 2 and first["skipped"] == {"malformed": 1}
    before = snapshot(db)
    assert len(before["bins"]) == 5
    audit = db.execute("SELECT count(*) FROM audit_log").fetchone()[0]
    for _ in range(2):
        again = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
        assert again["files_unchanged"] == 2 and again["rows"] == 0 and again["frames_added"] == 0
        assert again["counted"]["frames"] == 0
    assert snapshot(db) == before
    assert db.execute("SELECT count(*) FROM audit_log").fetchone()[0] == audit  # polling does not flood the log
    # the same frames under another file name: all duplicates, nothing counted twice
    (tmp_path / "copy.jsonl").write_text(jsonl(a))
    dup = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert dup["duplicates"] == len(a) and dup["frames_added"] == 0
    after = snapshot(db)
    assert {k: after[k] for k in ("bins", "minutes", "state", "frames")} == \
        {k: before[k] for k in ("bins", "minutes", "state", "frames")}


def test_a_rewritten_file_is_reported_not_reread(db, tmp_path):
    frames, _ = fill_stream("L1", [6, 7], t0=T0)
    path = tmp_path / "a.jsonl"
    path.write_text(jsonl(frames))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    before = snapshot(db)
    path.write_text(jsonl(frames[:20]))  # smaller: rewritten
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["files_changed"] == [str(path)] and report["rows"] == 0
    assert table(db, "line_files", "uri")[0]["state"] == "changed"
    assert "shrank" in json.loads(table(db, "line_files", "uri")[0]["samples"])[-1]["detail"]
    assert lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")["files_changed"] == [str(path)]
    assert snapshot(db)["bins"] == before["bins"]
    # bigger but different before the offset: the byte before the offset is no longer a line end
    other = tmp_path / "b.jsonl"
    other.write_text(jsonl(frames[:10]))
    lines.ingest_source(db, uri=str(other), store=STORE, actor="t")
    other.write_text(" " + jsonl(frames[:12]))
    assert lines.ingest_source(db, uri=str(other), store=STORE, actor="t")["files_changed"] == [str(other)]
    # forgetting the file reads it again: the old frames are duplicates, totals unchanged
    lines.forget_file(db, uri=str(path), actor="t")
    again = lines.ingest_source(db, uri=str(path), store=STORE, actor="t")
    assert again["duplicates"] == 20 and again["frames_added"] == 0
    assert snapshot(db)["bins"] == before["bins"]
    with pytest.raises(NotFound):
        lines.forget_file(db, uri=str(tmp_path / "never.jsonl"), actor="t")


# ---------------------------------------------------------------------------------------------------
# order, duplicates, restarts


def test_out_of_order_and_duplicate_frames(db, tmp_path):
    frames, t = fill_stream("L1", [6, 7, 8], t0=T0)
    shuffled = list(frames)
    for i in range(0, len(shuffled) - 1, 3):  # swap neighbours throughout
        shuffled[i], shuffled[i + 1] = shuffled[i + 1], shuffled[i]
    shuffled += frames[10:40]  # resent frames
    (tmp_path / "a.jsonl").write_text(jsonl(shuffled))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["duplicates"] == 30 and report["frames_added"] == len(frames) and report["late"] == 0
    assert [b["trays"] for b in table(db, "line_bins", "end_ts")] == [6, 7, 8]
    before = snapshot(db)
    # frames that arrive after the counter passed their time: stored, counted as late, bins unchanged
    late = [{"line_id": "L1", "camera_id": "cam9", "ts": T0 + 5.5, "count": 30},
            {"line_id": "L1", "camera_id": "cam1", "ts": T0 + 6.5, "count": 30}]
    fresh, _ = fill_stream("L1", [5], t0=t)
    (tmp_path / "b.jsonl").write_text(jsonl(late + fresh + frames[:3]))
    report = lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    assert report["late"] == 2 and report["duplicates"] == 3
    assert report["frames_added"] == 2 + len(fresh)
    assert json.loads(next(r for r in table(db, "line_files", "uri") if r["uri"].endswith("b.jsonl"))["skipped"]) \
        == {"late": 2}
    after = snapshot(db)
    assert after["bins"][:3] == before["bins"] and [b["trays"] for b in after["bins"][3:]] == [5]
    assert sum(m["frames"] for m in after["minutes"]) == len(frames) + len(fresh)  # late frames not rolled up


def _ingest_files(db, folder: Path, names: list[str]) -> None:
    for name in names:
        lines.ingest_source(db, uri=str(folder / name), store=STORE, actor="t")


def test_restart_mid_stream_gives_the_same_bins_and_totals(tmp_path, monkeypatch):
    monkeypatch.setattr(lines, "COUNT_BATCH", 97)  # several counting transactions per line
    monkeypatch.setattr(line_sources, "CHUNK_BYTES", 2048)
    src = tmp_path / "src"
    src.mkdir()
    streams = {"L1": fill_stream("L1", [6, 7, 8, 9, 10, 6], t0=T0)[0],
               "L2": fill_stream("L2", [12, 5, 7, 11], t0=T0 + 3, hold=6)[0]}
    names = []
    for part in range(6):  # six files, each the next slice of both lines' streams
        rows = [f for s in streams.values() for f in s[part * len(s) // 6 : (part + 1) * len(s) // 6]]
        names.append(f"part{part}.jsonl")
        (src / names[-1]).write_text(jsonl(sorted(rows, key=lambda f: f["ts"])))
    one = Workspace.open(tmp_path / "one").db()
    _ingest_files(one, src, names)
    two = Workspace.open(tmp_path / "two")
    conn = two.db()
    _ingest_files(conn, src, names[:3])
    half = totals(conn)
    conn.close()
    conn = two.db()  # a restart: state from the database
    _ingest_files(conn, src, names[3:])
    expect = {"L1": 6 + 7 + 8 + 9 + 10 + 6, "L2": 12 + 5 + 7 + 11}
    assert {k: v[1] for k, v in totals(one).items()} == expect
    assert half != totals(conn)
    a, b = snapshot(one), snapshot(conn)
    for key in ("bins", "minutes", "state", "frames", "lines"):
        assert a[key] == b[key], key
    assert totals(one) == totals(conn)


def test_a_crash_neither_loses_nor_double_counts_a_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(line_sources, "CHUNK_BYTES", 2048)
    frames, _ = fill_stream("L1", [6, 7, 8, 9], t0=T0)
    src = tmp_path / "a.jsonl"
    src.write_text(jsonl(frames))
    clean = Workspace.open(tmp_path / "clean").db()
    lines.ingest_source(clean, uri=str(src), store=STORE, actor="t")
    ws = Workspace.open(tmp_path / "crashy")
    db = ws.db()
    real_store, calls = lines._store_chunk, []

    def crash_on_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("power cut")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(lines, "_store_chunk", crash_on_third_chunk)
    with pytest.raises(RuntimeError):
        lines.ingest_source(db, uri=str(src), store=STORE, actor="t")
    stored = db.execute("SELECT count(*) FROM line_frames").fetchone()[0]
    assert 0 < stored == db.execute("SELECT offset FROM line_files").fetchone()[0] // len(jsonl(frames[:1]))
    db.close()
    db = ws.db()  # the counter also fails once, after the frames are stored
    real_count, failed = lines.linecount.count_frames, []

    def count_fails_once(*args, **kwargs):
        if not failed:
            failed.append(1)
            raise RuntimeError("killed while counting")
        return real_count(*args, **kwargs)

    monkeypatch.setattr(lines.linecount, "count_frames", count_fails_once)
    with pytest.raises(RuntimeError):
        lines.ingest_source(db, uri=str(src), store=STORE, actor="t")
    assert db.execute("SELECT count(*) FROM line_frames").fetchone()[0] == len(frames)
    assert db.execute("SELECT count(*) FROM line_bins").fetchone()[0] == 0
    report = lines.ingest_source(db, uri=str(src), store=STORE, actor="t")  # nothing new to read: counts
    assert report["rows"] == 0 and report["counted"]["bins"] == 4
    a, b = snapshot(clean), snapshot(db)
    for key in ("bins", "minutes", "state", "frames", "lines"):
        assert a[key] == b[key], key
    assert {k: v for k, v in a["files"][0].items() if k != "uri"} == {k: v for k, v in b["files"][0].items()
                                                                      if k != "uri"}


# ---------------------------------------------------------------------------------------------------
# retention


def test_prune_keeps_every_total(db, tmp_path):
    old, t = fill_stream("L1", [6, 7], t0=T0)
    (tmp_path / "a.jsonl").write_text(jsonl(old))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    uncounted = [{"line_id": "L1", "ts": t + i, "count": 1} for i in range(5)]
    (tmp_path / "b.jsonl").write_text(jsonl(uncounted))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t", count=False)
    before = lines.line_summary(db)
    minutes = table(db, "line_minutes", "minute")
    bins = table(db, "line_bins", "end_ts")
    now = t + 8 * 86400
    assert lines.prune_raw(db, now_ts=now) == len(old)  # default retention: 7 days; uncounted frames stay
    assert lines.prune_raw(db, now_ts=now) == 0
    after = lines.line_summary(db, raw_frames=True)
    assert after[0]["raw_frames"] == len(uncounted)
    for key in ("frames", "bins", "trays", "last_frame_ts", "counted_to_ts", "open_bin"):
        assert after[0][key] == before[0][key], key
    assert table(db, "line_minutes", "minute") == minutes and table(db, "line_bins", "end_ts") == bins
    # the frames left are counted later exactly as if nothing had been pruned
    lines.count_lines(db)
    assert lines.line_summary(db)[0]["frames"] == len(old) + len(uncounted)
    assert lines.prune_raw(db, older_than_days=0, now_ts=t + 10) == 5
    with pytest.raises(InvalidInput):
        lines.prune_raw(db, older_than_days=-1)


def test_prune_respects_the_retention_setting(db, tmp_path):
    frames, t = fill_stream("L1", [6], t0=T0)
    (tmp_path / "a.jsonl").write_text(jsonl(frames))
    lines.ingest_source(db, uri=str(tmp_path), store=STORE, actor="t")
    set_setting(db, key="line_raw_retention_days", value=2, actor="t")
    assert lines.prune_raw(db, now_ts=T0 + 86400) == 0
    assert lines.prune_raw(db, now_ts=T0 + 2 * 86400 + 30) == 30  # frames older than two days
    assert lines.line_summary(db)[0]["frames"] == len(frames)


# ---------------------------------------------------------------------------------------------------
# replay


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.on_wait = None

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.waits.append(round(s, 9))
        self.now += s
        if self.on_wait:
            self.on_wait()


def test_replay_paces_by_frame_time(tmp_path):
    rows = [{"line_id": "L1", "ts": T0 + dt, "count": 1} for dt in (0, 0.5, 2.0, 2.0, 1.0, 5.0)]
    src = tmp_path / "src.jsonl"
    src.write_text(jsonl(rows) + "garbage\n")
    fake = FakeTime()
    out = line_replay.replay(src=str(src), dst=str(tmp_path / "out" / "dst.jsonl"), speed=2.0, store=STORE,
                       sleep=fake.sleep, clock=fake.clock)
    assert fake.waits == [0.25, 0.75, 1.5]  # the older frame and the garbage line do not wait
    assert out == {"lines": 7, "frames": 6, "waited_s": 2.5, "span_s": 5.0, "speed": 2.0,
                   "dst": str(tmp_path / "out" / "dst.jsonl")}
    assert (tmp_path / "out" / "dst.jsonl").read_text() == src.read_text()
    csv_src = tmp_path / "src.csv"
    csv_src.write_text("line_id,ts,count\nL1,2023-11-14T22:13:20Z,1\nL1,2023-11-14T22:13:23Z,2\n")
    fake = FakeTime()
    line_replay.replay(src=str(csv_src), dst=str(tmp_path / "dst.csv"), store=STORE, sleep=fake.sleep, clock=fake.clock)
    assert fake.waits == [3.0] and (tmp_path / "dst.csv").read_text() == csv_src.read_text()
    with pytest.raises(InvalidInput):
        line_replay.replay(src=str(src), dst=str(tmp_path / "x.jsonl"), speed=0, store=STORE)


def test_replayed_file_ingested_while_it_is_written_counts_like_the_whole_file(tmp_path):
    frames, _ = fill_stream("L1", [6, 7, 8], t0=T0, step=0.1)
    src = tmp_path / "src.jsonl"
    src.write_text(jsonl(frames))
    live = Workspace.open(tmp_path / "live").db()
    dst = tmp_path / "feed" / "live.jsonl"
    fake = FakeTime()
    polls = []
    fake.on_wait = lambda: polls.append(lines.ingest_source(live, uri=str(dst.parent), store=STORE, actor="t"))
    line_replay.replay(src=str(src), dst=str(dst), speed=4.0, store=STORE, sleep=fake.sleep, clock=fake.clock,
                 min_wait_s=0.5)
    lines.ingest_source(live, uri=str(dst.parent), store=STORE, actor="t")
    assert len(polls) > 5 and sum(p["files_read"] for p in polls) > 5
    whole = Workspace.open(tmp_path / "whole").db()
    lines.ingest_source(whole, uri=str(src), store=STORE, actor="t")
    assert snapshot(live)["bins"] == snapshot(whole)["bins"]
    # the last bin's fall is 1.2 s old at the end of the file: it is finished only once it cannot be an
    # occlusion any more (CounterParams.resume_s), in the live feed as in the whole file
    assert [b["trays"] for b in snapshot(live)["bins"]] == [6, 7]
    assert totals(live) == totals(whole)


# ---------------------------------------------------------------------------------------------------
# S3


def test_s3_prefix_read_once_resumed_when_rewritten_larger_and_reported_when_smaller(db, s3_bucket):
    store, bucket = s3_bucket
    a, _ = fill_stream("L1", [6, 7], t0=T0)
    b, _ = fill_stream("L2", [8], t0=T0)
    put = lambda key, text: store.write(f"s3://{bucket}/{key}", text.encode())  # noqa: E731
    put("frames/a.jsonl", jsonl(a[:50]))
    put("frames/b.csv", "line_id,camera_id,ts,count\n" + "".join(
        f"{f['line_id']},{f['camera_id']},{f['ts']},{f['count']}\n" for f in b) + "L2,cam1,bad,1\n")
    put("frames/readme.txt", "skip me")
    put("other/c.jsonl", jsonl(a))
    prefix = f"s3://{bucket}/frames"
    first = lines.ingest_source(db, uri=prefix, store=store, actor="t")
    assert first["files"] == 2 and first["frames_added"] == 50 + len(b) and first["skipped"] == {"bad_ts": 1}
    assert first["samples"][0]["line"] == len(b) + 2
    again = lines.ingest_source(db, uri=prefix, store=store, actor="t")
    assert again["files_unchanged"] == 2 and again["rows"] == 0
    put("frames/a.jsonl", jsonl(a))  # rewritten with more frames: resumed at the offset
    grown = lines.ingest_source(db, uri=prefix, store=store, actor="t")
    assert grown["frames_added"] == len(a) - 50 and grown["duplicates"] == 0
    assert totals(db) == {"L1": (2, 13), "L2": (1, 8)}
    files = {r["uri"]: r for r in table(db, "line_files", "uri")}
    assert files[f"{prefix}/a.jsonl"]["etag"] == store.client.head_object(
        Bucket=bucket, Key="frames/a.jsonl")["ETag"].strip('"')
    put("frames/a.jsonl", jsonl(a[:10]))
    assert lines.ingest_source(db, uri=prefix, store=store, actor="t")["files_changed"] == [f"{prefix}/a.jsonl"]
    single = lines.ingest_source(db, uri=f"s3://{bucket}/other/c.jsonl", store=store, actor="t")
    assert single["files"] == 1 and single["duplicates"] == len(a)
    assert totals(db) == {"L1": (2, 13), "L2": (1, 8)}


def test_replay_to_s3_writes_the_whole_file(s3_bucket, tmp_path):
    store, bucket = s3_bucket
    rows = [{"line_id": "L1", "ts": T0 + dt, "count": 1} for dt in range(0, 40, 2)]
    src = tmp_path / "src.jsonl"
    src.write_text(jsonl(rows))
    fake = FakeTime()
    dst = f"s3://{bucket}/feed/live.jsonl"
    out = line_replay.replay(src=str(src), dst=dst, speed=1.0, store=store, sleep=fake.sleep, clock=fake.clock,
                       s3_flush_s=10)
    assert out["frames"] == 20 and sum(fake.waits) == pytest.approx(38.0)
    assert store.read(dst) == src.read_bytes()


# ---------------------------------------------------------------------------------------------------
# simulated plant


def test_simulated_plant_matches_the_truth_across_a_restart(ws, tmp_path):
    """Three lines with flicker, misses, extra and low-confidence boxes, occlusion and outages, written as
    half-hour files (JSON Lines with boxes and ISO time, CSV with counts and epoch time), ingested in two runs
    with a restart."""
    hours = 2.0
    streams, truth = linesim.simulate(lines=3, hours=hours, fps=15, seed=7, boxes=True, outages=2,
                                      flicker_rate=0.003)
    start = linesim.DEFAULT_START_TS
    src = tmp_path / "feed"
    src.mkdir()
    slices = int(hours * 2)
    for k in range(slices):
        lo, hi = start + k * 1800, start + (k + 1) * 1800 if k < slices - 1 else None
        if k % 2:
            linesim.write_csv(src / f"{k:02d}.csv", streams, ts_format="epoch", boxes=False, since_ts=lo,
                              until_ts=hi)
        else:
            linesim.write_jsonl(src / f"{k:02d}.jsonl", streams, since_ts=lo, until_ts=hi)
    names = sorted(p.name for p in src.iterdir())
    conn = ws.db()
    first = [lines.ingest_source(conn, uri=str(src / n), store=STORE, actor="t") for n in names[: slices // 2]]
    conn.close()
    conn = ws.db()
    rest = [lines.ingest_source(conn, uri=str(src / n), store=STORE, actor="t") for n in names[slices // 2 :]]
    reports = first + rest
    n_frames = sum(len(s.ts) for s in streams.values())
    assert sum(r["frames_added"] for r in reports) == n_frames
    assert all(r["skipped"] == {} and r["duplicates"] == 0 and r["late"] == 0 for r in reports)
    stored = dict(conn.execute("SELECT line_id, SUM(count) FROM line_frames GROUP BY line_id").fetchall())
    assert stored == {k: int(s.counts.sum()) for k, s in streams.items()}  # the confidence filter as simulated
    for summary in lines.line_summary(conn):
        want = sum(truth[summary["line_id"]])
        got = summary["trays"] + summary["open_bin"]["trays"]
        assert abs(got - want) <= 0.01 * want, (summary["line_id"], got, want)
        assert summary["frames"] == len(streams[summary["line_id"]].ts)
    # the restart changed nothing: one pass over the same files gives the same bins
    whole = Workspace.open(tmp_path / "whole").db()
    lines.ingest_source(whole, uri=str(src), store=STORE, actor="t")
    assert snapshot(whole)["bins"] == snapshot(conn)["bins"]
    assert snapshot(whole)["minutes"] == snapshot(conn)["minutes"]

"""Read models for the line throughput dashboard and its CSV export.

Sources: ``line_bins`` (every completed bin: start, end, trays), ``line_minutes`` (per-minute roll-ups of
the detector frames, used to tell "no data" from "no production"), ``line_state`` (the counter's persisted
state: the bin filling now), ``lines`` (last frame time) and ``line_targets``. Each line's bins are read
once, on the ``(line_id, end_ts)`` index, and summed per bucket, shift and day in numpy: 30 days of 10
lines (432,000 minute roll-ups, 346,000 bins) take about 0.35 s.

Times are epoch seconds, UTC. A range ``[since_ts, until_ts)`` takes the bins that *ended* in it.

Two tray figures:

* **trays** (binned): the trays of the bins completed in a period, exact and auditable (a bin counts in
  the period, shift and day of its end).
* **trays placed** (an estimate): every bin's trays spread evenly over the bin's life (its start to its
  end; the open bin's from its start to the last frame counted), summed over the period. Over any split
  of time it adds up to the binned trays plus those in the open bin, but it puts a bin's trays in the
  minutes they were placed in, so a rate over 5 or 20 minutes is meaningful even when a bin takes 10
  minutes to fill, and a bin straddling a shift change is shared by both shifts. Rates (trays per hour,
  alerts) and over/under production against target use it. A line whose feed stops places nothing
  after its last frame.

Shifts are in ``services.core.shifts``, targets in ``services.lines.targets``, alerts in ``services.lines.alerts``,
the sums over a line's bins in ``services.lines.bin_sums``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlite_utils

from services.core.authz import require
from services.core.config import get_settings
from services.core.errors import InvalidInput
from services.core.shifts import DAY_S, Shift, parse_shifts, shift_instances, shift_of
from services.lines import bin_sums
from services.lines.targets import list_lines, targets

BUCKET_MINUTES = (5, 10, 15, 30, 60, 120, 180, 360, 720, 1440)  # the automatic bucket sizes
TARGET_POINTS = 240  # the automatic bucket gives at most about this many points per line
TYPICAL_BINS = 20  # the typical bin size is the mean of this many latest bins


# ------------------------------------------------------------------------------------------ dashboard


def choose_bucket_minutes(span_s: float) -> int:
    """The smallest bucket (5 minutes to a day) giving at most ``TARGET_POINTS`` points over ``span_s``."""
    for minutes in BUCKET_MINUTES:
        if span_s / (minutes * 60) <= TARGET_POINTS:
            return minutes
    return BUCKET_MINUTES[-1]


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _pct(actual: float, expected: float | None) -> float | None:
    return None if not expected else (actual - expected) / expected * 100.0


def dashboard_data(
    db: sqlite_utils.Database,
    *,
    actor: str,
    since_ts: float,
    until_ts: float,
    now_ts: float | None = None,
    bucket_minutes: int | None = None,
    line_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything the line dashboard shows for ``[since_ts, until_ts)``, per line (``line_ids``, default all):

    ``{"since_ts", "until_ts", "now_ts", "bucket_minutes", "settings": {alert_pct, alert_minutes,
    silent_seconds}, "silent": [line ids], "lines": [per line]}``; per line:

    * ``line_id, name, last_frame_ts, silent`` (no frame for ``line_silent_seconds`` before now, or never),
      ``silent_for_s``;
    * ``series``: per bucket (whole multiples of the bucket from the epoch, so the first one may start before
      ``since_ts``; the last one is cut at now) ``start_ts, end_ts, bins, trays_binned, trays_placed,
      minutes_observed, trays_per_hour`` (placed trays per hour; None for a bucket without any minute
      roll-up: no data, not zero production);
    * ``targets``: the target segments in range ``shift, start_ts, end_ts, trays_per_hour`` (clipped);
    * ``bins``, ``trays``: completed in range; ``typical_bin_trays``: mean of the latest 20 bins (any time);
      ``open_bin``: ``{start_ts, trays}`` of the bin filling now (from ``line_state``) or None;
    * ``shifts``: per shift instance overlapping the range up to now ``shift, start_ts, end_ts, bins, trays,
      trays_placed, target_per_hour, hours_observed, expected, vs_target_pct, current`` (hours_observed: the
      hours of the shift inside the range and before now in which the feed was seen, i.e. with minute
      roll-ups; expected = target × hours_observed, None without a target or an hour seen; vs_target_pct =
      (placed − expected) / expected × 100, None when nothing is expected: a shift the counter never saw
      is not -100 %); bins outside every shift form a row with shift None;
    * ``days``: per UTC day ``day, start_ts, bins, trays, trays_placed``;
    * ``expected, trays_placed_targeted, vs_target_pct``: over the shifts that have a target;
    * ``now``: the rate over the trailing ``line_alert_minutes`` against the target of the current shift:
      ``shift, target_per_hour, rate_per_hour, vs_target_pct, window_minutes`` (shift None outside shifts).

    Raises InvalidInput for an empty range or a bucket under one minute.
    """
    require(db, actor=actor, action="lines.read")
    query = _dashboard_query(db, since_ts=since_ts, until_ts=until_ts, now_ts=now_ts, bucket_minutes=bucket_minutes)
    lines = _selected_lines(db, line_ids)
    ids = [ln["line_id"] for ln in lines]
    tg = targets(db)
    windows = _dashboard_windows(query)
    open_bins = bin_sums.open_bins(db, ids)
    sums = {line: _line_sums(db, line, query=query, windows=windows, opened=open_bins.get(line)) for line in ids}
    ctx = _Context(query=query, windows=windows, targets=tg, open_bins=open_bins,
                   typical=_typical_bin_trays(db, ids_json=json.dumps(ids)), current=shift_of(query.now, query.shifts))
    out_lines = [_line_view(ln, sums[ln["line_id"]], ctx) for ln in lines]
    return {
        "since_ts": query.since, "until_ts": query.until, "now_ts": query.now, "bucket_minutes": query.bucket_minutes,
        "settings": {"alert_pct": float(query.settings["line_alert_pct"]), "alert_minutes": query.window_min,
                     "silent_seconds": query.silent_s},
        "silent": [ln["line_id"] for ln in out_lines if ln["silent"]],
        "lines": out_lines,
    }


@dataclass(frozen=True)
class _Query:
    """A checked dashboard request: its range, now, the bucket and the settings it reads."""

    since: float
    until: float
    now: float
    end: float  # min(until, now): nothing is measured after now
    bucket_minutes: int
    shifts: list[Shift]
    silent_s: float
    window_min: int  # the trailing window of the "now" rate (line_alert_minutes)
    settings: dict[str, Any]

    @property
    def bucket_s(self) -> int:
        return self.bucket_minutes * 60


def _dashboard_query(db: sqlite_utils.Database, *, since_ts: float, until_ts: float, now_ts: float | None,
                     bucket_minutes: int | None) -> _Query:
    """The request checked against the settings. Raises InvalidInput for an empty range or a bucket under a minute."""
    now = time.time() if now_ts is None else float(now_ts)
    since, until = float(since_ts), float(until_ts)
    if until <= since:
        raise InvalidInput("The time range is empty: its end is not after its start.")
    if bucket_minutes is not None and (isinstance(bucket_minutes, bool) or int(bucket_minutes) < 1):
        raise InvalidInput(f"A bucket must be at least one minute, got {bucket_minutes!r}.")
    settings = get_settings(db)
    shifts = parse_shifts(settings["shifts"])
    silent_s = float(settings["line_silent_seconds"])
    window_min = int(settings["line_alert_minutes"])
    bm = int(bucket_minutes) if bucket_minutes is not None else choose_bucket_minutes(until - since)
    return _Query(since=since, until=until, now=now, end=min(until, now), bucket_minutes=bm, shifts=shifts,
                  silent_s=silent_s, window_min=window_min, settings=settings)


def _selected_lines(db: sqlite_utils.Database, line_ids: Sequence[str] | None) -> list[dict[str, Any]]:
    """The registered lines (``list_lines``), only those of ``line_ids`` when given."""
    lines = list_lines(db)
    if line_ids is None:
        return lines
    wanted = set(line_ids)
    return [ln for ln in lines if ln["line_id"] in wanted]


@dataclass(frozen=True)
class _Windows:
    """The periods of the dashboard and the distinct windows over which trays placed are summed."""

    first: int  # start of the first bucket (a whole multiple of the bucket, at or before since)
    buckets: list[tuple[int, float, float]]  # (k, start, end): whole buckets, the last one cut at now
    instances: list[dict[str, Any]]  # shift instances in range that start before now
    day_starts: list[int]  # UTC days in range, up to now
    index: dict[tuple[float, float], int]  # every distinct window -> its position
    shift_window: dict[tuple[int, float], tuple[float, float]]  # (shift index, instance start) -> window
    day_window: dict[int, tuple[float, float]]  # day start -> window
    trailing_window: tuple[float, float]  # the trailing line_alert_minutes before now
    lo: float  # bins are read from here ...
    hi: float  # ... to here
    starts: np.ndarray  # the windows' starts, by position
    ends: np.ndarray  # their ends


def _dashboard_windows(query: _Query) -> _Windows:
    """Buckets, shift instances and days in range and the trailing window, each window indexed once."""
    since, end, bs = query.since, query.end, query.bucket_s
    buckets: list[tuple[int, float, float]] = []
    first = math.floor(since / bs) * bs
    if end > since:
        for k in range(math.floor(since / bs), math.ceil(end / bs)):
            b0, b1 = k * bs, min((k + 1) * bs, end)
            if b1 > b0:
                buckets.append((k, float(b0), float(b1)))
    instances = [inst for inst in shift_instances(since, query.until, query.shifts) if inst["start_ts"] < end]
    day_starts = [d * DAY_S for d in range(math.floor(since / DAY_S), math.ceil(end / DAY_S))] if end > since else []
    index: dict[tuple[float, float], int] = {}

    def window(t0: float, t1: float) -> tuple[float, float]:
        index.setdefault((float(t0), float(t1)), len(index))
        return float(t0), float(t1)

    for _, b0, b1 in buckets:
        window(b0, b1)
    shift_window = {(inst["index"], inst["start_ts"]): window(max(inst["start_ts"], since), min(inst["end_ts"], end))
                    for inst in instances}
    day_window = {d: window(max(d, since), min(d + DAY_S, end)) for d in day_starts}
    trailing_window = window(query.now - query.window_min * 60, query.now)
    spans = list(index)
    return _Windows(first=first, buckets=buckets, instances=instances, day_starts=day_starts, index=index,
                    shift_window=shift_window, day_window=day_window, trailing_window=trailing_window,
                    lo=min([t0 for t0, _ in spans] + [first]), hi=max([t1 for _, t1 in spans] + [query.until]),
                    starts=np.array([t0 for t0, _ in spans]), ends=np.array([t1 for _, t1 in spans]))


@dataclass(frozen=True)
class _LineSums:
    """One line's bins summed for the dashboard."""

    placed: dict[int, float]  # trays placed per window position (non-zero only), the open bin included
    seen_s: dict[tuple[float, float], float]  # shift window -> its seconds with minute roll-ups (the feed seen)
    minutes_by_bucket: dict[int, int]  # bucket k -> minute roll-ups in it
    # (bins, trays, estimated bins, trays low, trays high): see bin_sums.group_sums
    by_bucket: dict[int, tuple[int, ...]]  # bucket k -> sums of bins ended in it (buckets from ``first``)
    by_day: dict[int, tuple[int, ...]]  # UTC day number -> sums of bins ended in it, in range
    by_shift: dict[tuple[int, float] | None, tuple[int, ...]]  # (shift index, instance start) or None: outside
    total: tuple[int, ...]  # sums of the bins ended in range


def _line_sums(db: sqlite_utils.Database, line: str, *, query: _Query, windows: _Windows,
               opened: tuple[float, float, int] | None) -> _LineSums:
    """One read of the line's bins, every sum in numpy; ``opened``: its open bin (see ``bin_sums.open_bins``)."""
    arr = bin_sums.bin_arrays(db, line, windows.lo, windows.hi)
    placed = (bin_sums.placed_until(arr, windows.ends) - bin_sums.placed_until(arr, windows.starts) if len(arr)
              else np.zeros(len(windows.index)))
    placed_in = {i: float(value) for i, value in enumerate(placed) if value}
    if opened is not None:
        start, last, trays_now = opened
        for i, (t0, t1) in enumerate(windows.index):
            share = bin_sums.spread(trays_now, start, last, t0, t1)
            if share:
                placed_in[i] = placed_in.get(i, 0.0) + share
    ends = arr[:, 1]
    in_buckets = (ends >= windows.first) & (ends < query.until)
    by_bucket = bin_sums.group_sums(np.floor(ends[in_buckets] / query.bucket_s).astype(np.int64), arr[in_buckets])
    in_range = (ends >= query.since) & (ends < query.until)
    by_day = bin_sums.group_sums(np.floor(ends[in_range] / DAY_S).astype(np.int64), arr[in_range])
    sidx, sstart = bin_sums.shift_keys(ends[in_range], query.shifts)
    key = np.where(sidx >= 0, sstart * 64 + sidx, -1)  # shift index < 64: one integer per (instance, shift)
    by_shift: dict[tuple[int, float] | None, tuple[int, ...]] = {}
    total = np.zeros(5, np.int64)
    for code, sums in bin_sums.group_sums(key, arr[in_range]).items():
        by_shift[None if code < 0 else (code % 64, float(code // 64))] = sums
        total += sums
    bm = query.bucket_minutes
    shift_windows = sorted(set(windows.shift_window.values()))
    spans = [(k * bm, (k + 1) * bm) for k, _, _ in windows.buckets]
    spans += [(math.floor(t0 / 60), math.ceil(t1 / 60)) for t0, t1 in shift_windows]
    counts = _minutes_seen(db, line, spans)
    buckets = len(windows.buckets)
    return _LineSums(placed=placed_in, minutes_by_bucket={k: int(counts[i, 0]) for i, (k, _, _) in enumerate(windows.buckets)},
                     seen_s={w: _seconds_seen(w, counts[buckets + i]) for i, w in enumerate(shift_windows)},
                     by_bucket=by_bucket, by_day=by_day, by_shift=by_shift,
                     total=tuple(int(x) for x in total))


def _minutes_seen(db: sqlite_utils.Database, line: str, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per span of epoch minutes [first, stop): (minute roll-ups in it, 1 if its first minute has one, 1 if its
    last minute has one), counted on the (line_id, minute) key."""
    if not spans:
        return np.zeros((0, 3), dtype=np.int64)
    rows = db.execute(
        "SELECT (SELECT COUNT(*) FROM line_minutes m WHERE m.line_id = :line AND m.minute >= json_extract(s.value, "
        "'$[0]') AND m.minute < json_extract(s.value, '$[1]')), EXISTS (SELECT 1 FROM line_minutes m WHERE m.line_id "
        "= :line AND m.minute = json_extract(s.value, '$[0]')), EXISTS (SELECT 1 FROM line_minutes m WHERE "
        "m.line_id = :line AND m.minute = json_extract(s.value, '$[1]') - 1) FROM json_each(:spans) s ORDER BY s.key",
        {"line": line, "spans": json.dumps(spans)}).fetchall()
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def _seconds_seen(window: tuple[float, float], counts: np.ndarray) -> float:
    """Seconds of ``window`` covered by minutes with a roll-up (the feed seen), from its span's ``counts`` (see
    ``_minutes_seen``): the minutes cut by the window's edges count for their share."""
    t0, t1 = window
    n, first_seen, last_seen = (int(c) for c in counts)
    if not n:
        return 0.0
    first, stop = math.floor(t0 / 60), math.ceil(t1 / 60)
    return max(n * 60.0 - (t0 - first * 60 if first_seen else 0.0) - (stop * 60 - t1 if last_seen else 0.0), 0.0)


def _typical_bin_trays(db: sqlite_utils.Database, *, ids_json: str) -> dict[str, float | None]:
    """{line id: mean trays of its latest ``TYPICAL_BINS`` bins (None without bins)}."""
    return {line: avg for line, avg in db.execute(
        "SELECT l.value, (SELECT AVG(trays) FROM (SELECT trays FROM line_bins b WHERE b.line_id = l.value "
        f"ORDER BY b.end_ts DESC LIMIT {TYPICAL_BINS})) FROM json_each(?) l", [ids_json])}


@dataclass(frozen=True)
class _Context:
    """What every line's view of the dashboard shares."""

    query: _Query
    windows: _Windows
    targets: dict[tuple[str, str], float]  # (line id, shift) -> trays per hour
    open_bins: dict[str, tuple[float, float, int]]
    typical: dict[str, float | None]
    current: tuple[str, float] | None  # (shift, instance start) now

    def placed(self, sums: _LineSums, window: tuple[float, float]) -> float:
        """Trays the line placed in ``window`` (one of ``windows.index``)."""
        return sums.placed.get(self.windows.index[window], 0.0)


def _line_view(ln: dict[str, Any], sums: _LineSums, ctx: _Context) -> dict[str, Any]:
    """One line of ``dashboard_data``."""
    line = ln["line_id"]
    last = ln["last_frame_ts"]
    silent_for = None if last is None else max(0.0, ctx.query.now - float(last))
    segments, shift_rows = _shift_rows(line, sums, ctx)
    targeted = [r for r in shift_rows if r["expected"]]
    expected_total = sum(r["expected"] for r in targeted) if targeted else None
    placed_targeted = sum(r["trays_placed"] for r in targeted) if targeted else None
    opened = ctx.open_bins.get(line)
    return {
        **ln,
        "silent": silent_for is None or silent_for > ctx.query.silent_s,
        "silent_for_s": silent_for,
        "series": _series_rows(line, sums, ctx),
        "targets": segments,
        "bins": sums.total[0],
        "trays": sums.total[1],
        **_estimated(sums.total),
        "typical_bin_trays": ctx.typical.get(line),
        "open_bin": None if opened is None else {"start_ts": opened[0], "trays": opened[2]},
        "shifts": shift_rows,
        "days": _day_rows(sums, ctx),
        "expected": expected_total,
        "trays_placed_targeted": placed_targeted,
        "vs_target_pct": _pct(placed_targeted or 0.0, expected_total),
        "now": _rate_now(line, sums, ctx),
    }


def _estimated(sums: tuple[int, ...]) -> dict[str, int]:
    """A row's estimated bins (an outage hid their change) and the range of its trays."""
    return {"estimated_bins": sums[2], "trays_low": sums[3], "trays_high": sums[4]}


def _series_rows(line: str, sums: _LineSums, ctx: _Context) -> list[dict[str, Any]]:
    """The line's per-bucket rows (``series``)."""
    series = []
    for k, b0, b1 in ctx.windows.buckets:
        n, trays, *_ = got = sums.by_bucket.get(k, bin_sums.EMPTY)
        placed = ctx.placed(sums, (b0, b1))
        seen = sums.minutes_by_bucket.get(k, 0)
        series.append({
            "start_ts": b0, "end_ts": b1, "bins": n, "trays_binned": trays, **_estimated(got),
            "trays_placed": round(placed, 2),
            "minutes_observed": seen,
            "trays_per_hour": round(max(placed, 0.0) * 3600 / (b1 - b0), 2) if seen else None,
        })
    return series


def _shift_rows(line: str, sums: _LineSums, ctx: _Context) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The line's target segments (``targets``) and per shift instance rows (``shifts``), bins outside
    every shift last."""
    since, until = ctx.query.since, ctx.query.until
    by_shift = dict(sums.by_shift)
    segments, shift_rows = [], []
    for inst in ctx.windows.instances:
        target = ctx.targets.get((line, inst["shift"]))
        s0, s1 = max(inst["start_ts"], since), min(inst["end_ts"], until)
        if target is not None:
            segments.append({"shift": inst["shift"], "start_ts": s0, "end_ts": s1, "trays_per_hour": target})
        n, trays, *_ = got = by_shift.pop((inst["index"], inst["start_ts"]), bin_sums.EMPTY)
        window = ctx.windows.shift_window[(inst["index"], inst["start_ts"])]
        placed = ctx.placed(sums, window)
        hours = sums.seen_s.get(window, 0.0) / 3600  # only the hours the counter saw
        expected = target * hours if target is not None and hours > 0 else None
        shift_rows.append({
            "shift": inst["shift"], "start_ts": inst["start_ts"], "end_ts": inst["end_ts"], "bins": n,
            "trays": trays, **_estimated(got), "trays_placed": round(placed, 2), "target_per_hour": target,
            "hours_observed": round(hours, 4), "expected": None if expected is None else round(expected, 2),
            "vs_target_pct": _pct(placed, expected),
            "current": ctx.current is not None and (ctx.current[0], ctx.current[1]) == (inst["shift"], inst["start_ts"]),
        })
    outside = by_shift.get(None)
    if outside is not None:
        shift_rows.append({"shift": None, "start_ts": None, "end_ts": None, "bins": outside[0], "trays": outside[1],
                           **_estimated(outside),
                           "trays_placed": None, "target_per_hour": None, "hours_observed": None, "expected": None,
                           "vs_target_pct": None, "current": False})
    return segments, shift_rows


def _day_rows(sums: _LineSums, ctx: _Context) -> list[dict[str, Any]]:
    """The line's per UTC day rows (``days``)."""
    days = []
    for d in ctx.windows.day_starts:
        n, trays, *_ = got = sums.by_day.get(d // DAY_S, bin_sums.EMPTY)
        days.append({"day": _day(d), "start_ts": float(d), "bins": n, "trays": trays, **_estimated(got),
                     "trays_placed": round(ctx.placed(sums, ctx.windows.day_window[d]), 2)})
    return days


def _rate_now(line: str, sums: _LineSums, ctx: _Context) -> dict[str, Any]:
    """The line's rate over the trailing window against the current shift's target (``now``)."""
    window_min = ctx.query.window_min
    rate_now = ctx.placed(sums, ctx.windows.trailing_window) * 60 / window_min
    current = ctx.current
    target_now = ctx.targets.get((line, current[0])) if current else None
    return {"shift": current[0] if current else None, "target_per_hour": target_now,
            "rate_per_hour": round(rate_now, 2), "vs_target_pct": _pct(rate_now, target_now),
            "window_minutes": window_min}


def trailing_rate(db: sqlite_utils.Database, line_id: str, t0: float, t1: float) -> float:
    """Trays placed per hour over ``[t0, t1)`` (see ``bin_sums.placed_until``), the open bin included."""
    arr = bin_sums.bin_arrays(db, line_id, t0, t1)
    placed = 0.0
    if len(arr):
        placed = float((bin_sums.placed_until(arr, np.array([t1])) - bin_sums.placed_until(arr, np.array([t0])))[0])
    opened = bin_sums.open_bins(db, [line_id]).get(line_id)
    if opened is not None:
        placed += bin_sums.spread(opened[2], opened[0], opened[1], t0, t1)
    return placed * 3600 / (t1 - t0)


# --------------------------------------------------------------------------------------------- export

CSV_COLUMNS = ("period", "line_id", "line_name", "shift", "start_utc", "end_utc", "bins", "trays", "estimated_bins",
               "trays_low", "trays_high", "trays_placed",
               "trays_per_hour", "target_per_hour", "expected", "vs_target_pct")


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _estimated_cells(row: dict[str, Any]) -> dict[str, Any]:
    """The estimate columns of a CSV row: the range only where some bin is estimated."""
    est = row.get("estimated_bins") or 0
    return {"estimated_bins": est, "trays_low": row.get("trays_low") if est else None,
            "trays_high": row.get("trays_high") if est else None}


def _csv_rows(data: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for ln in data["lines"]:
        base = {"line_id": ln["line_id"], "line_name": ln["name"]}
        for r in ln["series"]:
            yield {**base, **_estimated_cells(r), "period": "bucket", "start_utc": _iso(r["start_ts"]), "end_utc": _iso(r["end_ts"]),
                   "bins": r["bins"], "trays": r["trays_binned"], "trays_placed": r["trays_placed"],
                   "trays_per_hour": r["trays_per_hour"]}
        for r in ln["shifts"]:
            pct = r["vs_target_pct"]
            yield {**base, **_estimated_cells(r), "period": "shift", "shift": r["shift"] or "", "start_utc": _iso(r["start_ts"]),
                   "end_utc": _iso(r["end_ts"]), "bins": r["bins"], "trays": r["trays"],
                   "trays_placed": r["trays_placed"], "target_per_hour": r["target_per_hour"],
                   "expected": r["expected"], "vs_target_pct": None if pct is None else round(pct, 2)}
        for r in ln["days"]:
            yield {**base, **_estimated_cells(r), "period": "day", "start_utc": r["day"], "end_utc": _iso(r["start_ts"] + DAY_S),
                   "bins": r["bins"], "trays": r["trays"], "trays_placed": r["trays_placed"]}


def csv_from_dashboard(data: dict[str, Any]) -> str:
    """CSV text of ``dashboard_data`` output: per line, one row per bucket, shift and UTC day (``period``);
    empty cells where a figure does not apply; estimated_bins counts the bins an outage hid in the row, and
    trays_low .. trays_high is then the range of its trays; text a spreadsheet would run as a formula is
    neutralised (services.core.csvsafe). Raises nothing."""
    from services.core.csvsafe import safe_cell

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(data):
        writer.writerow({k: "" if row.get(k) is None else safe_cell(value=row.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def export_csv(db: sqlite_utils.Database, *, actor: str, since_ts: float, until_ts: float,
               line_ids: Sequence[str] | None = None, now_ts: float | None = None) -> str:
    """Per line, per bucket, shift and UTC day totals over ``[since_ts, until_ts)`` as CSV (see
    ``csv_from_dashboard``). Raises InvalidInput for an empty range."""
    return csv_from_dashboard(dashboard_data(db, actor=actor, since_ts=since_ts, until_ts=until_ts, now_ts=now_ts,
                                             line_ids=line_ids))

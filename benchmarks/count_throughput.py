"""Line counting throughput: detector frames counted per second, and the line dashboard's data query.

    python benchmarks/count_throughput.py [--quick] [--lines N] [--hours H] [--days D]

Frames: ``--lines`` lines (10) x ``--hours`` (24; 1 with --quick) at 30 fps are simulated once (timed
separately), then counted with services.lines.counter.count_frames, one call per line over the whole array
(``frames_per_s``) and again in one-minute chunks with the state through JSON between chunks, as ingestion
feeds it (``frames_per_s_chunked``). The counts are checked against the simulator's truth on the way.

Dashboard: if services.lines.stats.dashboard_data exists, a fresh workspace gets ``--days`` (30) days of the
same lines as roll-ups -- line_minutes (one row per line and minute: 30 x 10 x 1440 = 432,000) and line_bins
(a bin every 50-100 s: about 350,000), plus line_state and targets -- inserted directly, and
dashboard_data is timed over the whole period (``dashboard_query_s``: median of 3; the first run reported
too). Without it, a note is printed and the figure is null. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

import numpy as np
from common import cpu_ticks, others_share

from services.lines.counter import CounterParams, LineState, count_frames, naive_count, total_trays
from services.lines.simulator import simulate

DAY = 86_400.0


def count_throughput(lines: int, hours: float, seed: int) -> dict[str, float | int]:
    t0 = time.perf_counter()
    streams, truth = simulate(lines=lines, hours=hours, seed=seed, outages=max(1, round(hours * 3 / 8)))
    sim_s = time.perf_counter() - t0
    frames = sum(len(s.ts) for s in streams.values())
    print(f"simulated {lines} lines x {hours:g} h at 30 fps: {frames:,} frames in {sim_s:.2f} s", flush=True)
    params = CounterParams()

    t0 = time.perf_counter()
    states = {k: count_frames(s.ts, s.counts, params=params)[1] for k, s in streams.items()}
    count_s = time.perf_counter() - t0
    print(f"counted (one call per line): {count_s:.3f} s, {frames / count_s:,.0f} frames/s", flush=True)

    chunk = 30 * 60  # a minute of frames per call, the state through JSON in between
    t0 = time.perf_counter()
    for k, s in streams.items():
        state: LineState | None = None
        for lo in range(0, len(s.ts), chunk):
            _, state = count_frames(s.ts[lo : lo + chunk], s.counts[lo : lo + chunk], state=state, params=params)
            state = LineState.from_json(state.to_json())
        assert state is not None and state.to_json() == states[k].to_json(), "chunked counting differs"
    chunked_s = time.perf_counter() - t0
    print(f"counted (1-minute chunks, state via JSON): {chunked_s:.3f} s, {frames / chunked_s:,.0f} frames/s",
          flush=True)

    true_total = sum(sum(v) for v in truth.values())
    ours = sum(total_trays(st) for st in states.values())
    naive = sum(naive_count(s.counts) for s in streams.values())
    print(f"trays: truth {true_total:,}, counted {ours:,} ({100 * (ours - true_total) / true_total:+.2f}%), "
          f"naive {naive:,} ({100 * (naive - true_total) / true_total:+.1f}%)", flush=True)
    return {
        "frames": frames,
        "simulate_s": round(sim_s, 3),
        "count_s": round(count_s, 4),
        "frames_per_s": round(frames / count_s),
        "frames_per_s_chunked": round(frames / chunked_s),
        "day_of_10_lines_s": round(10 * 24 * 3600 * 30 / (frames / count_s), 2),
        "count_error_pct": round(100 * (ours - true_total) / true_total, 3),
        "naive_error_pct": round(100 * (naive - true_total) / true_total, 1),
    }


def build_rollups(db, *, lines: int, days: int, until_ts: float, seed: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """30 days of roll-ups for ``lines`` lines, inserted directly (what the counter would have stored)."""
    from services.core.clock import now_iso
    from services.core.config import get_settings

    rng = np.random.default_rng(seed)
    since = until_ts - days * DAY
    now = now_iso()
    ids = [f"line-{i + 1:02d}" for i in range(lines)]
    conn = db.conn
    n_minutes = n_bins = 0
    with conn:
        conn.executemany("INSERT INTO lines (id, name, created_at, last_frame_ts) VALUES (?, ?, ?, ?)",
                         [(k, f"Line {k[-2:]}", now, until_ts - 1.0) for k in ids])
        shifts = [s["name"] for s in get_settings(db)["shifts"]]
        conn.executemany(
            "INSERT INTO line_targets (line_id, shift, trays_per_hour, updated_by, updated_at) VALUES (?, ?, ?, ?, ?)",
            [(k, s, float(rng.integers(900, 1500)), "bench", now) for k in ids for s in shifts])
        minute0 = int(since // 60)
        minutes = np.arange(minute0, int(until_ts // 60))
        for k in ids:
            ends = since + np.cumsum(rng.uniform(50, 100, int(days * DAY / 50)))
            ends = ends[ends < until_ts]
            trays = rng.integers(18, 31, len(ends))
            starts = np.concatenate(([since], ends[:-1]))
            conn.executemany(
                "INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                zip([k] * len(ends), starts.round(3).tolist(), ends.round(3).tolist(), trays.tolist(),
                    np.where(rng.random(len(ends)) < 0.5, "zero", "drop").tolist(), [now] * len(ends)))
            binned = np.bincount((ends // 60).astype(np.int64) - minute0, weights=trays, minlength=len(minutes))
            mean = rng.uniform(3, 25, len(minutes))
            conn.executemany(
                "INSERT INTO line_minutes (line_id, minute, frames, mean_count, max_count, trays_binned) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                zip([k] * len(minutes), minutes.tolist(), [1800] * len(minutes), mean.round(2).tolist(),
                    np.minimum(30, np.ceil(mean) + 3).astype(int).tolist(), binned[: len(minutes)].astype(int).tolist()))
            state = LineState(frames=int(days * DAY * 30), last_ts=until_ts - 1.0, bin_start_ts=float(ends[-1]),
                              bin_max=int(rng.integers(0, 25)), total=int(trays.sum()), bins=len(ends))
            conn.execute("INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES (?, ?, ?, ?)",
                         [k, state.to_json(), until_ts - 1.0, now])
            n_minutes += len(minutes)
            n_bins += len(ends)
    return {"minute_rows": n_minutes, "bin_rows": n_bins}


def dashboard_query(lines: int, days: int, seed: int) -> dict[str, object]:
    try:
        from services.lines.stats import dashboard_data
    except ImportError as exc:
        print(f"NOTE: services.lines.stats.dashboard_data is not available ({exc}); dashboard_query_s is null",
              flush=True)
        return {"dashboard_query_s": None}
    from services.core.config import Workspace

    until_ts = float(int(time.time() // 60) * 60)
    with tempfile.TemporaryDirectory(prefix="bench-lines-") as tmp:
        ws = Workspace.open(tmp)
        db = ws.db()
        t0 = time.perf_counter()
        sizes = build_rollups(db, lines=lines, days=days, until_ts=until_ts, seed=seed)
        print(f"workspace: {sizes['minute_rows']:,} minute rows, {sizes['bin_rows']:,} bins for {lines} lines x "
              f"{days} days in {time.perf_counter() - t0:.1f} s", flush=True)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            data = dashboard_data(db, actor="system:benchmark", since_ts=until_ts - days * DAY, until_ts=until_ts, now_ts=until_ts)
            times.append(time.perf_counter() - t0)
        n_lines = len(data.get("lines", [])) if isinstance(data, dict) else None
        print(f"dashboard_data over {days} days: {', '.join(f'{t:.3f}' for t in times)} s ({n_lines} lines)",
              flush=True)
        db.close()
    return {"dashboard_query_s": round(statistics.median(times), 4), "dashboard_query_first_s": round(times[0], 4),
            "dashboard_lines": n_lines, **sizes}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 hour of frames instead of a day")
    ap.add_argument("--lines", type=int, default=10)
    ap.add_argument("--hours", type=float, default=None)
    ap.add_argument("--days", type=int, default=30, help="days of roll-ups for the dashboard query")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    hours = args.hours if args.hours is not None else (1.0 if args.quick else 24.0)
    before = cpu_ticks()
    result: dict[str, object] = {"benchmark": "count_throughput", "quick": args.quick, "lines": args.lines,
                                 "hours": hours}
    result.update(count_throughput(args.lines, hours, args.seed))
    result.update(dashboard_query(args.lines, args.days, args.seed))
    result["others_share"] = others_share(before)
    sys.stdout.flush()
    print(json.dumps(result))


if __name__ == "__main__":
    main()

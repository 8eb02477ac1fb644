"""Command-line commands for packaging-line counting: ingest detector frames, count, prune, replay, simulate.

Registered by ``services.cli.main``; each returns the dict printed as its JSON summary line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from services.cli.common import cli_actor
from services.core.config import Workspace, object_store
from services.core.storage import ObjectStore
from services.lines import feed as lines
from services.lines import replay as line_replay
from services.lines import simulator as linesim


def _ctx(ws: Workspace) -> tuple[Any, ObjectStore, str]:
    db = ws.db()
    return db, object_store(db), cli_actor()


def cmd_ingest(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db, store, actor = _ctx(ws)
    while True:
        report = lines.ingest_source(db, uri=args.source, store=store, actor=actor,
                                     known_lines_only=args.known_lines_only, count=not args.no_count)
        for sample in report.get("samples", [])[:50]:
            print(f"skipped {sample.get('uri', '')} line {sample.get('line')}: {sample.get('reason')} "
                  f"{sample.get('detail', '')}".rstrip(), file=sys.stderr)
        for err in report.get("errors", [])[:50]:
            print(f"error: {err}", file=sys.stderr)
        if not args.watch:
            return report
        print(f"read {report['files_read']} files, {report['frames_added']} frames added", file=sys.stderr, flush=True)
        time.sleep(args.watch)


def cmd_count(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return lines.count_lines(ws.db())


def cmd_prune(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return {"deleted": lines.prune_raw(ws.db(), older_than_days=args.older_than_days)}


def cmd_replay(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    _, store, _ = _ctx(ws)
    return line_replay.replay(src=args.src, dst=args.dst, speed=args.speed, store=store)


def cmd_summary(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return {"lines": lines.line_summary(ws.db(), raw_frames=True)}


def cmd_forget(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db, _, actor = _ctx(ws)
    return lines.forget_file(db, uri=args.uri, actor=actor)


def cmd_simulate(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = args.start_ts if args.start_ts is not None else time.time() - args.hours * 3600
    streams, truth = linesim.simulate(lines=args.lines, hours=args.hours, fps=args.fps, seed=args.seed, start_ts=start,
                                      boxes=args.boxes)
    path = out / f"frames-{int(start)}.jsonl"
    rows = linesim.write_jsonl(path, streams)
    return {"file": str(path), "frames": rows, "truth_trays": {k: sum(v) for k, v in truth.items()},
            "truth_bins": {k: len(v) for k, v in truth.items()}}


def add_commands(sub: Any) -> None:
    """Add the ``lines-*`` commands to the console's argument parser."""
    s = sub.add_parser("lines-ingest", help="read detector frame files (a file, a folder or an S3 prefix) and count")
    s.add_argument("--source", required=True, help="folder, file or s3:// prefix of .jsonl/.csv frame files")
    s.add_argument("--known-lines-only", action="store_true", help="skip frames of lines not registered yet")
    s.add_argument("--no-count", action="store_true", help="store frames only; count later with lines-count")
    s.add_argument("--watch", type=float, default=0, help="keep polling every N seconds")
    s.set_defaults(fn=cmd_ingest)
    s = sub.add_parser("lines-count", help="count trays and bins from stored frames not counted yet")
    s.set_defaults(fn=cmd_count)
    s = sub.add_parser("lines-prune", help="delete counted raw frames older than the retention (totals stay)")
    s.add_argument("--older-than-days", type=int, default=None)
    s.set_defaults(fn=cmd_prune)
    s = sub.add_parser("lines-replay", help="copy a frame file to another at real speed (for demos)")
    s.add_argument("--src", required=True)
    s.add_argument("--dst", required=True)
    s.add_argument("--speed", type=float, default=1.0, help="1 = real time, 10 = ten times faster")
    s.set_defaults(fn=cmd_replay)
    s = sub.add_parser("lines-summary", help="per line: frames, bins, trays, the bin filling now")
    s.set_defaults(fn=cmd_summary)
    s = sub.add_parser("lines-forget", help="read a rewritten frame file again from the start")
    s.add_argument("--uri", required=True)
    s.set_defaults(fn=cmd_forget)
    s = sub.add_parser("lines-simulate", help="write a realistic detector stream with known truth")
    s.add_argument("--out", required=True, help="folder to write the frame file into")
    s.add_argument("--lines", type=int, default=3)
    s.add_argument("--hours", type=float, default=1.0)
    s.add_argument("--fps", type=float, default=30.0)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--start-ts", type=float, default=None, help="epoch seconds of the first frame (default: hours ago)")
    s.add_argument("--boxes", action="store_true", help="write boxes with confidences too")
    s.set_defaults(fn=cmd_simulate)

"""Command-line commands for dataset filtering: estimate, dry run, launch (and wait), status, outputs, checks.

Registered by ``services.cli.main``; each returns the dict printed as its JSON summary line.
"""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.common import cli_actor
from services.core import jobs
from services.core.config import Workspace
from services.core.errors import InvalidInput
from services.dataset_filter import checks as filter_checks
from services.dataset_filter import job as dataset_filter
from services.dataset_filter import outputs as filter_outputs
from services.dataset_filter import params as filter_params


def _params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"source": args.source, "destination": args.destination, "labels": args.label,
                              "detector": args.detector}
    for key in ("name", "threshold", "band_low", "cap", "stop_after_misses"):
        value = getattr(args, key)
        if value is not None:
            params["scan_cap" if key == "cap" else key] = value
    return params


def cmd_filter(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    store = dataset_filter.store_for(db)
    params = _params(args)
    if args.estimate:
        return filter_params.estimate(db, params, store)
    if args.dry_run:
        return filter_params.dry_run(db, params, store, limit=args.limit)
    job_id = dataset_filter.launch(db, params, actor=cli_actor(), store=store)
    if not args.wait:
        return {"job": job_id, "state": "queued"}
    jobs.run_job(ws, job_id=job_id)
    return {"job": job_id, **dataset_filter.progress(db, job_id=job_id)}


def cmd_filter_status(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    out: dict[str, Any] = dataset_filter.progress(db, job_id=args.job)
    if args.results:
        out["results"] = filter_outputs.results(db, job_id=args.job, outcome=args.outcome)
    return out


def cmd_filter_checks(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.answer is not None:
        if args.yes == args.no:

            raise InvalidInput("answer a check with exactly one of --yes or --no")
        store = dataset_filter.store_for(db)
        return filter_checks.answer_check(db, check_id=args.answer, yes=args.yes, actor=cli_actor(), store=store)
    return filter_checks.checks_summary(db, job_id=args.job)


def add_commands(sub: Any) -> None:
    """Add the ``filter`` commands to the console's argument parser."""
    s = sub.add_parser("filter", help="keep only the images of a folder or S3 prefix that show a label")
    s.add_argument("--source", required=True, help="folder or s3://bucket/prefix to scan")
    s.add_argument("--destination", required=True, help="folder or s3://bucket/prefix to copy matches into")
    s.add_argument("--label", action="append", required=True, help="a label to keep (repeat for several)")
    s.add_argument("--name", help="output folder name under the destination (default: the first label)")
    s.add_argument("--threshold", type=float, help="keep at or above this confidence (0-1, default 0.8)")
    s.add_argument("--band-low", type=float, help="ask a person between this and the threshold")
    s.add_argument("--cap", type=int, help="scan at most this many images")
    s.add_argument("--stop-after-misses", type=int, help="stop after this many rejections in a row")
    s.add_argument("--detector", choices=["local", "rekognition"], default="local")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--estimate", action="store_true", help="images in scope and expected cost; scans nothing")
    mode.add_argument("--dry-run", action="store_true", help="list what would be scanned; calls no detector")
    mode.add_argument("--wait", action="store_true", help="run the job here and wait for it")
    s.add_argument("--limit", type=int, default=None, help="dry run: list at most this many")
    s.set_defaults(fn=cmd_filter)
    s = sub.add_parser("filter-status", help="progress of a filter job, optionally with its results")
    s.add_argument("job", type=int)
    s.add_argument("--results", action="store_true")
    s.add_argument("--outcome", choices=["kept", "rejected", "band", "failed", "skipped"])
    s.set_defaults(fn=cmd_filter_status)
    s = sub.add_parser("filter-checks", help="summary of the yes/no checks, or answer one")
    s.add_argument("--job", type=int, default=None)
    s.add_argument("--answer", type=int, default=None, metavar="CHECK_ID")
    s.add_argument("--yes", action="store_true")
    s.add_argument("--no", action="store_true")
    s.set_defaults(fn=cmd_filter_checks)

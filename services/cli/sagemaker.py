"""Command-line commands for SageMaker: train, grid-tune, batch transform (each with --dry-run), results."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from services.cli.common import cli_actor
from services.core import jobs
from services.core.config import Workspace
from services.sagemaker import batch as sagemaker_batch  # noqa: F401 - register the job kinds
from services.sagemaker import batch as smb
from services.sagemaker import training as smt
from services.sagemaker import tuning as smtu


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None


def _run(ws: Workspace, job_id: int, background: bool) -> dict[str, Any]:
    if not background:
        jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(ws.db(), job_id)
    out = {k: job[k] for k in ("id", "state", "error", "result")}
    out["sagemaker_name"] = job["params"].get("sagemaker_name")
    out["sagemaker_status"] = job["params"].get("sagemaker_status")
    return out


def cmd_train(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.dry_run:
        return smt.start_training(db, actor=cli_actor(), epochs=args.epochs, num_layers=args.num_layers, dry_run=True)
    job_id = smt.launch(db, actor=cli_actor(), epochs=args.epochs, num_layers=args.num_layers,
                        poll_seconds=args.poll_seconds)
    print(f"job {job_id}: SageMaker training (waiting on it unless --background)", file=sys.stderr)
    return _run(ws, job_id, args.background)


def cmd_tune(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    grid = {"epochs": args.epochs, "num_layers": args.num_layers}
    if args.dry_run:
        return smtu.start_tuning(db, actor=cli_actor(), grid=grid, max_parallel=args.max_parallel, dry_run=True)
    job_id = smtu.launch(db, actor=cli_actor(), grid=grid, max_parallel=args.max_parallel, poll_seconds=args.poll_seconds)
    print(f"job {job_id}: SageMaker grid tuning (waiting on it unless --background)", file=sys.stderr)
    return _run(ws, job_id, args.background)


def cmd_transform(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.dry_run:
        return smb.start_transform(db, actor=cli_actor(), input_uri=args.input, version_id=args.version,
                                   output_uri=args.output, dry_run=True)
    job_id = smb.launch(db, actor=cli_actor(), input_uri=args.input, version_id=args.version, output_uri=args.output,
                        routing=not args.no_routing, poll_seconds=args.poll_seconds)
    print(f"job {job_id}: SageMaker batch transform (waiting on it unless --background)", file=sys.stderr)
    return _run(ws, job_id, args.background)


def cmd_results(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    out = smtu.fetch_results(ws.db(), actor=cli_actor(), tuning_job_name=args.tuning_job)
    for row in out["rows"]:
        print(f"epochs {row.get('param_epochs')} x num_layers {row.get('param_num_layers')}: accuracy "
              f"{row['accuracy'] if row['accuracy'] is not None else '-'} {row['state']}"
              + (f" ({row['error']})" if row["error"] else ""), file=sys.stderr)
    return out


def add_commands(sub: Any) -> None:
    def waiting(s: argparse.ArgumentParser) -> None:
        s.add_argument("--dry-run", action="store_true", help="print the exact AWS requests; send and write nothing")
        s.add_argument("--background", action="store_true", help="only queue the job for the app's worker")
        s.add_argument("--poll-seconds", type=float, default=30.0, help="seconds between status checks")

    s = sub.add_parser("sagemaker-train", help="train SageMaker's image-classification algorithm on the labels in S3")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--num-layers", type=int, default=18, help="ResNet depth: 18, 34, 50, 101, 152 or 200")
    waiting(s)
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("sagemaker-tune", help="grid-tune epochs x num_layers on SageMaker (results in the grid table)")
    s.add_argument("--epochs", type=_ints, default=[5, 10, 15], help="comma-separated (default 5,10,15)")
    s.add_argument("--num-layers", type=_ints, default=[18, 34, 50], help="comma-separated (default 18,34,50)")
    s.add_argument("--max-parallel", type=int, default=3, help="training jobs at once")
    waiting(s)
    s.set_defaults(fn=cmd_tune)

    s = sub.add_parser("sagemaker-transform", help="batch-classify an S3 prefix on SageMaker into predictions")
    s.add_argument("--input", required=True, help="s3://bucket/prefix of photos")
    s.add_argument("--output", help="s3://bucket/prefix for the .out files (default under the SageMaker prefix)")
    s.add_argument("--version", type=int, help="SageMaker model version id (default: the newest)")
    s.add_argument("--no-routing", action="store_true", help="store predictions only; decide nothing")
    waiting(s)
    s.set_defaults(fn=cmd_transform)

    s = sub.add_parser("sagemaker-results", help="read a SageMaker tuning job's results into the grid-search table")
    s.add_argument("--tuning-job", required=True, help="the tuning job's name")
    s.set_defaults(fn=cmd_results)

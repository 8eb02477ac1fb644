"""Command line over the same services: ``python -m services.cli --data-dir D COMMAND ...``.

Every command ends with one JSON summary line on stdout; errors print a message on stderr and a
JSON line with "error", and exit with status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from services.cli import accounts as cli_accounts
from services.cli import demo
from services.cli import faces as cli_faces
from services.cli import filter as cli_filter
from services.cli import formats as cli_formats
from services.cli import lines as cli_lines
from services.cli import sagemaker as cli_sagemaker
from services.cli.common import cli_actor
from services.cli.formats import print_errors
from services.core import jobs
from services.core.config import Workspace, get_settings, object_store
from services.core.errors import ConsoleError
from services.datasets.formats import parse_merge
from services.datasets.groundtruth import NothingConverted
from services.hitl import export
from services.models import grid_search, model_search, retraining, training
from services.models.finetune_model import train_finetuned
from services.reviews import ingest
from services.worker import kinds
from services.worker.housekeeping import Housekeeping
from services.worker.runner import watch


def cmd_ingest(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    store = object_store(db)
    if args.manifest:
        report = ingest.ingest_manifest(db, uri=args.manifest, store=store, actor=cli_actor())
    else:
        report = ingest.ingest_listing(
            db, prefix_uri=args.folder or args.prefix, store=store, review_type=args.review_type, actor=cli_actor()
        )
    for err in report.errors[:50]:
        where = f"line {err['line']}" if "line" in err else err.get("uri", "")
        print(f"skipped {where}: {err['reason']}", file=sys.stderr)
    out = report.as_dict()
    out["errors"] = out["errors"][:50]
    return out


def cmd_import_labels(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.folder:
        return training.import_folder(db, root=args.folder, store=object_store(db), actor=cli_actor())
    try:
        return training.import_groundtruth(db, uri=args.groundtruth, store=object_store(db), actor=cli_actor(),
                                           attribute=args.attribute, label_map=parse_merge(args.map or []))
    except NothingConverted as exc:  # every refusal, with its line, before the one-line error and exit 1
        print_errors(exc.errors)
        raise


def cmd_train(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.folder:
        if not Path(args.folder).is_dir():
            print(f"skipped: {args.folder} is not a folder (nothing to train on)", file=sys.stderr)
            return {"skipped": f"{args.folder} is not a folder"}
        imported = training.import_folder(db, root=str(Path(args.folder).resolve()), store=object_store(db), actor=cli_actor())
        print(f"imported {imported['photos']} labelled photos from {args.folder}", file=sys.stderr)
    if args.grid:
        return _train_grid(ws, args)
    if args.method == "finetune":

        epochs, blocks = _ints(args.epochs or "10"), _ints(args.blocks or "2")
        if len(epochs) != 1 or len(blocks) != 1:
            raise ConsoleError("fine-tuning one version takes one value of --epochs and of --blocks (a list is a --grid)")
        result = train_finetuned(ws, db, actor=cli_actor(), epochs=epochs[0], blocks=blocks[0], folds=args.folds,
                                 activate=not args.no_activate)
        print(f"fine-tuned: cross-validated macro-F1 {result['macro_f1']:.3f} over {result['examples']} photos",
              file=sys.stderr)
        return result
    result = training.train(ws, db, actor=cli_actor(), folds=args.folds, c=args.c, activate=not args.no_activate)
    print(f"cross-validated macro-F1 {result['macro_f1']:.3f} over {result['examples']} photos", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"note: {warning}", file=sys.stderr)
    return result


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def _train_grid(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    """Run the local grid searches (head, fine-tuning or both) now; print every point, return the best."""
    db = ws.db()
    backends = ["head", "finetune"] if args.backend == "both" else [args.backend]
    out: dict[str, Any] = {"target_accuracy": args.target, "searches": {}}
    for backend in backends:
        grid = ({"C": [float(v) for v in args.c_values.split(",")]} if backend == "head"
                else {"epochs": _ints(args.epochs or "5,10,15"), "blocks": _ints(args.blocks or "1,2,4")})
        job_id = model_search.queue(db, actor=cli_actor(), backend=backend, grid=grid, folds=args.folds, target=args.target)
        jobs.run_job(ws, job_id=job_id)
        job = jobs.get_job(db, job_id)
        if job["state"] != "done":
            raise ConsoleError(job["error"] or f"the {backend} grid search ended {job['state']}")
        search_id = job["result"]["search_id"]
        for p in grid_search.points(db, search_id=search_id, actor=cli_actor()):
            print(f"{backend} {json.dumps(p['params'])}: cross-validated macro-F1 {p['macro_f1']:.3f}, accuracy "
                  f"{p['accuracy']:.3f}, automatic share at {args.target:.0%} accuracy {p['automatic_share']:.1%} "
                  f"({p['seconds']:.1f} s)", file=sys.stderr)
        for warning in job["result"].get("warnings", []) if backend == backends[0] else []:
            print(f"note: {warning}", file=sys.stderr)
        out["searches"][backend] = {"search_id": search_id, "examples": job["result"]["examples"],
                                    "folds": job["result"]["folds"], "best": job["result"]["best"]}
    best = max((s["best"] for s in out["searches"].values() if s["best"]), key=lambda b: b["macro_f1"], default=None)
    if best:
        out["macro_f1"], out["automatic_share"] = best["macro_f1"], best["automatic_share"]
        print(f"best: cross-validated macro-F1 {best['macro_f1']:.3f}; expected automatic share at "
              f"{args.target:.0%} accuracy {best['automatic_share']:.1%}", file=sys.stderr)
    return out


def cmd_classify(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    if args.resume:
        job_id = args.resume
        if jobs.get_job(db, job_id)["state"] in ("failed", "cancelled"):
            jobs.resume_job(db, job_id=job_id, actor=cli_actor())
    else:
        job_id = jobs.create_job(db, kind="classify", params={}, actor=cli_actor())
    if not args.background:
        jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    return {k: job[k] for k in ("id", "state", "total", "done", "failed", "error", "result")}


def cmd_export(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    text, n = (export.to_csv(db, actor=cli_actor(), prefix=args.published_prefix) if args.format == "csv" else
               export.to_groundtruth(db, actor=cli_actor(), human_only=args.human_only, min_confidence=args.min_confidence))
    if args.out == "-":
        sys.stderr.write(text)
    else:
        object_store(db).write(args.out, text.encode("utf-8"))
    return {"format": args.format, "rows": n, "out": args.out}


def cmd_work(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    if args.watch:  # the worker service of ./run.sh --processes N: jobs and chores until SIGTERM
        return watch(ws, poll_seconds=args.poll)
    ran = []
    while (job_id := jobs.run_job(ws)) is not None:
        ran.append(job_id)
    # the chores the app's worker does: queue snapshot, reliability, the line feed, pruning, reuse checks
    chores = Housekeeping(ws).run_all()
    while (job_id := jobs.run_job(ws)) is not None:  # what the chores queued (a reused-photo check)
        ran.append(job_id)
    return {"jobs_run": ran, **chores}


def cmd_retrain(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    job_id = retraining.queue(db, actor=cli_actor(), force=args.force)
    if job_id is None:
        settings = get_settings(db)
        return {"job": None, "new_labels": retraining.new_labels(db), "needed": settings["retrain_min_new_labels"],
                "auto": settings["retrain_auto"]}
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    if job["state"] != "done":
        raise ConsoleError(job["error"] or f"the retraining job ended {job['state']}")
    return {"job": job_id, **job["result"]}


def cmd_demo(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    return demo.seed(ws, actor=cli_actor())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m services.cli.main", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=None, help="workspace folder (default: $REVIEW_CONSOLE_DATA_DIR or ./data)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("ingest", help="load a review batch: a manifest, a folder or an S3 prefix")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", help="CSV or JSON Lines manifest (local path or s3://)")
    src.add_argument("--folder", help="folder of photos, one review per photo")
    src.add_argument("--prefix", help="s3://bucket/prefix of photos, one review per photo")
    s.add_argument("--review-type", default="product", help="review type for --folder/--prefix (default product)")
    s.set_defaults(fn=cmd_ingest)

    s = sub.add_parser("import-labels", help="import labelled photos for training")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", help="folder with one sub-folder per class")
    src.add_argument("--groundtruth", help="SageMaker Ground Truth image-classification manifest")
    s.add_argument("--attribute", help="with --groundtruth: the label attribute (default: the one with -metadata)")
    s.add_argument("--map", action="append", metavar="FROM=CLASS",
                   help="with --groundtruth: read a label as one of the classes, e.g. --map parcel=package (repeatable)")
    s.set_defaults(fn=cmd_import_labels)

    s = sub.add_parser("train", help="train the head with cross-validation and save a model version; or, with "
                       "--grid, cross-validate a grid of hyperparameters (head: C; fine-tuning: epochs x blocks)")
    s.add_argument("--folds", type=int, default=5)
    s.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    s.add_argument("--no-activate", action="store_true", help="save the version without making it active")
    s.add_argument("--folder", help="first import labels from this folder (one sub-folder per class); a missing "
                   "folder skips the run")
    s.add_argument("--grid", action="store_true", help="grid search with stratified cross-validation (saves no version)")
    s.add_argument("--backend", choices=["head", "finetune", "both"], default="both", help="with --grid")
    s.add_argument("--c-values", default="0.1,0.3,1,3", help="the head's grid of C")
    s.add_argument("--method", choices=["head", "finetune"], default="head",
                   help="without --grid: train the head (default) or fine-tune one point into a version")
    s.add_argument("--epochs", help="fine-tuning's epochs (grid default 5,10,15; one version: 10)")
    s.add_argument("--blocks", help="fine-tuning's trainable blocks of 16 (grid default 1,2,4; one version: 2)")
    s.add_argument("--target", type=float, default=0.98, help="accuracy the automatic decisions must reach")
    s.set_defaults(fn=cmd_train)

    s = sub.add_parser("classify", help="classify every pending photo (a job; resumable)")
    s.add_argument("--background", action="store_true", help="only queue the job for the app's worker")
    s.add_argument("--resume", type=int, metavar="JOB_ID", help="resume an interrupted job")
    s.set_defaults(fn=cmd_classify)

    s = sub.add_parser("export", help="export decisions as CSV or a Ground Truth manifest")
    s.add_argument("--format", choices=["csv", "groundtruth"], default="csv")
    s.add_argument("--human-only", action="store_true", help="groundtruth: people's labels only")
    s.add_argument("--min-confidence", type=float, default=0.0, help="groundtruth: leave out less sure labels")
    s.add_argument("--out", required=True, help="output path or s3:// URI ('-' for stderr)")
    s.add_argument("--published-prefix", default=None,
                   help="csv: folder or s3:// prefix for the redacted copies of decided photos with label boxes "
                        "(default: published/ in the workspace); the CSV's published_uri names them")
    s.set_defaults(fn=cmd_export)

    s = sub.add_parser("work", help="run every queued job and the housekeeping (queue snapshot, reliability, line feed, pruning), then exit (for schedulers)")
    s.add_argument("--watch", action="store_true",
                   help="keep running as the worker service: new jobs as they come, chores on their intervals, until SIGTERM")
    s.add_argument("--poll", type=float, default=2.0, help="--watch: seconds between looks for new jobs")
    s.set_defaults(fn=cmd_work)

    s = sub.add_parser("retrain", help="train a candidate when enough new labels exist, promote it if it is no worse")
    s.add_argument("--force", action="store_true", help="train now, however few the new labels")
    s.set_defaults(fn=cmd_retrain)
    s = sub.add_parser("demo", help="seed a small demo workspace from photos shipped in installed packages")
    s.set_defaults(fn=cmd_demo)


    cli_lines.add_commands(sub)
    cli_filter.add_commands(sub)
    cli_faces.add_commands(sub)
    cli_formats.add_commands(sub)
    cli_sagemaker.add_commands(sub)
    cli_accounts.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    kinds.install()
    try:
        ws = Workspace.open(args.data_dir)
        result = args.fn(ws, args)
    except ConsoleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps({"command": args.command, "error": str(exc)}))
        return 1
    print(json.dumps({"command": args.command, **result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

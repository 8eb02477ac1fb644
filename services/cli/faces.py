"""Command-line command for face blurring: launch (and wait). Registered by ``services.cli.main``."""

from __future__ import annotations

import argparse
from typing import Any

from services.cli.common import cli_actor
from services.core import jobs
from services.core.config import Workspace
from services.faces import job as face_blur
from services.faces.masks import MODES, SHAPES


def cmd_faces(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    params = {"source": args.source, "destination": args.destination, "detector": args.detector, "mode": args.mode,
              "shape": args.shape, "mask_scale": args.mask_scale, "threshold": args.threshold,
              "keep_metadata": args.keep_metadata}
    job_id = face_blur.launch(db, params, actor=cli_actor())
    if not args.wait:
        return {"job": job_id, "state": "queued"}
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    return {"job": job_id, "state": job["state"], "done": job["done"], "failed": job["failed"], "error": job["error"],
            **(job["result"] or {})}


def add_commands(sub: Any) -> None:
    """Add the face-blurring command to the console's argument parser."""
    s = sub.add_parser("faces", help="write face-anonymised copies of the images in a folder or S3 prefix")
    s.add_argument("--source", required=True)
    s.add_argument("--destination", required=True)
    s.add_argument("--detector", choices=["local", "rekognition"], default="local")
    s.add_argument("--mode", choices=MODES, default="blur")
    s.add_argument("--shape", choices=SHAPES, default="ellipse")
    s.add_argument("--mask-scale", type=float, default=None, help="mask size against the face box (default: the job's)")
    s.add_argument("--threshold", type=float, default=None,
                   help="detector confidence (default: the job's, chosen recall first; see benchmarks/faces_eval)")
    s.add_argument("--keep-metadata", action="store_true", help="keep EXIF metadata (GPS included); dropped by default")
    s.add_argument("--wait", action="store_true", help="run the job here and wait for it")
    s.set_defaults(fn=cmd_faces)

"""Command-line commands for dataset formats: DeepFashion2 conversion and the Custom Labels manifest check."""

from __future__ import annotations

import argparse
import json
from typing import Any

from services.config import Workspace


def cmd_deepfashion2(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from services.config import object_store
    from services.dataset_formats import deepfashion2, parse_merge

    store = object_store(ws.db())
    out = deepfashion2(store, annotations=args.annotations, images=args.images, merge=parse_merge(args.merge or []),
                       job_name=args.job_name)
    store.write(args.coco, json.dumps(out["coco"]).encode())
    store.write(args.manifest, out["manifest"].encode())
    return {"images": out["images"], "boxes": out["boxes"], "categories": out["categories"], "coco": args.coco,
            "manifest": args.manifest, "errors": out["errors"][:50], "error_count": len(out["errors"])}


def cmd_check_manifest(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    from services.config import object_store
    from services.dataset_formats import check_custom_labels

    result = check_custom_labels(object_store(ws.db()).read(args.manifest).decode("utf-8", errors="replace"),
                                 attribute=args.attribute)
    return {**result, "problems": result["problems"][:200], "problem_count": len(result["problems"])}


def add_commands(sub: Any) -> None:
    s = sub.add_parser("deepfashion2", help="convert DeepFashion2 annotations to COCO and a Ground Truth box manifest")
    s.add_argument("--annotations", required=True, help="folder or s3:// prefix of the per-image JSON files")
    s.add_argument("--images", required=True, help="folder or s3:// prefix of the images (<same name>.jpg)")
    s.add_argument("--coco", required=True, help="where to write the COCO JSON")
    s.add_argument("--manifest", required=True, help="where to write the Ground Truth manifest (JSON Lines)")
    s.add_argument("--merge", action="append", help="merge a category into another: sling=vest (repeatable)")
    s.add_argument("--job-name", default="deepfashion2")
    s.set_defaults(fn=cmd_deepfashion2)
    s = sub.add_parser("check-manifest", help="check a manifest against Rekognition Custom Labels' rules")
    s.add_argument("--manifest", required=True)
    s.add_argument("--attribute", help="the label attribute (default: every one with -metadata)")
    s.set_defaults(fn=cmd_check_manifest)

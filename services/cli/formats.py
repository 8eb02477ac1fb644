"""Command-line commands for dataset formats: DeepFashion2 conversion, the Custom Labels manifest check,
conversions between Ground Truth manifests, COCO and a folder per label, and the labels' export and COCO import."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from services.cli.common import cli_actor
from services.core.config import Workspace, object_store
from services.datasets.convert import FORMATS, convert
from services.datasets.formats import check_custom_labels, deepfashion2, parse_merge
from services.datasets.groundtruth import NothingConverted, where
from services.models.label_export import export_labels, import_coco_labels

ERRORS_SHOWN = 50


def print_errors(errors: list[dict[str, Any]]) -> None:
    for err in errors[:ERRORS_SHOWN]:
        print(f"skipped {where(err)}: {err['reason']}", file=sys.stderr)
    if len(errors) > ERRORS_SHOWN:
        print(f"... and {len(errors) - ERRORS_SHOWN} more", file=sys.stderr)


def _report(out: dict[str, Any]) -> dict[str, Any]:
    """Print the first errors on stderr ("line 3: ...") and the notes (what the target format cannot hold), and
    keep the errors short in the summary."""
    errors = out.get("errors") or []
    print_errors(errors)
    for note in out.get("notes") or []:
        print(f"note: {note}", file=sys.stderr)
    return {**out, "errors": errors[:ERRORS_SHOWN], "error_count": len(errors)}


def cmd_deepfashion2(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    store = object_store(ws.db())
    out = deepfashion2(store, annotations=args.annotations, images=args.images, merge=parse_merge(args.merge or []),
                       job_name=args.job_name)
    if not out["images"]:
        print_errors(out["errors"])
        raise NothingConverted(f"{args.annotations} (deepfashion2)", out["errors"])
    store.write(args.coco, json.dumps(out["coco"]).encode())
    store.write(args.manifest, out["manifest"].encode())
    return {"images": out["images"], "boxes": out["boxes"], "categories": out["categories"], "coco": args.coco,
            "manifest": args.manifest, "errors": out["errors"][:50], "error_count": len(out["errors"])}


def cmd_check_manifest(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    result = check_custom_labels(object_store(ws.db()).read(args.manifest).decode("utf-8", errors="replace"),
                                 attribute=args.attribute)
    return {**result, "problems": result["problems"][:200], "problem_count": len(result["problems"])}


def cmd_convert(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    try:
        out = convert(object_store(ws.db()), source=args.source, target=args.target, input=args.input,
                      output=args.output, images=args.images, attribute=args.attribute, job_name=args.job_name)
    except NothingConverted as exc:  # every refusal, with its line, before the one-line error and exit 1
        print_errors(exc.errors)
        raise
    return _report({"from": args.source, "to": args.target, "output": args.output, **out})


def cmd_export_labels(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    out = export_labels(db, store=object_store(db), actor=cli_actor(), format=args.format, output=args.output,
                        images_root=args.images, include_decisions=not args.imported_only)
    if not out["images"]:  # every photo refused (unreadable, a bad label): say why, and exit 1
        print_errors(out["errors"])
        raise NothingConverted(f"export-labels to {args.output}", out["errors"])
    return _report({"output": args.output, **out})


def cmd_import_coco_labels(ws: Workspace, args: argparse.Namespace) -> dict[str, Any]:
    db = ws.db()
    try:
        out = import_coco_labels(db, uri=args.coco, store=object_store(db), actor=cli_actor(), images_root=args.images,
                                 label_map=parse_merge(args.map or []))
    except NothingConverted as exc:  # every refusal, with its image, before the one-line error and exit 1
        print_errors(exc.errors)
        raise
    return _report(out)


def add_commands(sub: Any) -> None:
    s = sub.add_parser("convert", help="convert labels between Ground Truth manifests, COCO and a folder per label")
    s.add_argument("--from", dest="source", required=True, choices=FORMATS,
                   help="groundtruth (image classification), groundtruth-multilabel, groundtruth-boxes, coco or folders")
    s.add_argument("--to", dest="target", required=True, choices=FORMATS,
                   help="coco is detection with groundtruth-boxes, several labels an image with groundtruth-multilabel, "
                        "one otherwise")
    s.add_argument("--input", required=True, help="the manifest or COCO file, or the folder/s3:// prefix of folders")
    s.add_argument("--output", required=True, help="the file to write, or an empty folder/s3:// prefix for folders")
    s.add_argument("--images", help="root that COCO file_names are relative to (default for folders: the input)")
    s.add_argument("--attribute", help="Ground Truth label attribute to read (default: the line's only one; a line "
                   "with several, such as a job and its -adjustment, is refused until one is named) or write")
    s.add_argument("--job-name", default="converted", help="Ground Truth job-name for lines written anew")
    s.set_defaults(fn=cmd_convert)
    s = sub.add_parser("export-labels", help="export the labelled photos as a folder per label or COCO")
    s.add_argument("--format", choices=["folders", "coco", "groundtruth"], default="folders")
    s.add_argument("--output", required=True, help="an empty folder/s3:// prefix (folders) or a file")
    s.add_argument("--images", help="coco: make file_names relative to this root when photos lie under it")
    s.add_argument("--imported-only", action="store_true", help="leave out inspectors' decisions")
    s.set_defaults(fn=cmd_export_labels)
    s = sub.add_parser("import-coco-labels", help="import a COCO classification file (one label per image) as labels")
    s.add_argument("--coco", required=True)
    s.add_argument("--images", help="root that the file_names are relative to")
    s.add_argument("--map", action="append", metavar="FROM=CLASS",
                   help="read a label as one of the classes, e.g. --map cat=product (repeatable)")
    s.set_defaults(fn=cmd_import_coco_labels)

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

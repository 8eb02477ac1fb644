"""The console's labels out as a folder per label or COCO classification, and COCO classification labels in.

Exported labels are ``services.models.training.training_examples``: one per photo, imported labels with the latest
human decision winning (the Ground Truth export of decisions is ``services.hitl.export.to_groundtruth``). Class
indexes follow the console's class order, as in that export, so COCO category ids are that index + 1.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from services.core.audit import record
from services.core.authz import require
from services.core.config import CLASSES
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.convert import read_json, write_labelled
from services.datasets.groundtruth import NothingConverted
from services.datasets.layouts import Labelled, read_coco_classes
from services.models.training import _add_labels, to_classes, training_examples

LABEL_FORMATS = ("folders", "coco", "groundtruth")


def export_labels(db: sqlite_utils.Database, *, store: ObjectStore, actor: str, format: str, output: str,
                  images_root: str | None = None, include_decisions: bool = True) -> dict[str, Any]:
    """Write the labelled photos to ``output`` as ``folders`` (``output/<label>/<photo>``, photos copied),
    ``coco`` (classification; file_name relative to ``images_root`` when under it) or ``groundtruth``.
    Returns {"format", "images", "labels", "errors"}. Raises PermissionDenied unless ``actor`` manages label
    quality, InvalidInput for a bad format, no labels or a non-empty output folder, and the store's errors."""
    require(db, actor=actor, action="quality.manage")
    if format not in LABEL_FORMATS:
        raise InvalidInput(f"unknown label export format {format!r}: use one of {', '.join(LABEL_FORMATS)}")

    examples = training_examples(db, include_decisions=include_decisions)
    if not examples:
        raise InvalidInput("no labelled photos to export: import labels or decide photos first")
    records = [Labelled(source=e["uri"], label=e["label"], origin={"uri": e["uri"]},
                        class_id=CLASSES.index(e["label"]) if e["label"] in CLASSES else None)
               for e in examples]
    out = write_labelled(store, format, records, output=output, images=images_root, job_name="review-console")
    record(db, actor=actor, action="labels.export", target=output, detail={"format": format, "images": out["images"]})
    return {"format": format, **out}


def import_coco_labels(db: sqlite_utils.Database, *, uri: str, store: ObjectStore, actor: str,
                       images_root: str | None = None, label_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Import a COCO classification file (one annotation per image, no bbox) as labels (source ``coco``); images
    with no, two or unknown labels are reported and the rest load. Relative file_names lie under
    ``images_root``; ``label_map`` renames labels to classes first (``{"cat": "product"}``). Raises
    PermissionDenied unless ``actor`` may run jobs, InvalidInput when the file is not COCO or the map is bad,
    NothingConverted (an InvalidInput) with every refused image and its reason when no image can be used."""
    require(db, actor=actor, action="jobs.manage")

    records, errors = read_coco_classes(read_json(store, uri), images_root=images_root)
    items = to_classes(records, errors, label_map=label_map)
    if not items:
        raise NothingConverted(f"{uri}: no usable COCO images ({len(errors)} bad)", errors)
    out = _add_labels(db, items, source="coco", store=store)
    out["images"], out["errors"] = len(items), errors
    record(db, actor=actor, action="labels.import", target=uri, detail={"images": len(items), "format": "coco"})
    return out

"""Dataset formats: DeepFashion2 annotations to COCO and to a SageMaker Ground Truth bounding-box manifest (with
a category-merge map), and the check of a manifest against Amazon Rekognition Custom Labels' rules.

DeepFashion2 keeps one JSON per image: ``source``, ``pair_id`` and ``item1``, ``item2``, ... each with
``category_name``, ``bounding_box`` [x1, y1, x2, y2], ``landmarks``, ``segmentation``, ``scale``,
``occlusion``, ``zoom_in``, ``viewpoint``. Category names are normalised to snake case ("sling dress" is
``sling_dress``) before the merge map applies, so ``sling_dress -> vest_dress`` merges them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

from PIL import Image

from services.core.clock import now_iso
from services.core.errors import ConsoleError, InvalidInput
from services.core.storage import ObjectStore, is_s3, join, split_s3

CUSTOM_LABELS_MAX_LINES = 250_000
CUSTOM_LABELS_LABELS = (2, 250)
CUSTOM_LABELS_MAX_BOXES = 50


def norm(name: str) -> str:
    return "_".join(str(name).strip().lower().replace("-", " ").split())


def visible(landmarks: list[Any]) -> int:
    """How many of the [x, y, v, ...] landmarks are labelled (v > 0: 1 occluded, 2 visible), as DeepFashion2's own
    COCO converter counts ``num_keypoints``; v = 0 marks a landmark that is not there. Raises nothing."""
    return sum(1 for v in landmarks[2::3] if isinstance(v, (int, float)) and v > 0)


def parse_merge(pairs: Iterable[str]) -> dict[str, str]:
    """``["sling=vest", "sling_dress=vest_dress"]`` as a map. Raises InvalidInput for a pair without '='."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidInput(f"a merge is written from=to (for example sling=vest), not {pair!r}")
        src, dst = pair.split("=", 1)
        out[norm(src)] = norm(dst)
    return out


def _items(doc: dict[str, Any], where: str) -> list[dict[str, Any]]:
    items = [v for k, v in sorted(doc.items()) if k.startswith("item") and isinstance(v, dict)]
    for item in items:
        box = item.get("bounding_box")
        if not item.get("category_name") or not isinstance(box, list) or len(box) != 4:
            raise InvalidInput(f"{where}: every item needs category_name and bounding_box [x1, y1, x2, y2]")
    return items


def deepfashion2(store: ObjectStore, *, annotations: str, images: str, merge: dict[str, str] | None = None,
                 job_name: str = "deepfashion2") -> dict[str, Any]:
    """Convert every ``*.json`` under ``annotations`` (images ``<same name>.jpg`` under ``images``). Returns
    {"coco": dict, "manifest": str (JSON Lines), "images", "boxes", "categories", "errors": [{file, reason}]}.
    A bad annotation file or a missing image is reported and skipped; the rest convert."""
    merge = merge or {}
    coco: dict[str, Any] = {"info": {"description": f"converted from DeepFashion2 ({job_name})", "date_created": now_iso()},
                            "images": [], "annotations": [], "categories": []}
    cat_ids: dict[str, int] = {}
    lines, errors = [], []
    for obj in store.list(annotations, suffixes=(".json",)):
        try:
            doc = json.loads(store.read(obj.uri))
            if not isinstance(doc, dict):
                raise InvalidInput(f"{obj.key}: not a JSON object")
            items = _items(doc, obj.key)
            image_uri = join(images, obj.key[:-5] + ".jpg")
            with Image.open(io.BytesIO(store.read(image_uri))) as img:
                width, height = img.size
        except json.JSONDecodeError as exc:
            errors.append({"file": obj.key, "reason": f"not valid JSON ({exc.msg}, line {exc.lineno})"})
            continue
        except (ConsoleError, OSError) as exc:
            errors.append({"file": obj.key, "reason": str(exc)})
            continue
        image_id = len(coco["images"]) + 1
        coco["images"].append({"id": image_id, "file_name": obj.key[:-5] + ".jpg", "width": width, "height": height,
                               "source": doc.get("source"), "pair_id": doc.get("pair_id")})
        boxes = []
        for item in items:
            name = merge.get(norm(item["category_name"]), norm(item["category_name"]))
            cid = cat_ids.setdefault(name, len(cat_ids) + 1)
            x1, y1, x2, y2 = (float(v) for v in item["bounding_box"])
            x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
            w, h = max(0.0, x2 - x1), max(0.0, y2 - y1)
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": cid, "bbox": [x1, y1, w, h],
                "area": w * h, "iscrowd": 0, "segmentation": item.get("segmentation") or [],
                "keypoints": item.get("landmarks") or [], "num_keypoints": visible(item.get("landmarks") or []),
                "attributes": {k: item.get(k) for k in ("scale", "occlusion", "zoom_in", "viewpoint", "style") if k in item},
            })
            boxes.append({"class_id": cid - 1, "left": round(x1), "top": round(y1), "width": round(w), "height": round(h)})
        lines.append({"source-ref": image_uri, "bounding-box": {"image_size": [{"width": width, "height": height,
                                                                                 "depth": 3}], "annotations": boxes},
                      "bounding-box-metadata": {"objects": [{"confidence": 1.0} for _ in boxes], "class-map": None,
                                                "type": "groundtruth/object-detection", "human-annotated": "yes",
                                                "creation-date": now_iso()[:19], "job-name": f"labeling-job/{job_name}"}})
    coco["categories"] = [{"id": cid, "name": name, "supercategory": "clothing"} for name, cid in cat_ids.items()]
    class_map = {str(cid - 1): name for name, cid in cat_ids.items()}
    for line in lines:
        line["bounding-box-metadata"]["class-map"] = class_map
    return {"coco": coco, "manifest": "".join(json.dumps(x) + "\n" for x in lines), "images": len(lines),
            "boxes": len(coco["annotations"]), "categories": sorted(cat_ids), "errors": errors}


def check_custom_labels(text: str, *, attribute: str | None = None) -> dict[str, Any]:
    """Check a Ground Truth manifest against Rekognition Custom Labels' rules: at most 250,000 lines, 2 to 250
    labels, at most 50 boxes an image, every image in one S3 bucket, and lines it can read. Returns
    {"ok", "lines", "labels", "problems": [{"line", "rule", "detail"}]} (manifest-wide rules have line None)."""
    problems: list[dict[str, Any]] = []
    labels: set[str] = set()
    first_bucket: str | None = None
    n = 0
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append({"line": n, "rule": "json", "detail": f"not valid JSON ({exc.msg})"})
            continue
        ref = line.get("source-ref") if isinstance(line, dict) else None
        if not ref:
            problems.append({"line": n, "rule": "source-ref", "detail": "no source-ref"})
            continue
        if not is_s3(ref):
            problems.append({"line": n, "rule": "s3", "detail": f"{ref} is not in S3"})
        else:
            bucket = split_s3(ref)[0]
            first_bucket = first_bucket or bucket
            if bucket != first_bucket:
                problems.append({"line": n, "rule": "bucket", "detail": f"image in bucket {bucket}, but the manifest "
                                 f"started with {first_bucket} (Custom Labels reads one bucket)"})
        meta_keys = [k for k in line if k.endswith("-metadata")]
        attrs = [attribute] if attribute else [k[: -len("-metadata")] for k in meta_keys]
        if not attrs or any(a not in line for a in attrs):
            problems.append({"line": n, "rule": "attribute",
                             "detail": f"no label attribute with its -metadata (found {', '.join(sorted(line))})"})
            continue
        for attr in attrs:
            meta = line.get(f"{attr}-metadata") or {}
            value = line[attr]
            if isinstance(value, dict) and "annotations" in value:  # bounding boxes
                boxes = value.get("annotations") or []
                if len(boxes) > CUSTOM_LABELS_MAX_BOXES:
                    problems.append({"line": n, "rule": "boxes", "detail": f"{len(boxes)} boxes (at most {CUSTOM_LABELS_MAX_BOXES})"})
                class_map = meta.get("class-map") or {}
                labels.update(class_map.get(str(b.get("class_id")), str(b.get("class_id"))) for b in boxes)
            elif isinstance(value, list) and isinstance(meta.get("class-map"), dict):  # multi-label
                labels.update(str(meta["class-map"].get(str(v), v)) for v in value)
            else:
                labels.add(str(meta.get("class-name", value)))
    if n > CUSTOM_LABELS_MAX_LINES:
        problems.append({"line": None, "rule": "lines", "detail": f"{n:,} lines (at most {CUSTOM_LABELS_MAX_LINES:,})"})
    lo, hi = CUSTOM_LABELS_LABELS
    if not lo <= len(labels) <= hi:
        problems.append({"line": None, "rule": "labels", "detail": f"{len(labels)} labels (needs {lo} to {hi})"})
    return {"ok": not problems, "lines": n, "labels": sorted(labels), "problems": problems}

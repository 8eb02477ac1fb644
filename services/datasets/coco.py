"""Ground Truth bounding-box manifests to COCO detection and back.

- ``class-map`` {"0": "vest"} <-> ``categories`` [{"id": 1, "name": "vest"}]: category id = class_id + 1
  (COCO ids start at 1); a name met again under another class id keeps its first category.
- ``left/top/width/height`` <-> ``bbox`` [x, y, w, h]; COCO boxes are rounded to whole pixels for Ground Truth.
- ``image_size`` <-> image ``width``/``height`` (and ``depth``); ``source-ref`` <-> ``file_name``, relative to an
  images root when the image lies under it, else the absolute URI.
- the ``objects[i]`` metadata (confidence) <-> annotation ``attributes``; the other metadata (job-name,
  human-annotated, creation-date, type) and the attribute name <-> image ``groundtruth``, so a manifest comes
  back from COCO as it was.

An image converts whole or not at all: a bad line, a box outside its image or a missing image is reported (by
line, image or annotation id) and left out, and the rest convert.
"""

from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from services.core.clock import now_iso
from services.core.errors import ConsoleError, InvalidInput
from services.core.storage import ObjectStore
from services.datasets.groundtruth import (
    BOX_KEYS,
    BOXES_TYPE,
    boxes_attribute,
    keys,
    parse_lines,
    relative,
    resolve,
    source_ref,
)

DEFAULT_ATTRIBUTE = "bounding-box"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{what} must be a number, not {value!r}")
    return value


def check_box(box: list[float], width: int, height: int, what: str) -> None:
    """Raise InvalidInput unless [x, y, w, h] is a non-empty box inside a width x height image."""
    x, y, w, h = box
    if w <= 0 or h <= 0:
        raise InvalidInput(f"{what} {box} is empty (width and height must be above 0)")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise InvalidInput(f"{what} {box} lies outside the {width}x{height} image")


def _image_size(value: dict[str, Any], uri: str, store: ObjectStore | None) -> tuple[int, int, int]:
    sizes = value.get("image_size")
    if isinstance(sizes, list) and sizes and isinstance(sizes[0], dict):
        size = sizes[0]
        w, h = _number(size.get("width"), "image_size width"), _number(size.get("height"), "image_size height")
        if w <= 0 or h <= 0:
            raise InvalidInput(f"image_size {w}x{h} is empty")
        return int(w), int(h), int(size.get("depth") or 3)
    if store is None:
        raise InvalidInput("no image_size [{width, height, depth}] (and no store to read the image's size from)")
    with Image.open(io.BytesIO(store.read(uri))) as img:
        return img.width, img.height, len(img.getbands())


def groundtruth_boxes_to_coco(text: str, *, attribute: str | None = None, images_root: str | None = None,
                              store: ObjectStore | None = None) -> dict[str, Any]:
    """Convert a Ground Truth bounding-box manifest. With a ``store``, every image must exist (and lines without
    image_size get it from the image). Returns {"coco", "images", "boxes", "categories", "errors": [{"line",
    "reason"}]}; bad lines are reported and left out. Raises nothing for bad lines."""
    coco: dict[str, Any] = {"info": {"description": "converted from a Ground Truth bounding-box manifest",
                                     "date_created": now_iso()}, "images": [], "annotations": [], "categories": []}
    cat_of: dict[str, int] = {}  # name -> category id
    seen: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    for n, rec, bad in parse_lines(text):
        try:
            if rec is None:
                raise InvalidInput(bad or "unreadable line")
            uri = source_ref(rec)
            attr = boxes_attribute(rec, attribute)
            value, meta = rec[attr], rec[f"{attr}-metadata"]
            if uri in seen:
                raise InvalidInput(f"{uri} is already on line {seen[uri]}")
            class_map = {str(k): str(v) for k, v in meta["class-map"].items()}
            objects = meta.get("objects") if isinstance(meta.get("objects"), list) else []
            if store is not None and "image_size" in value and not store.exists(uri):
                raise InvalidInput(f"image not found: {uri}")
            width, height, depth = _image_size(value, uri, store)
            boxes = []
            for i, box in enumerate(value["annotations"], start=1):
                if not isinstance(box, dict) or any(k not in box for k in BOX_KEYS):
                    found = keys(box) if isinstance(box, dict) else type(box).__name__
                    raise InvalidInput(f"box {i} needs {', '.join(BOX_KEYS)}; found {found}")
                name = class_map.get(str(box["class_id"]))
                if name is None:
                    raise InvalidInput(f"box {i}: class_id {box['class_id']} is not in the class-map "
                                       f"({', '.join(class_map) or 'empty'})")
                xywh = [_number(box[k], f"box {i} {k}") for k in ("left", "top", "width", "height")]
                check_box(xywh, width, height, f"box {i}")
                obj = objects[i - 1] if i - 1 < len(objects) and isinstance(objects[i - 1], dict) else None
                boxes.append((name, xywh, obj))
        except (ConsoleError, OSError) as exc:
            errors.append({"line": n, "reason": str(exc)})
            continue
        seen[uri] = n
        for class_id, name in sorted(class_map.items(), key=lambda kv: (len(kv[0]), kv[0])):
            if name not in cat_of:
                wanted = int(class_id) + 1 if class_id.isdigit() else 0
                cat_of[name] = wanted if wanted and wanted not in cat_of.values() else max([0, *cat_of.values()]) + 1
        image_id = len(coco["images"]) + 1
        extra = {k: v for k, v in meta.items() if k not in ("objects", "class-map")}
        coco["images"].append({"id": image_id, "file_name": relative(uri, images_root), "width": width,
                               "height": height, "depth": depth, "groundtruth": {"attribute": attr, "metadata": extra}})
        for name, (x, y, w, h), obj in boxes:
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": cat_of[name],
                   "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            if obj is not None:
                ann["attributes"] = dict(obj)
            coco["annotations"].append(ann)
    coco["categories"] = sorted(({"id": cid, "name": name} for name, cid in cat_of.items()), key=lambda c: c["id"])
    return {"coco": coco, "images": len(coco["images"]), "boxes": len(coco["annotations"]),
            "categories": sorted(cat_of), "errors": errors}


def check_structure(coco: Any) -> None:
    """Raise InvalidInput unless ``coco`` is an object with images, annotations and categories lists."""
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        found = keys(coco) if isinstance(coco, dict) else type(coco).__name__
        raise InvalidInput(f"a COCO file is an object with images, annotations and categories lists; found {found}")


def coco_categories(coco: dict[str, Any], errors: list[dict[str, Any]]) -> dict[int, str]:
    """{category id: name} of the valid categories; bad ones are added to ``errors``."""
    cats: dict[int, str] = {}
    for cat in coco["categories"]:
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or cid < 1 or not isinstance(name, str) or not name:
            errors.append({"category_id": cid, "reason": f"a category needs an id of 1 or more and a name; got {cat!r}"})
        elif cid in cats:
            errors.append({"category_id": cid, "reason": f"category id {cid} is used twice ({cats[cid]}, {name})"})
        else:
            cats[cid] = name
    return cats


def coco_images(coco: dict[str, Any], errors: list[dict[str, Any]], *, images_root: str | None,
                sized: bool = True) -> dict[int, tuple[dict[str, Any], str]]:
    """{image id: (image, uri)} of the valid images (``sized``: with positive integer width and height)."""
    out: dict[int, tuple[dict[str, Any], str]] = {}
    for img in coco["images"]:
        try:
            if not isinstance(img, dict) or not isinstance(img.get("id"), int) or not isinstance(img.get("file_name"), str):
                raise InvalidInput(f"an image needs an integer id and a file_name; got {img!r}")
            if img["id"] in out:
                raise InvalidInput(f"image id {img['id']} is used twice")
            w, h = img.get("width"), img.get("height")
            if sized and not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
                raise InvalidInput(f"image {img['id']} needs a positive integer width and height; got {w!r}, {h!r}")
            out[img["id"]] = (img, resolve(img["file_name"], images_root))
        except InvalidInput as exc:
            errors.append({"image_id": img.get("id") if isinstance(img, dict) else None, "reason": str(exc)})
    return out


def coco_to_groundtruth_boxes(coco: Any, *, images_root: str | None = None, attribute: str | None = None,
                              job_name: str = "coco", store: ObjectStore | None = None) -> dict[str, Any]:
    """Convert a COCO detection file to a Ground Truth bounding-box manifest (JSON Lines, one line per image; an
    image without annotations is a line without boxes). ``attribute`` defaults to the one an image was converted
    from, else bounding-box. With a ``store``, every image must exist. Returns {"manifest", "lines", "boxes",
    "errors": [{"image_id" | "annotation_id" | "category_id", "reason"}]}. Raises InvalidInput when ``coco`` is not
    a COCO object."""
    check_structure(coco)
    errors: list[dict[str, Any]] = []
    cats = coco_categories(coco, errors)
    images = coco_images(coco, errors, images_root=images_root)
    class_map = {str(cid - 1): name for cid, name in sorted(cats.items())}
    boxes: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    broken: dict[int, str] = {}
    for ann in coco["annotations"]:
        aid = ann.get("id") if isinstance(ann, dict) else None
        try:
            if not isinstance(ann, dict) or ann.get("image_id") not in images:
                raise InvalidInput(f"annotation {aid} names no known image ({ann.get('image_id') if isinstance(ann, dict) else ann!r})")
            img = images[ann["image_id"]][0]
            bbox = ann.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise InvalidInput(f"annotation {aid} has no bbox [x, y, w, h] (an image-level label? convert "
                                   "classification files with --to groundtruth)")
            if ann.get("category_id") not in cats:
                raise InvalidInput(f"annotation {aid}: category_id {ann.get('category_id')!r} is not a valid category")
            xywh = [_number(v, f"annotation {aid} bbox") for v in bbox]
            check_box(xywh, img["width"], img["height"], f"annotation {aid} bbox")
        except InvalidInput as exc:
            errors.append({"annotation_id": aid, "reason": str(exc)})
            if isinstance(ann, dict) and ann.get("image_id") in images:
                broken.setdefault(ann["image_id"], str(exc))
            continue
        left, top = round(xywh[0]), round(xywh[1])
        width, height = min(round(xywh[2]), img["width"] - left), min(round(xywh[3]), img["height"] - top)
        attrs = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        boxes[ann["image_id"]].append({"box": {"class_id": ann["category_id"] - 1, "left": left, "top": top,
                                               "width": max(1, width), "height": max(1, height)},
                                       "confidence": attrs.get("confidence", 1.0)})
    lines, n_boxes = [], 0
    for image_id, (img, uri) in images.items():
        if image_id in broken:
            errors.append({"image_id": image_id, "reason": f"left out: {broken[image_id]}"})
            continue
        try:
            if store is not None and not store.exists(uri):
                raise InvalidInput(f"image not found: {uri}")
        except ConsoleError as exc:
            errors.append({"image_id": image_id, "reason": str(exc)})
            continue
        gt = img.get("groundtruth") if isinstance(img.get("groundtruth"), dict) else {}
        attr = attribute or gt.get("attribute") or DEFAULT_ATTRIBUTE
        meta = {"type": BOXES_TYPE, "human-annotated": "yes", "creation-date": now_iso()[:19],
                "job-name": f"labeling-job/{job_name}", **(gt.get("metadata") or {})}
        lines.append({"source-ref": uri,
                      attr: {"image_size": [{"width": img["width"], "height": img["height"],
                                             "depth": img.get("depth") or 3}],
                             "annotations": [b["box"] for b in boxes[image_id]]},
                      f"{attr}-metadata": {"objects": [{"confidence": b["confidence"]} for b in boxes[image_id]],
                                           "class-map": class_map, **meta}})
        n_boxes += len(boxes[image_id])
    return {"manifest": "".join(json.dumps(line) + "\n" for line in lines), "lines": len(lines), "boxes": n_boxes,
            "errors": errors}

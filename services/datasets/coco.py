"""Ground Truth bounding-box manifests to COCO detection and back.

- ``class-map`` {"0": "vest"} <-> ``categories`` [{"id": 1, "name": "vest"}]: category id = class_id + 1
  (COCO ids start at 1); a name met again under another class id keeps its first category, and each line's own
  class-map (and its own class ids where they differ) stays in the image's ``groundtruth`` for the way back.
- ``left/top/width/height`` <-> ``bbox`` [x, y, w, h]; COCO boxes are rounded to whole pixels (halves up).
- ``image_size`` <-> image ``width``/``height`` (and ``depth``); ``source-ref`` <-> ``file_name``, relative to an
  images root when the image lies under it, else the absolute URI.
- the ``objects[i]`` metadata <-> annotation ``attributes``; the other metadata, the attribute name and the line's
  other keys (another job's labels) <-> image ``groundtruth``, so a manifest comes back from COCO as it was.
- COCO to Ground Truth: a box's confidence is ``attributes.confidence``, else ``score``, else none; the image
  fields boxes have no place for (id, license, coco_url, ...) go to the line's ``coco-image`` and back. Crowd
  regions and segmentation cannot be held: they are left out and said in "notes", as is a category 0 that no
  annotation uses.

An image converts whole or not at all: a bad line, a box outside its image or a missing image is reported (by
line, image or annotation id) and left out, and the rest convert.
"""
from __future__ import annotations

import io
import json
from typing import Any

from PIL import Image

from services.core.clock import now_iso
from services.core.errors import ConsoleError, InvalidInput, PermissionDenied, StorageError
from services.core.storage import ObjectStore
from services.datasets.groundtruth import (
    BOX_KEYS,
    BOXES_TYPE,
    boxes_attribute,
    boxes_attributes,
    keys,
    parse_lines,
    relative,
    resolve,
    source_ref,
    whole,
)

DEFAULT_ATTRIBUTE = "bounding-box"
COCO_IMAGE = "coco-image"  # a Ground Truth line's key for the COCO image fields boxes cannot hold
IMAGE_KEYS = ("id", "file_name", "width", "height", "depth", "groundtruth")


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


def _exists(store: ObjectStore, uri: str, *, sized: bool, unchecked: list[str]) -> None:
    """Raise InvalidInput when the image is not there. When the line gives its image_size the image is not
    needed, so a store that cannot tell (no credentials, no access, outside the storage roots) is noted in
    ``unchecked``, not a refusal; without image_size that error is raised."""
    try:
        found = store.exists(uri)
    except (StorageError, PermissionDenied) as exc:
        if not sized:
            raise
        unchecked.append(str(exc))
        return
    if not found:
        raise InvalidInput(f"image not found: {uri}")


def groundtruth_boxes_to_coco(text: str, *, attribute: str | None = None, images_root: str | None = None,
                              store: ObjectStore | None = None) -> dict[str, Any]:
    """Convert a Ground Truth bounding-box manifest. With a ``store``, every image must exist (a line with
    image_size converts when the store cannot tell, with a note) and lines without image_size get it from the
    image. A line with several box attributes (a job and its adjustment) needs ``attribute``; the line's other
    keys ride along in the image's ``groundtruth`` and come back on the way back. Returns {"coco", "images",
    "boxes", "categories", "attributes": {name: lines}, "errors": [{"line", "reason"}], "notes": [str]}.
    Raises nothing for bad lines."""
    coco: dict[str, Any] = {"info": {"description": "converted from a Ground Truth bounding-box manifest",
                                     "date_created": now_iso()}, "images": [], "annotations": [], "categories": []}
    cat_of: dict[str, int] = {}  # name -> category id
    seen: dict[str, int] = {}
    found: dict[str, int] = {}
    errors: list[dict[str, Any]] = []
    unchecked: list[str] = []
    used_ids: set[int] = set()
    for n, rec, bad in parse_lines(text):
        try:
            if rec is None:
                raise InvalidInput(bad or "unreadable line")
            for name in boxes_attributes(rec):
                found[name] = found.get(name, 0) + 1
            uri = source_ref(rec)
            attr = boxes_attribute(rec, attribute)
            value, meta = rec[attr], rec[f"{attr}-metadata"]
            if uri in seen:
                raise InvalidInput(f"{uri} is already on line {seen[uri]}")
            class_map = {str(k): str(v) for k, v in meta["class-map"].items()}
            objects = meta.get("objects") if isinstance(meta.get("objects"), list) else []
            if store is not None:
                _exists(store, uri, sized="image_size" in value, unchecked=unchecked)
            width, height, depth = _image_size(value, uri, store)
            boxes = []
            for i, box in enumerate(value["annotations"], start=1):
                if not isinstance(box, dict) or any(k not in box for k in BOX_KEYS):
                    found_keys = keys(box) if isinstance(box, dict) else type(box).__name__
                    raise InvalidInput(f"box {i} needs {', '.join(BOX_KEYS)}; found {found_keys}")
                name = class_map.get(str(box["class_id"]))
                if name is None:
                    raise InvalidInput(f"box {i}: class_id {box['class_id']} is not in the class-map "
                                       f"({', '.join(class_map) or 'empty'})")
                xywh = [_number(box[k], f"box {i} {k}") for k in ("left", "top", "width", "height")]
                check_box(xywh, width, height, f"box {i}")
                obj = objects[i - 1] if i - 1 < len(objects) and isinstance(objects[i - 1], dict) else None
                boxes.append((name, box["class_id"], xywh, obj))
        except (ConsoleError, OSError) as exc:
            errors.append({"line": n, "reason": str(exc)})
            continue
        seen[uri] = n
        for class_id, name in sorted(class_map.items(), key=lambda kv: (len(kv[0]), kv[0])):
            if name not in cat_of:
                wanted = int(class_id) + 1 if class_id.isdigit() else 0
                cat_of[name] = wanted if wanted and wanted not in cat_of.values() else max([0, *cat_of.values()]) + 1
        extra = {k: v for k, v in meta.items() if k not in ("objects", "class-map")}
        gt: dict[str, Any] = {"attribute": attr, "metadata": extra}
        if "objects" not in meta:
            gt["objects"] = False
        gt["class-map"] = class_map  # this line's own, which the file's categories may not match
        if any(cat_of[name] - 1 != class_id for name, class_id, _, _ in boxes):
            gt["class_ids"] = [class_id for _, class_id, _, _ in boxes]
        other = {k: v for k, v in rec.items() if k not in ("source-ref", attr, f"{attr}-metadata", COCO_IMAGE)}
        if other:
            gt["other"] = other
        image = {k: v for k, v in (rec.get(COCO_IMAGE) or {}).items() if k not in IMAGE_KEYS}
        wanted_id = (rec.get(COCO_IMAGE) or {}).get("id")
        image_id = wanted_id if isinstance(wanted_id, int) and wanted_id not in used_ids else \
            max([0, *used_ids]) + 1
        used_ids.add(image_id)
        coco["images"].append({"id": image_id, "file_name": relative(uri, images_root), "width": width,
                               "height": height, "depth": depth, **image, "groundtruth": gt})
        for name, _, (x, y, w, h), obj in boxes:
            ann = {"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": cat_of[name],
                   "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
            if obj is not None:
                ann["attributes"] = dict(obj)
            coco["annotations"].append(ann)
    coco["categories"] = sorted(({"id": cid, "name": name} for name, cid in cat_of.items()), key=lambda c: c["id"])
    notes = []
    if len(found) > 1:
        notes.append("bounding-box attributes found (lines): " + ", ".join(f"{k} ({v})" for k, v in found.items())
                     + f"; converted {attribute or next(iter(found))}; the others ride along in each image's "
                       "groundtruth.other")
    if unchecked:
        notes.append(f"{len(unchecked)} images not checked (their lines give image_size, so they converted): "
                     f"{unchecked[0]}")
    return {"coco": coco, "images": len(coco["images"]), "boxes": len(coco["annotations"]),
            "categories": sorted(cat_of), "attributes": found, "errors": errors, "notes": notes}


def check_structure(coco: Any) -> None:
    """Raise InvalidInput unless ``coco`` is an object with images, annotations and categories lists."""
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations",
                                                                                       "categories")):
        found = keys(coco) if isinstance(coco, dict) else type(coco).__name__
        raise InvalidInput(f"a COCO file is an object with images, annotations and categories lists; found {found}")


def coco_categories(coco: dict[str, Any], errors: list[dict[str, Any]], *,
                    notes: list[str] | None = None) -> dict[int, str]:
    """{category id: name} of the valid categories; bad ones are added to ``errors``. A category id 0 that no
    annotation uses (a Roboflow export's dataset-level category) is left out with a line in ``notes``. Raises
    nothing."""
    used = {a.get("category_id") for a in coco["annotations"] if isinstance(a, dict)}
    cats: dict[int, str] = {}
    for cat in coco["categories"]:
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if cid == 0 and not isinstance(cid, bool) and cid not in used and notes is not None:
            notes.append(f"category 0 ({name!r}) is used by no annotation: left out")
        elif not isinstance(cid, int) or isinstance(cid, bool) or cid < 1 or not isinstance(name, str) or not name:
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


def _object(ann: dict[str, Any], *, from_groundtruth: bool) -> dict[str, Any]:
    """The Ground Truth ``objects`` entry of an annotation: for an image converted from Ground Truth, its
    ``attributes`` as they were; otherwise its confidence (``attributes.confidence``, else COCO's ``score``), or
    nothing: no confidence is invented."""
    attrs = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
    if from_groundtruth:
        return dict(attrs)
    score = attrs.get("confidence", ann.get("score"))
    return {"confidence": score} if isinstance(score, (int, float)) and not isinstance(score, bool) else {}


def coco_to_groundtruth_boxes(coco: Any, *, images_root: str | None = None, attribute: str | None = None,
                              job_name: str = "coco", store: ObjectStore | None = None) -> dict[str, Any]:
    """Convert a COCO detection file to a Ground Truth bounding-box manifest (JSON Lines, one line per image; an
    image without annotations is a line without boxes). ``attribute`` defaults to the one an image was converted
    from, else bounding-box. With a ``store``, every image must exist (one the store cannot check, for want of
    credentials or outside the storage roots, converts with a note: COCO gives its size). Ground Truth boxes have no crowd regions
    nor masks: a crowd annotation (iscrowd 1) is left out and segmentation dropped, each said in "notes"; image
    fields beyond id, file_name, width and height (license, coco_url, ...) keep to the line's ``coco-image``.
    Returns {"manifest", "lines", "boxes", "errors": [{"image_id" | "annotation_id" | "category_id", "reason"}],
    "notes": [str]}. Raises InvalidInput when ``coco`` is not a COCO object."""
    check_structure(coco)
    errors: list[dict[str, Any]] = []
    notes: list[str] = []
    cats = coco_categories(coco, errors, notes=notes)
    images = coco_images(coco, errors, images_root=images_root)
    class_map = {str(cid - 1): name for cid, name in sorted(cats.items())}
    boxes: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
    broken: dict[int, str] = {}
    masks = 0
    for ann in coco["annotations"]:
        aid = ann.get("id") if isinstance(ann, dict) else None
        try:
            if not isinstance(ann, dict) or ann.get("image_id") not in images:
                raise InvalidInput(f"annotation {aid} names no known image ({ann.get('image_id') if isinstance(ann, dict) else ann!r})")
            if ann.get("iscrowd"):
                kind = "RLE" if isinstance(ann.get("segmentation"), dict) else "polygons"
                notes.append(f"annotation {aid} is a crowd region (iscrowd 1, {kind}) of image {ann['image_id']}: "
                             "Ground Truth boxes have no crowd regions, so it is left out")
                continue
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
        masks += bool(ann.get("segmentation"))
        left, top = whole(xywh[0]), whole(xywh[1])
        width, height = min(whole(xywh[2]), img["width"] - left), min(whole(xywh[3]), img["height"] - top)
        boxes[ann["image_id"]].append({"box": {"class_id": ann["category_id"] - 1, "left": left, "top": top,
                                               "width": max(1, width), "height": max(1, height)},
                                       "object": _object(ann, from_groundtruth=isinstance(img.get("groundtruth"), dict))})
    if masks:
        notes.append(f"the segmentation (polygons or RLE) of {masks} annotations is left out: Ground Truth "
                     "bounding boxes hold boxes only")
    lines, n_boxes = [], 0
    unchecked: list[str] = []
    for image_id, (img, uri) in images.items():
        if image_id in broken:
            errors.append({"image_id": image_id, "reason": f"left out: {broken[image_id]}"})
            continue
        try:
            if store is not None:  # COCO gives every image's size: one the store cannot check still converts
                _exists(store, uri, sized=True, unchecked=unchecked)
        except ConsoleError as exc:
            errors.append({"image_id": image_id, "reason": str(exc)})
            continue
        lines.append(_line(img, uri, boxes[image_id], class_map, attribute=attribute, job_name=job_name))
        n_boxes += len(boxes[image_id])
    if unchecked:
        notes.append(f"{len(unchecked)} images not checked (COCO gives their size, so they converted): {unchecked[0]}")
    return {"manifest": "".join(json.dumps(line) + "\n" for line in lines), "lines": len(lines), "boxes": n_boxes,
            "errors": errors, "notes": notes}


def _line(img: dict[str, Any], uri: str, boxes: list[dict[str, Any]], class_map: dict[str, str], *,
          attribute: str | None, job_name: str) -> dict[str, Any]:
    """One Ground Truth line for a COCO image; what an image converted from Ground Truth carries in its
    ``groundtruth`` (attribute, metadata, the line's own class ids, its other keys) is put back."""
    gt = img.get("groundtruth") if isinstance(img.get("groundtruth"), dict) else {}
    attr = attribute or gt.get("attribute") or DEFAULT_ATTRIBUTE
    meta = {"type": BOXES_TYPE, "human-annotated": "yes", "creation-date": now_iso()[:19],
            "job-name": f"labeling-job/{job_name}", **(gt.get("metadata") or {})}
    annotations = [b["box"] for b in boxes]
    own_ids = gt.get("class_ids")
    if isinstance(gt.get("class-map"), dict):
        class_map = gt["class-map"]
        if isinstance(own_ids, list) and len(own_ids) == len(boxes):
            annotations = [{**a, "class_id": own} for a, own in zip(annotations, own_ids)]
    objects = [b["object"] for b in boxes]
    head: dict[str, Any] = {"objects": objects} if gt.get("objects", True) and (gt or any(objects)) else {}
    line: dict[str, Any] = {"source-ref": uri,
                            attr: {"image_size": [{"width": img["width"], "height": img["height"],
                                                   "depth": img.get("depth") or 3}], "annotations": annotations},
                            f"{attr}-metadata": {**head, "class-map": class_map, **meta}}
    kept = {k: v for k, v in img.items() if k not in IMAGE_KEYS}
    if kept or not gt:
        line[COCO_IMAGE] = {"id": img["id"], **kept}
    for key, value in (gt.get("other") or {}).items():
        line.setdefault(key, value)
    return line

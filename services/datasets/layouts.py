"""Image-level labels in three layouts, read into ``Labelled`` records and written back out:

- a Ground Truth image-classification manifest (``services.datasets.groundtruth``);
- a folder per label, ``root/<label>/<image>``: what ``import-labels --folder`` reads, and what Rekognition
  Custom Labels reads when it infers image-level labels from folder names. An image's label is its first
  folder under the root; images are copied through the ObjectStore (server-side within S3), and a second image
  with a name already used in its label folder is written as ``<stem>-<8 hex of its source URI><suffix>``.
- COCO for classification. COCO has no classification task, so the convention here is: ``images`` as usual
  (id, file_name, width, height), ``categories`` (id, name), and exactly one annotation per image with ``id``,
  ``image_id`` and ``category_id`` and no ``bbox`` (nor area or segmentation); a label's confidence sits in the
  annotation's ``attributes`` and other Ground Truth metadata in the image's ``groundtruth``. Category id =
  Ground Truth class index + 1. ``info.task`` says "classification".

Class indexes are each record's own when every record has one (two labels may share an index across lines, as
two jobs' manifests do); otherwise the input's when consistent, else the console's class order when every label is
one of its classes, else the sorted label names. A record keeps the attribute it was read from and its value as
written ("0" or 0), and COCO keeps both in the image's ``groundtruth``, so a manifest comes back as it was. A
multi-label line with one label reads as a single label; with more it is refused (services.datasets.multilabel).
"""

from __future__ import annotations

import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from services.core.clock import now_iso
from services.core.config import CLASSES
from services.core.errors import ConsoleError, InvalidInput, NotFound
from services.core.images import IMAGE_SUFFIXES
from services.core.storage import ObjectStore, join
from services.datasets.coco import check_structure, coco_categories, coco_images
from services.datasets.groundtruth import (
    CLASSIFICATION_TYPE,
    classification_attribute,
    classification_attributes,
    multilabel_attributes,
    parse_lines,
    relative,
    source_ref,
)


@dataclass(frozen=True)
class Labelled:
    """One image with one image-level label, and where it came from (for reports: {"line": 3}, {"image_id": 7},
    {"file": "product/a.jpg"}, {"uri": ...})."""

    source: str
    label: str
    origin: dict[str, Any]
    class_id: int | None = None
    confidence: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    attribute: str | None = None  # the Ground Truth label attribute it was read from
    value: Any = None  # the attribute's value as written ("0" or 0), when it was a class id


def _class_id(value: Any) -> int | None:
    """A Ground Truth classification value as a class id: 3 or "3" (AWS's examples write both)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _multilabel_line(rec: dict[str, Any], attribute: str | None) -> tuple[str, list[str]] | None:
    """(attribute, label names) when the line's label (``attribute``, else its only kind of label) is a
    multi-label one; None otherwise."""
    found = multilabel_attributes(rec)
    if attribute:
        found = [attribute] if attribute in found else []
    elif classification_attributes(rec):
        return None
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} multi-label attributes on this line ({', '.join(found)}): "
                           "choose one with --attribute")
    if not found:
        return None
    class_map = rec[f"{found[0]}-metadata"]["class-map"]
    return found[0], [str(class_map.get(str(v), v)) for v in rec[found[0]]]


def _error(record: Labelled, reason: str) -> dict[str, Any]:
    return {**record.origin, "reason": reason}


def read_groundtruth_classes(text: str, *, attribute: str | None = None,
                             unique: bool = True) -> tuple[list[Labelled], list[dict[str, Any]]]:
    """(records, errors [{"line", "reason"}]) of an image-classification manifest. ``attribute`` names the label
    attribute (default: the first key whose -metadata twin holds class-name); ``unique`` reports a source-ref
    met again. Raises nothing for bad lines."""
    records: list[Labelled] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, rec, bad in parse_lines(text):
        try:
            if rec is None:
                raise InvalidInput(bad or "unreadable line")
            uri = source_ref(rec)
            multi = _multilabel_line(rec, attribute)
            if multi and len(multi[1]) != 1:
                raise InvalidInput(f"a multi-label line ({multi[0]}: {', '.join(multi[1]) or 'no labels'}) where one "
                                   "label an image is wanted (convert it with --from groundtruth-multilabel)")
            attr = multi[0] if multi else classification_attribute(rec, attribute)
            if unique and uri in seen:
                raise InvalidInput(f"{uri} is already on line {seen[uri]}")
        except InvalidInput as exc:
            errors.append({"line": n, "reason": str(exc)})
            continue
        seen.setdefault(uri, n)
        meta = rec[f"{attr}-metadata"]
        if multi:  # one label: a single-label record, its confidence from the confidence-map
            value = rec[attr][0]
            conf = (meta.get("confidence-map") or {}).get(str(value))
            records.append(Labelled(source=uri, label=multi[1][0], origin={"line": n}, class_id=_class_id(value),
                                    confidence=conf if isinstance(conf, (int, float)) else None, attribute=attr,
                                    metadata={k: v for k, v in meta.items() if k not in ("class-map", "confidence-map")}))
            continue
        value, conf = rec.get(attr), meta.get("confidence")
        records.append(Labelled(
            source=uri, label=meta["class-name"].strip(), origin={"line": n}, class_id=_class_id(value),
            confidence=float(conf) if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None,
            metadata={k: v for k, v in meta.items() if k not in ("class-name", "confidence")}, attribute=attr,
            value=value if _class_id(value) is not None else None))
    return records, errors


def class_ids(records: list[Labelled]) -> dict[str, int]:
    """{label: Ground Truth class index}: the records' own when consistent, else the console's class order when
    every label is a console class, else the sorted labels."""
    given: dict[str, int] = {}
    consistent = True
    for r in records:
        if r.class_id is None or given.setdefault(r.label, r.class_id) != r.class_id:
            consistent = False
            break
    if consistent and len(set(given.values())) == len(given):
        return given
    labels = sorted({r.label for r in records})
    if set(labels) <= set(CLASSES):
        return {name: CLASSES.index(name) for name in labels}
    return {name: i for i, name in enumerate(labels)}


def write_groundtruth_classes(records: list[Labelled], *, attribute: str | None = None,
                              job_name: str = "review-console") -> str:
    """The records as image-classification manifest lines. The attribute is ``attribute``, else the one each
    record was read from, else ``category``; class ids are the records' own when every record has one, else
    ``class_ids``; the metadata a record carries wins over the defaults (human-annotated yes, now). A record
    without a confidence gets none. Raises InvalidInput for a bad ``attribute`` name."""
    if attribute is not None and (not attribute or not all(ch.isalnum() or ch in "-_" for ch in attribute)):
        raise InvalidInput(f"the label attribute name '{attribute}' may hold only letters, digits, - and _")
    every = all(r.class_id is not None for r in records)
    ids = class_ids(records)
    now = now_iso()[:19]
    lines = []
    for r in records:
        attr = attribute or r.attribute or "category"  # a record's own attribute is written as it was read
        class_id = r.class_id if every and r.class_id is not None else ids[r.label]
        value = r.value if r.value is not None and _class_id(r.value) == class_id else class_id
        meta = {"class-name": r.label, "type": CLASSIFICATION_TYPE, "job-name": f"labeling-job/{job_name}",
                "human-annotated": "yes", "creation-date": now, **r.metadata}
        if r.confidence is not None:
            meta["confidence"] = r.confidence
        lines.append(json.dumps({"source-ref": r.source, attr: value, f"{attr}-metadata": meta}))
    return "".join(line + "\n" for line in lines)


def read_folders(store: ObjectStore, *, root: str) -> tuple[list[Labelled], list[dict[str, Any]]]:
    """(records, errors [{"file", "reason"}]) of the images under ``root/<label>/``; images directly under the
    root have no label and are reported. Raises NotFound (no such folder), InvalidInput (no labelled image)."""
    records, errors = [], []
    for obj in store.list(root, suffixes=IMAGE_SUFFIXES):
        parts = obj.key.split("/")
        if len(parts) < 2:
            errors.append({"file": obj.key, "reason": "not in a label folder (an image's label is its folder)"})
            continue
        records.append(Labelled(source=obj.uri, label=parts[0], origin={"file": obj.key}))
    if not records:
        raise InvalidInput(f"no images in label folders under {root} (expected {root}/<label>/<image>)")
    return records, errors


def _folder_problem(label: str) -> str | None:
    if not label or label in (".", "..") or label.startswith(".") or any(ch in label for ch in "/\\\0"):
        return f"label {label!r} cannot be a folder name (no /, \\, and not starting with '.')"
    return None


def _assert_empty(store: ObjectStore, output: str) -> None:
    try:
        first = next(iter(store.list(output)), None)
    except NotFound:
        return
    if first is not None:
        raise InvalidInput(f"{output} already holds files ({first.key}): write a folder-per-label tree into an "
                           "empty folder or prefix, as Custom Labels and import-labels read every image under it")


def _name(record: Labelled, used: set[str]) -> str:
    name = record.source.rstrip("/").rsplit("/", 1)[-1] or "image"
    if name.lower() in used:
        stem, dot, suffix = name.rpartition(".")
        stem, suffix = (stem, f".{suffix}") if dot else (name, "")
        name = f"{stem}-{hashlib.sha1(record.source.encode()).hexdigest()[:8]}{suffix}"
        k = 2
        while name.lower() in used:  # the same source twice under one label
            name = f"{stem}-{hashlib.sha1(record.source.encode()).hexdigest()[:8]}-{k}{suffix}"
            k += 1
    used.add(name.lower())
    return name


def write_folders(store: ObjectStore, records: list[Labelled], *, output: str) -> dict[str, Any]:
    """Copy each record's image to ``output/<label>/<name>``. Returns {"images", "labels": {label: count},
    "renamed", "written": [Labelled at its new URI], "errors"}; an image that cannot be copied is reported.
    Raises InvalidInput when ``output`` already holds files."""
    _assert_empty(store, output)
    used: dict[str, set[str]] = {}
    plan, errors = [], []
    renamed = 0
    for r in records:
        problem = _folder_problem(r.label)
        if problem:
            errors.append(_error(r, problem))
            continue
        name = _name(r, used.setdefault(r.label, set()))
        renamed += name != r.source.rstrip("/").rsplit("/", 1)[-1]
        plan.append((r, join(output, f"{r.label}/{name}")))

    def copy(item: tuple[Labelled, str]) -> dict[str, Any] | None:
        try:
            store.copy(item[0].source, item[1])
        except ConsoleError as exc:
            return _error(item[0], f"cannot copy {item[0].source}: {exc}")
        return None

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(copy, plan))
    written, labels = [], {}
    for (r, dst), err in zip(plan, results):
        if err:
            errors.append(err)
            continue
        written.append(Labelled(source=dst, label=r.label, origin=r.origin, class_id=r.class_id,
                                confidence=r.confidence, metadata=r.metadata))
        labels[r.label] = labels.get(r.label, 0) + 1
    return {"images": len(written), "labels": dict(sorted(labels.items())), "renamed": renamed,
            "written": written, "errors": errors}


def class_annotations(coco: dict[str, Any], *, images: dict[int, Any], cats: dict[int, str],
                      errors: list[dict[str, Any]]) -> tuple[list[tuple[int, dict[str, Any]]], dict[int, str]]:
    """(image id, annotation) of every classification annotation of ``coco`` that names a known image and a valid
    category, in file order, and the reason per image a bad annotation breaks (a bbox: a detection file; an
    unknown category). An annotation naming no known image is added to ``errors``. Raises nothing."""
    usable: list[tuple[int, dict[str, Any]]] = []
    broken: dict[int, str] = {}
    for ann in coco["annotations"]:
        aid = ann.get("id") if isinstance(ann, dict) else None
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        if image_id not in images:
            errors.append({"annotation_id": aid, "reason": f"annotation {aid} names no known image ({image_id!r})"})
        elif ann.get("bbox"):
            broken.setdefault(image_id, f"annotation {aid} has a bbox: this is a detection file "
                                        "(convert it with --to groundtruth-boxes)")
        elif ann.get("category_id") not in cats:
            broken.setdefault(image_id, f"annotation {aid}: category_id {ann.get('category_id')!r} is not a valid category")
        else:
            usable.append((image_id, ann))
    return usable, broken


def read_coco_classes(coco: Any, *, images_root: str | None = None) -> tuple[list[Labelled], list[dict[str, Any]]]:
    """(records, errors) of a COCO classification file (see the module docstring); an image with no label, two
    labels, or a box is reported. Raises InvalidInput when ``coco`` is not a COCO object."""
    check_structure(coco)
    errors: list[dict[str, Any]] = []
    cats = coco_categories(coco, errors, notes=[])  # an unused category 0 holds no label
    images = coco_images(coco, errors, images_root=images_root, sized=False)
    found: dict[int, set[int]] = {i: set() for i in images}
    conf: dict[int, float] = {}
    usable, broken = class_annotations(coco, images=images, cats=cats, errors=errors)
    for image_id, ann in usable:
        found[image_id].add(ann["category_id"])
        attrs = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        if isinstance(attrs.get("confidence"), (int, float)):
            conf[image_id] = float(attrs["confidence"])
    records = []
    for image_id, (img, uri) in images.items():
        names = sorted(cats[c] for c in found[image_id])
        if image_id in broken or len(names) != 1:
            reason = broken.get(image_id) or ("no label" if not names else
                                              f"{len(names)} labels ({', '.join(names)}): classification takes one "
                                              "(convert it with --to groundtruth-multilabel)")
            errors.append({"image_id": image_id, "reason": reason})
            continue
        gt = img.get("groundtruth") if isinstance(img.get("groundtruth"), dict) else {}
        own = gt.get("class_id")
        records.append(Labelled(source=uri, label=names[0], origin={"image_id": image_id},
                                class_id=own if own is not None and _class_id(own) == own else next(iter(found[image_id])) - 1,
                                confidence=conf.get(image_id), metadata=dict(gt.get("metadata") or {}),
                                attribute=gt.get("attribute") if isinstance(gt.get("attribute"), str) else None,
                                value=gt.get("value")))
    return records, errors


def image_sizes(store: ObjectStore, *, sources: list[str]) -> list[tuple[int, int] | str]:
    """Each image's (width, height), read through the store, or why it cannot be read. Raises nothing."""

    def size(source: str) -> tuple[int, int] | str:
        try:
            with Image.open(io.BytesIO(store.read(source))) as img:
                return img.size
        except (ConsoleError, OSError) as exc:
            return f"cannot read image {source}: {exc}"

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(size, sources))


def write_coco_classes(store: ObjectStore, records: list[Labelled], *,
                       images_root: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(COCO classification dict, errors): each image is read for its width and height (one that cannot be read is
    reported); file_name is relative to ``images_root`` when the image lies under it. Raises nothing per image."""
    ids = class_ids(records)
    sizes = image_sizes(store, sources=[r.source for r in records])
    coco: dict[str, Any] = {"info": {"description": "image-level labels, one annotation per image without bbox",
                                     "task": "classification", "date_created": now_iso()},
                            "images": [], "annotations": [],
                            "categories": [{"id": i + 1, "name": name} for name, i in sorted(ids.items(), key=lambda kv: kv[1])]}
    errors = []
    for r, got in zip(records, sizes):
        if isinstance(got, str):
            errors.append(_error(r, got))
            continue
        image = {"id": len(coco["images"]) + 1, "file_name": relative(r.source, images_root), "width": got[0],
                 "height": got[1]}
        gt: dict[str, Any] = {"metadata": r.metadata} if r.metadata else {}
        if r.attribute:
            gt["attribute"] = r.attribute
        if r.class_id is not None and r.class_id != ids[r.label]:
            gt["class_id"] = r.class_id  # its own class id, which another label holds in this file
        if r.value is not None and r.value != ids[r.label]:
            gt["value"] = r.value
        if gt:
            image["groundtruth"] = gt
        coco["images"].append(image)
        ann = {"id": image["id"], "image_id": image["id"], "category_id": ids[r.label] + 1}
        if r.confidence is not None:
            ann["attributes"] = {"confidence": r.confidence}
        coco["annotations"].append(ann)
    return coco, errors

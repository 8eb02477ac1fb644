"""Multi-label image classification: Ground Truth ``groundtruth/image-classification-multilabel`` manifests <->
COCO with several image-level annotations per image.

A multi-label line holds a list of class ids, ``"labels": [1, 0, 8]``, beside ``"labels-metadata": {"class-map":
{"1": "bicycle", "0": "person", "8": "clothing"}, "confidence-map": {"1": 0.95, ...}, "type":
"groundtruth/image-classification-multilabel", ...}`` (AWS's documented output). In COCO each label is an annotation
with ``category_id`` and no ``bbox`` (its confidence in ``attributes``), ``info.task`` = ``multilabel-classification``;
the line's attribute name, metadata and own class ids ride in the image's ``groundtruth``, so a manifest comes back as
it was. A folder per label cannot hold several labels an image, so there is no folder layout here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from services.core.clock import now_iso
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.coco import check_structure, coco_categories, coco_images
from services.datasets.groundtruth import MULTILABEL_TYPE, multilabel_attributes, parse_lines, relative, source_ref
from services.datasets.layouts import class_annotations, image_sizes


@dataclass(frozen=True)
class Tagged:
    """One image with its labels: (class id, name, confidence or None) in the order the line gave them."""

    source: str
    labels: tuple[tuple[int, str, float | None], ...]
    origin: dict[str, Any]
    attribute: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def _attribute(rec: dict[str, Any], attribute: str | None) -> str:
    found = multilabel_attributes(rec)
    if attribute:
        if attribute not in found:
            raise InvalidInput(f"no multi-label attribute '{attribute}' (a list of class ids beside a -metadata twin "
                               f"holding a class-map); found {', '.join(rec) or 'no keys'}")
        return attribute
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} multi-label attributes on this line ({', '.join(found)}): choose one with "
                           "--attribute")
    if not found:
        raise InvalidInput("no multi-label attribute (a list of class ids beside a -metadata twin holding a "
                           f"class-map); found {', '.join(rec) or 'no keys'}")
    return found[0]


def read_groundtruth_multilabel(text: str, *, attribute: str | None = None) -> tuple[list[Tagged], list[dict[str, Any]]]:
    """(records, errors [{"line", "reason"}]) of a multi-label classification manifest; a line with a class id
    missing from its class-map, or an image met again, is reported. Raises nothing for bad lines."""
    records: list[Tagged] = []
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for n, rec, bad in parse_lines(text):
        try:
            if rec is None:
                raise InvalidInput(bad or "unreadable line")
            uri = source_ref(rec)
            attr = _attribute(rec, attribute)
            meta = rec[f"{attr}-metadata"]
            class_map = {str(k): str(v) for k, v in meta["class-map"].items()}
            confidences = meta.get("confidence-map") if isinstance(meta.get("confidence-map"), dict) else {}
            labels = []
            for value in rec[attr]:
                if isinstance(value, bool) or not isinstance(value, int) or str(value) not in class_map:
                    raise InvalidInput(f"class id {value!r} is not in the class-map ({', '.join(class_map) or 'empty'})")
                conf = confidences.get(str(value))
                labels.append((value, class_map[str(value)],
                               conf if isinstance(conf, (int, float)) and not isinstance(conf, bool) else None))
            if uri in seen:
                raise InvalidInput(f"{uri} is already on line {seen[uri]}")
        except InvalidInput as exc:
            errors.append({"line": n, "reason": str(exc)})
            continue
        seen[uri] = n
        extra = {k: v for k, v in meta.items() if k not in ("class-map", "confidence-map")}
        if set(class_map) != {str(c) for c, _, _ in labels}:
            extra["class-map"] = class_map  # classes offered but not chosen on this line
        records.append(Tagged(source=uri, labels=tuple(labels), origin={"line": n}, attribute=attr, metadata=extra))
    return records, errors


def _category_ids(records: list[Tagged]) -> dict[str, int]:
    """{name: COCO category id}: a label's first class id + 1 when free, else the next free id."""
    ids: dict[str, int] = {}
    for r in records:
        for class_id, name, _ in r.labels:
            if name not in ids:
                wanted = class_id + 1
                ids[name] = wanted if wanted not in ids.values() else max([0, *ids.values()]) + 1
    return ids


def write_coco_multilabel(store: ObjectStore, records: list[Tagged], *,
                          images_root: str | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(COCO dict, errors): each image is read for its width and height (one that cannot be read is reported).
    Raises nothing per image."""
    ids = _category_ids(records)
    coco: dict[str, Any] = {"info": {"description": "multi-label image-level labels, annotations without bbox",
                                     "task": "multilabel-classification", "date_created": now_iso()},
                            "images": [], "annotations": [],
                            "categories": [{"id": i, "name": name} for name, i in sorted(ids.items(), key=lambda kv: kv[1])]}
    errors = []
    for r, got in zip(records, image_sizes(store, sources=[r.source for r in records])):
        if isinstance(got, str):
            errors.append({**r.origin, "reason": got})
            continue
        image_id = len(coco["images"]) + 1
        gt: dict[str, Any] = {"attribute": r.attribute, "metadata": r.metadata}
        if any(ids[name] != class_id + 1 for class_id, name, _ in r.labels):
            gt["class_ids"] = [class_id for class_id, _, _ in r.labels]
        coco["images"].append({"id": image_id, "file_name": relative(r.source, images_root), "width": got[0],
                               "height": got[1], "groundtruth": gt})
        for _, name, conf in r.labels:
            ann: dict[str, Any] = {"id": len(coco["annotations"]) + 1, "image_id": image_id, "category_id": ids[name]}
            if conf is not None:
                ann["attributes"] = {"confidence": conf}
            coco["annotations"].append(ann)
    return coco, errors


def read_coco_multilabel(coco: Any, *, images_root: str | None = None) -> tuple[list[Tagged], list[dict[str, Any]]]:
    """(records, errors) of a COCO file of image-level labels, any number an image (an image with none is a line
    with no labels); an annotation with a bbox or an unknown category is reported with its image. Raises
    InvalidInput when ``coco`` is not a COCO object."""
    check_structure(coco)
    errors: list[dict[str, Any]] = []
    cats = coco_categories(coco, errors, notes=[])
    images = coco_images(coco, errors, images_root=images_root, sized=False)
    found: dict[int, list[tuple[str, float | None]]] = {i: [] for i in images}
    usable, broken = class_annotations(coco, images=images, cats=cats, errors=errors)
    for image_id, ann in usable:
        attrs = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        conf = attrs.get("confidence", ann.get("score"))
        found[image_id].append((cats[ann["category_id"]], conf if isinstance(conf, (int, float)) else None))
    records = []
    for image_id, (img, uri) in images.items():
        if image_id in broken:
            errors.append({"image_id": image_id, "reason": broken[image_id]})
            continue
        gt = img.get("groundtruth") if isinstance(img.get("groundtruth"), dict) else {}
        by_name = {name: cid - 1 for cid, name in cats.items()}
        own = gt.get("class_ids") if isinstance(gt.get("class_ids"), list) else []
        ids = own if len(own) == len(found[image_id]) else [by_name[name] for name, _ in found[image_id]]
        records.append(Tagged(source=uri, labels=tuple((c, name, conf) for c, (name, conf) in zip(ids, found[image_id])),
                              origin={"image_id": image_id}, metadata=dict(gt.get("metadata") or {}),
                              attribute=gt.get("attribute") if isinstance(gt.get("attribute"), str) else None))
    return records, errors


def write_groundtruth_multilabel(records: list[Tagged], *, attribute: str | None = None,
                                 job_name: str = "converted") -> str:
    """The records as multi-label manifest lines (attribute: ``attribute``, else the record's own, else
    ``labels``); a label without a confidence is left out of the confidence-map. Raises InvalidInput for a bad
    ``attribute`` name."""
    if attribute is not None and (not attribute or not all(ch.isalnum() or ch in "-_" for ch in attribute)):
        raise InvalidInput(f"the label attribute name '{attribute}' may hold only letters, digits, - and _")
    now = now_iso()[:19]
    lines = []
    for r in records:
        attr = attribute or r.attribute or "labels"  # a record's own attribute is written as it was read
        meta: dict[str, Any] = {"job-name": f"labeling-job/{job_name}",
                                "class-map": {str(c): name for c, name, _ in r.labels}, "human-annotated": "yes",
                                "creation-date": now, "type": MULTILABEL_TYPE}
        confidences = {str(c): conf for c, _, conf in r.labels if conf is not None}
        if confidences:
            meta["confidence-map"] = confidences
        meta.update(r.metadata)
        lines.append(json.dumps({"source-ref": r.source, attr: [c for c, _, _ in r.labels], f"{attr}-metadata": meta}))
    return "".join(line + "\n" for line in lines)

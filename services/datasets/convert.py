"""One entry point for dataset conversions between Ground Truth manifests, COCO and a folder per label.

Formats: ``groundtruth`` (image-classification manifest), ``groundtruth-multilabel`` (multi-label
classification manifest), ``groundtruth-boxes`` (bounding-box manifest), ``coco`` (detection when paired with
groundtruth-boxes, several image-level labels with groundtruth-multilabel, one otherwise: see
services.datasets.layouts) and ``folders`` (``root/<label>/<image>``). Pairs: groundtruth-boxes <-> coco,
groundtruth-multilabel <-> coco, and any two of groundtruth, folders and coco. A conversion that converts
nothing raises NothingConverted (with every refusal) and writes nothing.
"""

from __future__ import annotations

import json
from typing import Any

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.coco import coco_to_groundtruth_boxes, groundtruth_boxes_to_coco
from services.datasets.groundtruth import NothingConverted
from services.datasets.layouts import (
    Labelled,
    read_coco_classes,
    read_folders,
    read_groundtruth_classes,
    write_coco_classes,
    write_folders,
    write_groundtruth_classes,
)
from services.datasets.multilabel import (
    read_coco_multilabel,
    read_groundtruth_multilabel,
    write_coco_multilabel,
    write_groundtruth_multilabel,
)

FORMATS = ("groundtruth", "groundtruth-multilabel", "groundtruth-boxes", "coco", "folders")
CLASSIFICATION = ("groundtruth", "folders", "coco")


def read_json(store: ObjectStore, uri: str) -> Any:
    """The parsed JSON file at ``uri``. Raises InvalidInput when it is not JSON, and the store's errors."""
    try:
        return json.loads(store.read(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{uri} is not a JSON file ({exc})") from exc


def read_text(store: ObjectStore, uri: str) -> str:
    """The text at ``uri`` (UTF-8, bad bytes replaced). Raises the store's errors."""
    return store.read(uri).decode("utf-8", errors="replace")


def _read_labelled(store: ObjectStore, fmt: str, uri: str, *, images: str | None,
                   attribute: str | None) -> tuple[list[Labelled], list[dict[str, Any]]]:
    if fmt == "groundtruth":
        return read_groundtruth_classes(read_text(store, uri), attribute=attribute)
    if fmt == "folders":
        return read_folders(store, root=uri)
    return read_coco_classes(read_json(store, uri), images_root=images)


def write_labelled(store: ObjectStore, fmt: str, records: list[Labelled], *, output: str, images: str | None = None,
                   attribute: str | None = None, job_name: str = "converted") -> dict[str, Any]:
    """Write image-level labels as ``groundtruth``, ``folders`` or ``coco`` at ``output``. Returns {"images",
    "labels": {label: count}, "errors"} (plus "renamed" for folders). Raises InvalidInput (a bad format or
    attribute, a non-empty output folder) and the store's errors."""
    if fmt == "folders":
        out = write_folders(store, records, output=output)
        return {k: v for k, v in out.items() if k != "written"}
    if fmt == "groundtruth":
        store.write(output, write_groundtruth_classes(records, attribute=attribute, job_name=job_name).encode())
        written, errors = [r.label for r in records], []
    elif fmt == "coco":
        coco, errors = write_coco_classes(store, records, images_root=images)
        store.write(output, json.dumps(coco).encode())
        names = {c["id"]: c["name"] for c in coco["categories"]}
        written = [names[a["category_id"]] for a in coco["annotations"]]
    else:
        raise InvalidInput(f"unknown label format {fmt!r}: use one of {', '.join(CLASSIFICATION)}")
    labels: dict[str, int] = {}
    for label in written:
        labels[label] = labels.get(label, 0) + 1
    return {"images": len(written), "labels": dict(sorted(labels.items())), "errors": errors}


def convert(store: ObjectStore, *, source: str, target: str, input: str, output: str, images: str | None = None,
            attribute: str | None = None, job_name: str = "converted") -> dict[str, Any]:
    """Convert ``input`` (a file, or a folder for ``folders``) from one format to another at ``output``.
    ``images``: the root COCO file_names are relative to (reading COCO; writing COCO, names under it are made
    relative, default the input folder for folders). ``attribute``: the Ground Truth label attribute to read
    (default: detected) or write. Bad lines or images are reported in "errors" and the rest convert.
    Raises NothingConverted (an InvalidInput naming every refusal) when nothing converts, InvalidInput (an
    unsupported pair, a file that is not JSON or COCO, a non-empty output folder), NotFound and StorageError."""
    for fmt in (source, target):
        if fmt not in FORMATS:
            raise InvalidInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if (source, target) == ("groundtruth-boxes", "coco"):
        out = groundtruth_boxes_to_coco(read_text(store, input), attribute=attribute, images_root=images, store=store)
        _something(out["images"], out["errors"], f"{input} (groundtruth-boxes to coco)")
        store.write(output, json.dumps(out["coco"]).encode())
        return {k: v for k, v in out.items() if k != "coco"}
    if (source, target) == ("coco", "groundtruth-boxes"):
        out = coco_to_groundtruth_boxes(read_json(store, input), images_root=images, attribute=attribute,
                                        job_name=job_name, store=store)
        _something(out["lines"], out["errors"], f"{input} (coco to groundtruth-boxes)")
        store.write(output, out["manifest"].encode())
        return {k: v for k, v in out.items() if k != "manifest"}
    if "groundtruth-multilabel" in (source, target) and {source, target} == {"groundtruth-multilabel", "coco"}:
        return _multilabel(store, source=source, input=input, output=output, images=images, attribute=attribute,
                           job_name=job_name)
    if source in CLASSIFICATION and target in CLASSIFICATION and source != target:
        records, errors = _read_labelled(store, source, input, images=images, attribute=attribute)
        _something(len(records), errors, f"{input} ({source} to {target})")
        out = write_labelled(store, target, records, output=output, attribute=attribute, job_name=job_name,
                             images=images or (input if source == "folders" else None))
        _something(out["images"], errors + out["errors"], f"{input} ({source} to {target})")
        return {**out, "errors": errors + out["errors"]}
    why = " (a folder per label holds one label an image)" if "groundtruth-multilabel" in (source, target) else ""
    raise InvalidInput(f"cannot convert {source} to {target}{why}: the pairs are groundtruth-boxes <-> coco "
                       "(detection), groundtruth-multilabel <-> coco, and any two of groundtruth, folders and coco "
                       "(image-level labels)")


def _something(converted: int, errors: list[dict[str, Any]], what: str) -> None:
    """Raise NothingConverted (every refusal with its line or id) when nothing was converted."""
    if not converted:
        raise NothingConverted(what, errors)


def _multilabel(store: ObjectStore, *, source: str, input: str, output: str, images: str | None,
                attribute: str | None, job_name: str) -> dict[str, Any]:
    what = f"{input} ({source} to {'coco' if source != 'coco' else 'groundtruth-multilabel'})"
    if source == "coco":
        records, errors = read_coco_multilabel(read_json(store, input), images_root=images)
        _something(len(records), errors, what)
        store.write(output, write_groundtruth_multilabel(records, attribute=attribute, job_name=job_name).encode())
        written = records
    else:
        records, errors = read_groundtruth_multilabel(read_text(store, input), attribute=attribute)
        _something(len(records), errors, what)
        coco, more = write_coco_multilabel(store, records, images_root=images)
        errors += more
        _something(len(coco["images"]), errors, what)
        store.write(output, json.dumps(coco).encode())
        done = {r.origin.get("line") for r in records} - {e.get("line") for e in more}
        written = [r for r in records if r.origin.get("line") in done]
    labels: dict[str, int] = {}
    for r in written:
        for _, name, _ in r.labels:
            labels[name] = labels.get(name, 0) + 1
    return {"images": len(written), "labels": dict(sorted(labels.items())), "errors": errors}

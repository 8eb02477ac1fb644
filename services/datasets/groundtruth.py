"""Reading SageMaker Ground Truth manifest lines: one JSON object a line with ``source-ref`` and a label
attribute beside its ``<attribute>-metadata`` twin.

Image classification: ``"category": 1, "category-metadata": {"class-name": "product", "confidence": 0.93, ...}``.
Bounding boxes: ``"bounding-box": {"image_size": [{"width", "height", "depth"}], "annotations": [{"class_id",
"left", "top", "width", "height"}]}, "bounding-box-metadata": {"objects": [{"confidence"}], "class-map": {"0":
"name"}, ...}``. Multi-label classification: ``"labels": [1, 0, 8], "labels-metadata": {"class-map": {...},
"confidence-map": {...}, ...}``. Each reader raises InvalidInput with a message naming what it expected and which
keys it found, so a converter can report "line 3: no 'category' attribute; found source-ref, label,
label-metadata"; a line holding several attributes of the kind asked for (a job and its adjustment job) is
refused, naming them, unless one is chosen. A conversion that converts nothing raises ``NothingConverted``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from typing import Any

from services.core.errors import InvalidInput
from services.core.storage import is_s3, join

CLASSIFICATION_TYPE = "groundtruth/image-classification"
MULTILABEL_TYPE = "groundtruth/image-classification-multilabel"
BOXES_TYPE = "groundtruth/object-detection"
BOX_KEYS = ("class_id", "left", "top", "width", "height")


class NothingConverted(InvalidInput):
    """Nothing could be converted or imported: ``errors`` holds every refusal ({"line" | "image_id" | ...,
    "reason"}) and the message names the first ones, so a command exits non-zero with its reasons."""

    def __init__(self, what: str, errors: list[dict[str, Any]], shown: int = 3) -> None:
        self.errors = list(errors)
        reasons = "; ".join(f"{where(e)}: {e['reason']}" for e in self.errors[:shown])
        more = f" (and {len(self.errors) - shown} more)" if len(self.errors) > shown else ""
        super().__init__(f"{what}: nothing converted" + (f"; {reasons}{more}" if reasons else " (the input is empty)"))


def whole(value: float) -> int:
    """``value`` rounded to the nearest whole pixel, halves up (Python's round() takes 2.5 to 2). Raises nothing."""
    return int(math.floor(value + 0.5))


def parse_lines(text: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, object, None) for each non-blank line, or (line number, None, reason) when it is not a
    JSON object."""
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield n, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(rec, dict):
            yield n, None, f"not a JSON object but {type(rec).__name__}"
            continue
        yield n, rec, None


def keys(obj: dict[str, Any]) -> str:
    return ", ".join(obj) or "no keys"


def source_ref(rec: dict[str, Any]) -> str:
    """The line's image URI. Raises InvalidInput when ``source-ref`` is missing or not a string."""
    ref = rec.get("source-ref")
    if not isinstance(ref, str) or not ref.strip():
        raise InvalidInput(f"no 'source-ref' (the image URI); found {keys(rec)}")
    return ref.strip()


def _explicit(rec: dict[str, Any], attribute: str) -> dict[str, Any]:
    if attribute not in rec:
        raise InvalidInput(f"no '{attribute}' attribute; found {keys(rec)}")
    meta = rec.get(f"{attribute}-metadata")
    if not isinstance(meta, dict):
        raise InvalidInput(f"no '{attribute}-metadata' object beside the '{attribute}' attribute; found {keys(rec)}")
    return meta


def classification_attribute(rec: dict[str, Any], attribute: str | None = None) -> str:
    """The image-classification attribute of a line: ``attribute`` when given (it and its -metadata twin must be
    there), else the one key whose -metadata twin holds ``class-name``. Raises InvalidInput, naming them, when
    a line holds several and none was chosen."""
    if attribute:
        meta = _explicit(rec, attribute)
        if not isinstance(meta.get("class-name"), str) or not meta["class-name"].strip():
            raise InvalidInput(f"'{attribute}-metadata' has no class-name; found {keys(meta)}")
        return attribute
    found = classification_attributes(rec)
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} image-classification attributes on this line ({', '.join(found)}): "
                           "choose one with --attribute")
    if found:
        return found[0]
    raise InvalidInput(f"no image-classification attribute (a key whose -metadata twin holds class-name); found {keys(rec)}")


def classification_attributes(rec: dict[str, Any]) -> list[str]:
    """Every attribute of the line whose -metadata twin holds a class-name (a classification label). Raises
    nothing."""
    return [key[: -len("-metadata")] for key, meta in rec.items()
            if key.endswith("-metadata") and key[: -len("-metadata")] in rec and isinstance(meta, dict)
            and isinstance(meta.get("class-name"), str) and meta["class-name"].strip()]


def multilabel_attributes(rec: dict[str, Any]) -> list[str]:
    """Every multi-label classification attribute of the line: a list of class ids beside a -metadata twin
    holding a class-map (``groundtruth/image-classification-multilabel``). Raises nothing."""
    return [key for key, value in rec.items()
            if isinstance(value, list) and isinstance(rec.get(f"{key}-metadata"), dict)
            and isinstance(rec[f"{key}-metadata"].get("class-map"), dict)]


def boxes_attributes(rec: dict[str, Any]) -> list[str]:
    """Every bounding-box attribute of the line: a key holding an annotations list beside a -metadata twin.
    Raises nothing."""
    return [key for key, value in rec.items()
            if isinstance(value, dict) and isinstance(value.get("annotations"), list)
            and isinstance(rec.get(f"{key}-metadata"), dict)]


def boxes_attribute(rec: dict[str, Any], attribute: str | None = None) -> str:
    """The bounding-box attribute of a line: ``attribute`` when given, else the one key holding an
    ``annotations`` list with a -metadata twin. Raises InvalidInput, naming them, when a line holds several
    (a labelling job and its adjustment job) and none was chosen."""
    if attribute:
        meta = _explicit(rec, attribute)
        value = rec[attribute]
        if not isinstance(value, dict) or not isinstance(value.get("annotations"), list):
            found = keys(value) if isinstance(value, dict) else type(value).__name__
            raise InvalidInput(f"'{attribute}' is not a bounding-box label (expected image_size and annotations; "
                               f"found {found})")
        if not isinstance(meta.get("class-map"), dict):
            raise InvalidInput(f"'{attribute}-metadata' has no class-map; found {keys(meta)}")
        return attribute
    found = boxes_attributes(rec)
    if len(found) > 1:
        raise InvalidInput(f"{len(found)} bounding-box attributes on this line ({', '.join(found)}): "
                           "choose one with --attribute")
    if found:
        return boxes_attribute(rec, found[0])
    raise InvalidInput(f"no bounding-box attribute (a key holding image_size and annotations, with its -metadata "
                       f"twin); found {keys(rec)}")


def is_absolute(uri: str) -> bool:
    return is_s3(uri) or uri.lower().startswith("file:") or os.path.isabs(uri)


def resolve(file_name: str, images_root: str | None) -> str:
    """A COCO ``file_name`` as an image URI: absolute names as they are, relative ones under ``images_root``.
    Raises InvalidInput for a relative name without a root."""
    if is_absolute(file_name):
        return file_name
    if not images_root:
        raise InvalidInput(f"file_name '{file_name}' is relative: give the images root (--images) it lies under")
    return join(images_root, file_name)


def relative(uri: str, images_root: str | None) -> str:
    """A COCO file_name for ``uri``: relative to ``images_root`` when it lies under it, else the absolute URI
    (local paths made absolute)."""
    if is_s3(uri) or uri.lower().startswith("file:"):
        root = (images_root or "").rstrip("/") + "/"
        return uri[len(root):] if images_root and uri.startswith(root) and len(uri) > len(root) else uri
    path = os.path.abspath(uri)  # a local path: absolute unless under a local root
    if not images_root or is_s3(images_root) or images_root.lower().startswith("file:"):
        return path
    rel = os.path.relpath(path, os.path.abspath(images_root))
    return path if rel == "." or rel.split(os.sep)[0] == ".." else rel.replace(os.sep, "/")


def where(error: dict[str, Any]) -> str:
    """'line 3', 'image 7', 'annotation 12', 'file a/b.jpg' or 'category 4' for a report's error."""
    for key, word in (("line", "line"), ("annotation_id", "annotation"), ("image_id", "image"),
                      ("category_id", "category"), ("file", "file"), ("uri", "")):
        if error.get(key) is not None:
            return f"{word} {error[key]}".strip()
    return "input"

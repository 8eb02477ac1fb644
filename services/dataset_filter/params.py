"""Dataset filter parameters: detectors and stores, validation (with clear messages before any scan),
the listing in scan order, the estimate and the dry run. The job itself is ``services.dataset_filter.job``."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlparse

import sqlite_utils

from services.core import images as imgs
from services.core.config import Workspace, get_settings, object_store
from services.core.errors import CloudAccessError, ConsoleError, InvalidInput
from services.core.images import IMAGE_SUFFIXES
from services.core.storage import ObjectInfo, ObjectStore, is_s3, join, split_s3
from services.dataset_filter import label_detectors
from services.dataset_filter.estimate import scan_estimate
from services.dataset_filter.label_detectors import LabelDetector

KIND = "filter"
DETECTOR_NAMES = ("local", "rekognition")
S3_MAX_ATTEMPTS = 8  # botocore "standard" retries: throttling and 5xx answers back off exponentially
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")



# --------------------------------------------------------------------------------------------------
# detectors and stores (module-level factories: a test swaps a factory, never the code that uses it)


def _local_detector(ws: Workspace, settings: dict[str, Any], store: ObjectStore) -> LabelDetector:
    return label_detectors.make_detector("local", ws=ws, settings=settings, store=store,
                                         max_pixels=settings.get("max_pixels") or imgs.DEFAULT_MAX_PIXELS)


def _rekognition_detector(ws: Workspace, settings: dict[str, Any], store: ObjectStore) -> LabelDetector:
    return label_detectors.make_detector("rekognition", ws=ws, settings=settings, store=store)


# name -> factory(ws, settings, store). Tests replace an entry to run the job around a detector of their own.
DETECTORS: dict[str, Callable[[Workspace, dict[str, Any], ObjectStore], LabelDetector]] = {
    "local": _local_detector,
    "rekognition": _rekognition_detector,
}
COST_PER_IMAGE = {
    "local": label_detectors.LocalImageNetDetector.cost_per_image,
    "rekognition": label_detectors.RekognitionDetector.cost_per_image,
}


def cost_per_image(detector: str) -> float:
    """The detector's price per image in USD (0 for the local one). Raises InvalidInput for an unknown name."""
    if detector not in DETECTORS:
        raise InvalidInput(f"unknown detector '{detector}': choose one of {', '.join(DETECTORS)}")
    return float(COST_PER_IMAGE.get(detector, 0.0))


def store_for(db: sqlite_utils.Database) -> ObjectStore:
    """The object store a filter job reads and copies with (Settings' endpoint and storage roots, patient
    retries)."""
    return object_store(db, max_attempts=S3_MAX_ATTEMPTS)


def resolve_labels(labels: list[str], *, detector: str) -> dict[str, list[str]]:
    """``services.dataset_filter.label_detectors.resolve_labels``. Raises InvalidInput (with close names) for an unknown label."""
    return label_detectors.resolve_labels(labels, detector=detector)


# --------------------------------------------------------------------------------------------------
# parameters


def _local_path(uri: str) -> str:
    if uri[:5].lower() == "file:":
        return unquote(urlparse(uri).path)
    return uri


def _norm_location(uri: str) -> tuple[str, str]:
    """(scheme-ish root, normalised path with a trailing '/') used to tell whether one location is inside another."""
    if is_s3(uri):
        bucket, prefix = split_s3(uri)
        prefix = prefix.strip("/")
        return f"s3://{bucket}", (prefix + "/") if prefix else ""
    path = os.path.realpath(os.path.abspath(os.path.expanduser(_local_path(uri))))
    return "file", path.rstrip(os.sep) + os.sep


def _inside(inner: str, outer: str) -> bool:
    (root_i, path_i), (root_o, path_o) = _norm_location(inner), _norm_location(outer)
    return root_i == root_o and path_i.startswith(path_o)


def _as_float(params: dict[str, Any], key: str, default: float | None) -> float | None:
    value = params.get(key)
    if value is None or value == "":
        return default
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{key} must be a number between 0 and 1, not {value!r}") from None
    if not 0.0 <= out <= 1.0:
        hint = f" (did you mean {out / 100:g}?)" if 1 < out <= 100 else ""
        raise InvalidInput(f"{key} must be between 0 and 1, got {value!r}{hint}")
    return out


def _as_count(params: dict[str, Any], key: str) -> int | None:
    value = params.get(key)
    if value is None or value == "" or value == 0:
        return None  # no limit
    if isinstance(value, bool):
        raise InvalidInput(f"{key} must be a whole number (0 or empty for no limit), not {value!r}")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{key} must be a whole number (0 or empty for no limit), not {value!r}") from None
    if out != float(value) or out < 0:
        raise InvalidInput(f"{key} must be a whole number of 1 or more (0 or empty for no limit), not {value!r}")
    return out or None


def _labels(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise InvalidInput("labels must be a list of label names, e.g. ['bird'] or 'bird, dog'")
    out: list[str] = []
    for raw in value:
        name = str(raw).strip()
        if name and name.lower() not in {o.lower() for o in out}:
            out.append(name)
    if not out:
        raise InvalidInput("give at least one label to keep, e.g. 'bird' or 'person'")
    return out


def validate_params(
    db: sqlite_utils.Database, params: dict[str, Any], *, store: ObjectStore | None = None, check_source: bool = True
) -> dict[str, Any]:
    """The cleaned parameters of a filter job, ready for ``jobs.create_job(kind="filter")``.

    Keys: source, destination, labels, name (default: the first label), threshold (default 0.8),
    band_low (default: threshold, i.e. no band), scan_cap and stop_after_misses (None: no limit),
    detector ("local" | "rekognition"), dry_run. ``check_source`` lists the source to make sure it
    holds at least one image (stops at the first one).
    Raises InvalidInput with a message for the person: missing/empty/unreadable source, destination
    inside the source, an unknown label (with close names), a bad threshold or band, a bad name;
    CloudAccessError when AWS refuses the credentials listing the source.
    """
    if not isinstance(params, dict):
        raise InvalidInput("filter parameters must be a mapping")
    source = str(params.get("source") or "").strip()
    destination = str(params.get("destination") or "").strip()
    if not source:
        raise InvalidInput("give a source: a local folder or s3://bucket/prefix holding the images to scan")
    if not destination:
        raise InvalidInput("give a destination: a local folder or s3://bucket/prefix for the kept images")
    for what, uri in (("source", source), ("destination", destination)):
        if is_s3(uri):
            split_s3(uri)  # raises InvalidInput for a malformed URI
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri) and not uri.lower().startswith("file://"):
            raise InvalidInput(f"unsupported {what} {uri!r}: use a local folder, a file:// URL or s3://bucket/prefix")
    labels = _labels(params.get("labels"))
    name = str(params.get("name") or "").strip() or labels[0]
    if not _NAME.match(name) or ".." in name:
        raise InvalidInput(f"the output folder name {name!r} may hold letters, digits, spaces, '.', '-' and '_' "
                           "(no '/' or '..'), at most 100 characters")
    detector = str(params.get("detector") or "local").strip().lower()
    if detector not in DETECTORS:
        raise InvalidInput(f"unknown detector '{detector}': choose one of {', '.join(DETECTORS)}")
    threshold = _as_float(params, "threshold", 0.8)
    assert threshold is not None
    if threshold <= 0:
        raise InvalidInput("threshold must be above 0 (0 would keep every image)")
    band_low = _as_float(params, "band_low", threshold)
    assert band_low is not None
    if band_low > threshold:
        raise InvalidInput(f"the human band [{band_low:g}, {threshold:g}) is empty: band_low must not be above "
                           "the threshold (set band_low equal to the threshold for no band)")
    cleaned = {
        "source": source,
        "destination": destination,
        "labels": labels,
        "name": name,
        "threshold": threshold,
        "band_low": band_low,
        "scan_cap": _as_count(params, "scan_cap"),
        "stop_after_misses": _as_count(params, "stop_after_misses"),
        "detector": detector,
        "dry_run": bool(params.get("dry_run", False)),
    }
    out = output_root(cleaned)
    if _inside(destination, source) or _inside(out, source):
        raise InvalidInput(f"the destination {out} is inside the source {source}: a scan would find its own "
                           "copies. Choose a destination outside the source.")
    if _inside(source, out):
        raise InvalidInput(f"the source {source} is inside the output folder {out}: choose another name or destination.")
    if detector in DETECTOR_NAMES:
        resolve_labels(labels, detector=detector)  # raises InvalidInput with suggestions ("birb" -> "bird?")
    if check_source:
        store = store or store_for(db)
        if next((o for o, image in listing(store, source) if image), None) is None:
            raise InvalidInput(f"the source {source} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                               "check the path or prefix")
    return cleaned


def output_root(params: dict[str, Any]) -> str:
    """``destination/<name>``: where kept images, manifest.jsonl and report.csv go."""
    return join(params["destination"], params["name"])


def relative_key(source: str, uri: str) -> str:
    """An object's key relative to the source folder or prefix, '/'-separated. Raises InvalidInput."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        src_bucket, prefix = split_s3(source)
        prefix = prefix.strip("/")
        if bucket == src_bucket and (not prefix or key.startswith(prefix + "/")):
            return key[len(prefix) + 1 :] if prefix else key
    elif not is_s3(source):
        root = os.path.abspath(_local_path(source))
        path = os.path.abspath(_local_path(uri))
        rel = os.path.relpath(path, root)
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    raise InvalidInput(f"{uri} is not under the source {source}")


def destination_for(params: dict[str, Any], uri: str) -> str:
    """Where a kept image of the source is copied: ``destination/<name>/<key relative to the source>``."""
    return join(output_root(params), relative_key(params["source"], uri))


# --------------------------------------------------------------------------------------------------
# listing, estimate, dry run


def listing(store: ObjectStore, source: str, *, cap: int | None = None) -> Iterator[tuple[ObjectInfo, bool]]:
    """(object, is_image) in scan order, stopping once ``cap`` images were listed. Raises InvalidInput for a
    source that is missing or cannot be read, CloudAccessError when AWS refuses the console's credentials (a
    matter of the AWS identity, not of the parameters: its message names the permission)."""
    images = 0
    try:
        for obj in store.list(source):
            if cap is not None and images >= cap:
                return
            image = obj.key.lower().endswith(IMAGE_SUFFIXES)
            images += image
            yield obj, image
    except (InvalidInput, CloudAccessError):
        raise
    except ConsoleError as exc:  # NotFound, StorageError: the source is missing or unreadable
        raise InvalidInput(f"cannot read the source {source}: {exc}") from exc


def dry_run(db: sqlite_utils.Database, params: dict[str, Any], store: ObjectStore | None = None, *,
            limit: int | None = None) -> dict[str, Any]:
    """What a job with these parameters would scan, in scan order and after the cap, calling no detector.

    Returns {"items": [image URIs], "skipped": [non-image URIs], "images": n, "non_images": n,
    "copies_to": [where each image would go if kept], "output": destination/<name>, "truncated": bool};
    ``limit`` bounds the lists returned (not the counts). Raises InvalidInput (bad parameters, unreadable
    or empty source), CloudAccessError (AWS refuses the credentials).
    """
    clean = validate_params(db, params, store=store, check_source=False)
    store = store or store_for(db)
    root = output_root(clean)
    items: list[str] = []
    copies: list[str] = []
    skipped: list[str] = []
    images = others = 0
    for obj, image in listing(store, clean["source"], cap=clean["scan_cap"]):
        images += image
        others += not image
        if image and (limit is None or len(items) < limit):
            items.append(obj.uri)
            copies.append(join(root, obj.key))
        elif not image and (limit is None or len(skipped) < limit):
            skipped.append(obj.uri)
    if not images:
        raise InvalidInput(f"the source {clean['source']} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                           "check the path or prefix")
    return {"items": items, "skipped": skipped, "images": images, "non_images": others, "copies_to": copies,
            "output": root, "truncated": len(items) < images or len(skipped) < others}


def estimate(db: sqlite_utils.Database, params: dict[str, Any], store: ObjectStore | None = None) -> dict[str, Any]:
    """Before launch: {images_in_scope, non_images, capped_to, detector, cost_per_image_usd, expected_cost_usd,
    expected_seconds, images_per_s, rate_limit, in_flight, bound_by, message, output}.

    ``expected_cost_usd`` is the most the scan can cost (early stopping only lowers it); the time uses the rate
    limit and requests in flight of the settings (``services.dataset_filter.estimate``); ``message`` says it
    all in a sentence ("100,000 images, about $100, about 40 minutes at 50 requests a second"). Lists the
    whole source. Raises InvalidInput (bad parameters, unreadable or empty source), CloudAccessError (AWS
    refuses the credentials).
    """
    clean = validate_params(db, params, store=store, check_source=False)
    store = store or store_for(db)
    images = others = 0
    for _obj, image in listing(store, clean["source"]):
        images += image
        others += not image
    if not images:
        raise InvalidInput(f"the source {clean['source']} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                           "check the path or prefix")
    capped = min(images, clean["scan_cap"]) if clean["scan_cap"] else images
    price = cost_per_image(clean["detector"])
    settings = get_settings(db)
    timing = scan_estimate(capped, detector=clean["detector"], cost_per_image=price,
                           rate=float(settings["rekognition_requests_per_second"]),
                           in_flight=int(settings["rekognition_in_flight"]))
    return {
        "images_in_scope": images,
        "non_images": others,
        "capped_to": capped,
        "detector": clean["detector"],
        "cost_per_image_usd": price,
        **{k: v for k, v in timing.items() if k != "images"},
        "output": output_root(clean),
    }

"""Dataset filtering: the ``filter`` job kind keeps only the images of a source that show a wanted label.

A job scans a source (a local folder or ``s3://bucket/prefix``) in a stable order (S3 key order, which
the local walk follows too), at most ``scan_cap`` images, and runs a label detector on each image
(``services.label_detectors``: the offline ImageNet classifier or Rekognition DetectLabels). For each
image, the best evidence among the wanted labels decides its outcome:

- ``kept``: confidence >= ``threshold``; the image is copied to ``destination/<name>/<key relative to
  the source>`` (server-side ``copy_object`` when source and destination are both on the S3 endpoint).
- ``band``: ``band_low`` <= confidence < ``threshold``; a yes/no check (``filter_checks``, status open)
  asks a person, and a yes copies it (``services.filter_checks``).
- ``rejected``: below the band. A rejection is a *miss*: after ``stop_after_misses`` misses in a row
  (in scan order; a kept or band image resets the count, failed and skipped images do neither) the
  scan stops early. The order of the outcomes never depends on the batch size.
- ``failed``: the image could not be read (access denied, gone), decoded, or taken by the detector
  (too large, bad format), or its copy failed; the reason is recorded and the job goes on. A detector
  service refusing the caller itself (``ExternalServiceError``: no permission, bad credentials,
  throttled past every retry) stops the job with that message instead; resume it once fixed.
- ``skipped``: an object that is not an image by its extension.

Every scanned object gets one ``filter_results`` row, written with its job item in the batch
transaction, so a job killed halfway resumes where it stopped: nothing is scanned twice and nothing
is copied twice (a copy goes to a fixed key, and is made only for an image whose row is not committed).
At the end the job writes ``manifest.jsonl`` (Ground Truth image classification, plus bounding boxes
when the detector gave them) and ``report.csv`` (every scanned object) to ``destination/<name>/``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlparse

import sqlite_utils

from services import images as imgs
from services import jobs, label_detectors
from services.clock import now_iso
from services.config import Workspace, get_settings
from services.errors import ConsoleError, ExternalServiceError, InvalidInput, NotFound
from services.label_detectors import LabelDetector
from services.storage import ObjectInfo, ObjectStore, is_s3, join, split_s3

KIND = "filter"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DETECTOR_NAMES = ("local", "rekognition")
IO_THREADS = 4
S3_MAX_ATTEMPTS = 8  # botocore "standard" retries: throttling and 5xx answers back off exponentially
MANIFEST_ATTRIBUTE = "category"
MANIFEST_MAX_BOXES = 50  # Rekognition Custom Labels reads at most 50 boxes an image
DRY_RUN_LIST_LIMIT = 200  # URIs kept in a dry-run job's result (the full list: dry_run())
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$")
SCANNED = ("kept", "rejected", "band", "failed")


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


def store_for(settings: dict[str, Any]) -> ObjectStore:
    """The object store a filter job reads and copies with (the S3 endpoint setting, patient retries)."""
    return ObjectStore(endpoint_url=settings.get("s3_endpoint_url") or None, max_attempts=S3_MAX_ATTEMPTS)


def resolve_labels(labels: list[str], *, detector: str) -> dict[str, list[str]]:
    """``services.label_detectors.resolve_labels``. Raises InvalidInput (with close names) for an unknown label."""
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
    inside the source, an unknown label (with close names), a bad threshold or band, a bad name.
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
        store = store or store_for(get_settings(db))
        if next((o for o, image in _listing(store, source) if image), None) is None:
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


def _listing(store: ObjectStore, source: str, *, cap: int | None = None) -> Iterator[tuple[ObjectInfo, bool]]:
    """(object, is_image) in scan order, stopping once ``cap`` images were listed. Raises InvalidInput."""
    images = 0
    try:
        for obj in store.list(source):
            if cap is not None and images >= cap:
                return
            image = obj.key.lower().endswith(IMAGE_SUFFIXES)
            images += image
            yield obj, image
    except InvalidInput:
        raise
    except ConsoleError as exc:  # NotFound, StorageError: the source is missing or refused
        raise InvalidInput(f"cannot read the source {source}: {exc}") from exc


def dry_run(db: sqlite_utils.Database, params: dict[str, Any], store: ObjectStore | None = None, *,
            limit: int | None = None) -> dict[str, Any]:
    """What a job with these parameters would scan, in scan order and after the cap, calling no detector.

    Returns {"items": [image URIs], "skipped": [non-image URIs], "images": n, "non_images": n,
    "copies_to": [where each image would go if kept], "output": destination/<name>, "truncated": bool};
    ``limit`` bounds the lists returned (not the counts). Raises InvalidInput (bad parameters, unreadable
    or empty source).
    """
    clean = validate_params(db, params, store=store, check_source=False)
    store = store or store_for(get_settings(db))
    root = output_root(clean)
    items: list[str] = []
    copies: list[str] = []
    skipped: list[str] = []
    images = others = 0
    for obj, image in _listing(store, clean["source"], cap=clean["scan_cap"]):
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
    """Before launch: {images_in_scope, non_images, capped_to, detector, cost_per_image_usd, expected_cost_usd}.

    ``expected_cost_usd`` is the most the scan can cost (early stopping only lowers it). Lists the whole
    source. Raises InvalidInput (bad parameters, unreadable or empty source).
    """
    clean = validate_params(db, params, store=store, check_source=False)
    store = store or store_for(get_settings(db))
    images = others = 0
    for _obj, image in _listing(store, clean["source"]):
        images += image
        others += not image
    if not images:
        raise InvalidInput(f"the source {clean['source']} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                           "check the path or prefix")
    capped = min(images, clean["scan_cap"]) if clean["scan_cap"] else images
    price = cost_per_image(clean["detector"])
    return {
        "images_in_scope": images,
        "non_images": others,
        "capped_to": capped,
        "detector": clean["detector"],
        "cost_per_image_usd": price,
        "expected_cost_usd": round(capped * price, 4),
        "output": output_root(clean),
    }


# --------------------------------------------------------------------------------------------------
# progress and results


def _trailing(db: sqlite_utils.Database, job_id: int, *, counted: str, breaks: tuple[str, ...]) -> int:
    """How many ``counted`` outcomes follow the last of the ``breaks`` outcomes, in scan order."""
    marks = ",".join("?" * len(breaks))
    return int(db.execute(
        f"SELECT COUNT(*) FROM filter_results WHERE job_id = ? AND outcome = ? AND seq > COALESCE("
        f"(SELECT MAX(seq) FROM filter_results WHERE job_id = ? AND outcome IN ({marks})), -1)",
        [job_id, counted, job_id, *breaks]).fetchone()[0])


def misses_in_a_row(db: sqlite_utils.Database, *, job_id: int) -> int:
    """Rejections since the last kept or band image, in scan order (failed and skipped ones do not count)."""
    return _trailing(db, job_id, counted="rejected", breaks=("kept", "band"))


def progress(db: sqlite_utils.Database, *, job_id: int) -> dict[str, Any]:
    """Live progress of a filter job: scanned, kept, band, rejected, failed, skipped, misses_in_a_row,
    stopped_early, total (objects listed), rate (images a second in the current run, when running),
    state. Raises NotFound."""
    job = jobs.get_job(db, job_id)
    if job["kind"] != KIND:
        raise NotFound(f"job {job_id} is a {job['kind']} job, not a dataset filter")
    counts = dict(db.execute("SELECT outcome, COUNT(*) FROM filter_results WHERE job_id = ? GROUP BY outcome",
                             [job_id]).fetchall())
    misses = misses_in_a_row(db, job_id=job_id)
    limit = job["params"].get("stop_after_misses")
    live = (job["result"] or {}).get("progress", {}) if isinstance(job["result"], dict) else {}
    out = {f: int(counts.get(f, 0)) for f in ("kept", "band", "rejected", "failed", "skipped")}
    out.update(
        scanned=sum(out[f] for f in SCANNED),
        misses_in_a_row=misses,
        stopped_early=bool(limit and misses >= limit),
        total=int(job["total"] or 0),
        processed=int((job["done"] or 0) + (job["failed"] or 0)),
        rate=live.get("rate"),
        state=job["state"],
    )
    return out


def results(db: sqlite_utils.Database, *, job_id: int, outcome: str | None = None, limit: int = 1000,
            offset: int = 0) -> list[dict[str, Any]]:
    """The job's filter_results rows in scan order (detail decoded), with the check status of band images."""
    sql = ("SELECT r.*, c.status AS check_status, c.id AS check_id FROM filter_results r "
           "LEFT JOIN filter_checks c ON c.job_id = r.job_id AND c.uri = r.uri WHERE r.job_id = ?")
    args: list[Any] = [job_id]
    if outcome:
        sql += " AND r.outcome = ?"
        args.append(outcome)
    rows = list(db.query(sql + " ORDER BY r.seq LIMIT ? OFFSET ?", [*args, limit, offset]))
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
    return rows


# --------------------------------------------------------------------------------------------------
# outputs: manifest.jsonl and report.csv


def _manifest_line(row: dict[str, Any], params: dict[str, Any], *, label: str, confidence: float, human: bool) -> str:
    labels = params["labels"]
    class_id = labels.index(label) if label in labels else 0
    created = (row.get("answered_at") or row["created_at"] or "").rstrip("Z")[:19]
    job_name = f"labeling-job/{params['name']}"
    line: dict[str, Any] = {
        "source-ref": row["copied_to"],
        MANIFEST_ATTRIBUTE: class_id,
        f"{MANIFEST_ATTRIBUTE}-metadata": {
            "class-name": label,
            "confidence": round(float(confidence), 4),
            "type": "groundtruth/image-classification",
            "job-name": job_name,
            "human-annotated": "yes" if human else "no",
            "creation-date": created,
        },
    }
    detail = json.loads(row["detail"]) if isinstance(row["detail"], str) and row["detail"] else (row["detail"] or {})
    size = detail.get("image_size")
    boxes: list[tuple[int, dict[str, Any]]] = []
    for name, found in (detail.get("detections") or {}).items():
        shown = name == label or (not human and float(found.get("confidence", 0)) >= params["threshold"])
        if shown and name in labels:
            boxes += [(labels.index(name), b) for b in found.get("boxes") or []]
    if size and boxes:
        width, height = int(size[0]), int(size[1])
        boxes = sorted(boxes, key=lambda cb: -float(cb[1].get("confidence", 0)))[:MANIFEST_MAX_BOXES]
        line["bounding-box"] = {
            "image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": [
                {"class_id": cid, "left": round(float(b["left"]) * width), "top": round(float(b["top"]) * height),
                 "width": round(float(b["width"]) * width), "height": round(float(b["height"]) * height)}
                for cid, b in boxes
            ],
        }
        line["bounding-box-metadata"] = {
            "objects": [{"confidence": round(float(b.get("confidence", confidence)), 4)} for _, b in boxes],
            "class-map": {str(cid): labels[cid] for cid in sorted({cid for cid, _ in boxes})},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes" if human else "no",
            "creation-date": created,
            "job-name": job_name,
        }
    return json.dumps(line)


def manifest_text(db: sqlite_utils.Database, *, job_id: int) -> tuple[str, int]:
    """(manifest.jsonl text, lines): every kept image and every band image a person said yes to, by its copy."""
    params = jobs.get_job(db, job_id)["params"]
    lines = []
    for row in db.query(
        "SELECT r.*, c.status AS check_status, c.label AS check_label, c.copied_to AS check_copy, c.answered_at "
        "FROM filter_results r LEFT JOIN filter_checks c ON c.job_id = r.job_id AND c.uri = r.uri "
        "WHERE r.job_id = ? AND (r.outcome = 'kept' OR c.status = 'yes') ORDER BY r.seq",
        [job_id],
    ):
        if row["outcome"] == "kept" and row["copied_to"]:
            lines.append(_manifest_line(row, params, label=row["label"], confidence=row["confidence"] or 0.0, human=False))
        elif row["check_status"] == "yes" and (row["check_copy"] or row["copied_to"]):
            row["copied_to"] = row["check_copy"] or row["copied_to"]
            lines.append(_manifest_line(row, params, label=row["check_label"] or row["label"], confidence=1.0, human=True))
    return "".join(line + "\n" for line in lines), len(lines)


REPORT_FIELDS = ("seq", "uri", "outcome", "label", "confidence", "matched", "copied_to", "check", "error")


def report_text(db: sqlite_utils.Database, *, job_id: int) -> tuple[str, int]:
    """(report.csv text, rows): every scanned object in scan order with its best label, confidence, outcome."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_FIELDS)
    writer.writeheader()
    n = 0
    for row in results(db, job_id=job_id, limit=-1):
        detail = row["detail"]
        best = (detail.get("detections") or {}).get(row["label"] or "", {})
        writer.writerow({
            "seq": row["seq"], "uri": row["uri"], "outcome": row["outcome"], "label": row["label"] or "",
            "confidence": "" if row["confidence"] is None else f"{row['confidence']:.4f}",
            "matched": "; ".join(best.get("matched") or []), "copied_to": row["copied_to"] or "",
            "check": row["check_status"] or "", "error": detail.get("error", ""),
        })
        n += 1
    return out.getvalue(), n


def write_outputs(db: sqlite_utils.Database, *, job_id: int, store: ObjectStore) -> dict[str, Any]:
    """(Re)write ``manifest.jsonl`` and ``report.csv`` under ``destination/<name>/`` from the database.

    Returns {"manifest", "manifest_lines", "report", "report_rows"}. Raises NotFound, StorageError.
    """
    params = jobs.get_job(db, job_id)["params"]
    root = output_root(params)
    manifest, n_lines = manifest_text(db, job_id=job_id)
    report, n_rows = report_text(db, job_id=job_id)
    manifest_uri, report_uri = join(root, "manifest.jsonl"), join(root, "report.csv")
    store.write(manifest_uri, manifest.encode())
    store.write(report_uri, report.encode())
    return {"manifest": manifest_uri, "manifest_lines": n_lines, "report": report_uri, "report_rows": n_rows}


def copy_image(store: ObjectStore, src: str, dst: str, data: bytes | None = None) -> None:
    """Copy one image: server-side inside S3, else the bytes already read (or read now). Raises ConsoleError."""
    if data is not None and not (is_s3(src) and is_s3(dst)):
        store.write(dst, data)
    else:
        store.copy(src, dst)


# --------------------------------------------------------------------------------------------------
# the job kind


@dataclass
class Loaded:
    items: list[str]
    data: dict[str, bytes] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # the object could not be read


@dataclass
class Row:
    uri: str
    seq: int
    outcome: str
    label: str | None = None
    confidence: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    copied_to: str | None = None


def _detection_dict(det: Any) -> dict[str, Any]:
    return {
        "confidence": round(float(det.confidence), 6),
        "matched": list(getattr(det, "matched", None) or [])[:20],
        "boxes": list(getattr(det, "boxes", None) or []),
    }


class FilterKind(jobs.BaseKind):
    name = KIND
    batch_size = 32

    # ---- set-up
    def start(self, ctx: jobs.JobContext) -> None:
        settings = get_settings(ctx.db)
        params = ctx.params
        ctx.state.update(
            settings=settings,
            store=store_for(settings),
            pool=ThreadPoolExecutor(IO_THREADS, thread_name_prefix=f"job{ctx.job_id}-io"),
            started=time.monotonic(),
            scanned_this_run=0,
        )
        ctx.state["misses"] = misses_in_a_row(ctx.db, job_id=ctx.job_id)
        limit = params.get("stop_after_misses")
        ctx.state["stopped"] = bool(limit and ctx.state["misses"] >= limit)
        if not params.get("dry_run"):
            ctx.state["detector"] = DETECTORS[params["detector"]](ctx.ws, settings, ctx.state["store"])

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        params = ctx.params
        listing = [(o.uri, image) for o, image in _listing(ctx.state["store"], params["source"], cap=params["scan_cap"])]
        if params.get("dry_run"):
            images = [u for u, image in listing if image]
            ctx.state["dry_run"] = {"dry_run": True, "would_scan": len(images), "non_images": len(listing) - len(images),
                                    "output": output_root(params), "first": images[:DRY_RUN_LIST_LIMIT]}
            return []
        if not any(image for _, image in listing):
            raise InvalidInput(f"the source {params['source']} holds no images: nothing to scan")
        ctx.state["order"] = {u: i for i, (u, _) in enumerate(listing)}
        return [u for u, _ in listing]

    def _order(self, ctx: jobs.JobContext) -> dict[str, int]:
        if "order" not in ctx.state:
            rows = ctx.db.execute("SELECT item FROM job_items WHERE job_id = ? ORDER BY rowid", [ctx.job_id])
            ctx.state["order"] = {r[0]: i for i, r in enumerate(rows)}
        return ctx.state["order"]

    # ---- I/O (loader thread: no ctx.db)
    def load(self, ctx: jobs.JobContext, items: list[str]) -> Loaded:
        out = Loaded(items=items)
        if ctx.state.get("stopped"):
            return out
        store: ObjectStore = ctx.state["store"]

        def one(uri: str) -> None:
            if not uri.lower().endswith(IMAGE_SUFFIXES):
                return
            try:
                out.data[uri] = store.read(uri)
            except ConsoleError as exc:
                out.errors[uri] = f"cannot read {uri}: {exc}"

        list(ctx.state["pool"].map(one, items))
        return out

    # ---- detection and copies (worker thread; reads only)
    def _detect_batch(self, ctx: jobs.JobContext, uris: list[str], loaded: Loaded) -> dict[str, Any]:
        """Detections (or each image's ConsoleError) for the whole batch at once, when the detector has a batch
        API and is free; else {} and ``compute`` calls it one image at a time, so an early stop saves calls."""
        detector = ctx.state["detector"]
        many = getattr(detector, "detect_many", None)
        if not callable(many) or not uris or float(getattr(detector, "cost_per_image", 0.0) or 0.0) > 0:
            return {}
        return dict(zip(uris, many([loaded.data[u] for u in uris], wanted=ctx.params["labels"]), strict=True))

    def _detect_one(self, ctx: jobs.JobContext, uri: str, data: bytes) -> Any:
        return ctx.state["detector"].detect(data=data, uri=uri, wanted=ctx.params["labels"])

    def _decide(self, ctx: jobs.JobContext, row: Row, found: dict[str, Any]) -> None:
        params = ctx.params
        detections = {name: det for name, det in (found or {}).items() if name in params["labels"]}
        if detections:
            best_name, best = max(detections.items(), key=lambda kv: (float(kv[1].confidence), -params["labels"].index(kv[0])))
            row.label, row.confidence = best_name, float(best.confidence)
        else:
            row.label, row.confidence = params["labels"][0], 0.0
        size = next((getattr(d, "image_size", None) for d in detections.values() if getattr(d, "image_size", None)), None)
        row.detail = {"detections": {n: _detection_dict(d) for n, d in detections.items()}}
        if size:
            row.detail["image_size"] = list(size)
        if row.confidence >= params["threshold"]:
            row.outcome = "kept"
        elif row.confidence >= params["band_low"] and params["band_low"] < params["threshold"]:
            row.outcome = "band"
        else:
            row.outcome = "rejected"

    def compute(self, ctx: jobs.JobContext, loaded: Loaded) -> list[Row]:
        order = self._order(ctx)
        params, state = ctx.params, ctx.state
        limit = params.get("stop_after_misses")
        readable = [u for u in loaded.items if u in loaded.data]
        batch = {} if state["stopped"] else self._detect_batch(ctx, readable, loaded)
        rows: list[Row] = []
        for uri in sorted(loaded.items, key=lambda u: order.get(u, 0)):
            if state["stopped"]:
                break  # early stop: the rest is not scanned (its job items just close)
            row = Row(uri=uri, seq=order.get(uri, 0), outcome="failed")
            if not uri.lower().endswith(IMAGE_SUFFIXES):
                row.outcome, row.detail = "skipped", {"error": "not an image (by its extension)"}
            elif uri in loaded.errors:
                row.detail = {"error": loaded.errors[uri]}
            elif uri not in loaded.data:
                continue  # read after the stop flag went up on the loader thread: not scanned
            else:
                try:
                    found = batch[uri] if uri in batch else self._detect_one(ctx, uri, loaded.data[uri])
                    if isinstance(found, ConsoleError):
                        raise found
                    self._decide(ctx, row, found)
                except ExternalServiceError:
                    raise  # the service refuses every image (access, credentials, throttling): stop; resume later
                except ConsoleError as exc:  # this image: not decodable, too large, unreadable
                    row.outcome, row.detail = "failed", {"error": f"{uri}: {exc}"}
            rows.append(row)
            if row.outcome == "skipped":
                continue
            state["scanned_this_run"] += 1
            if row.outcome == "failed":
                continue  # neither a miss nor a match: the count of misses in a row goes on past it
            state["misses"] = state["misses"] + 1 if row.outcome == "rejected" else 0
            if limit and state["misses"] >= limit:
                state["stopped"] = True
        self._copy(ctx, [r for r in rows if r.outcome == "kept"], loaded)
        return rows

    def _copy(self, ctx: jobs.JobContext, rows: list[Row], loaded: Loaded) -> None:
        store: ObjectStore = ctx.state["store"]

        def one(row: Row) -> None:
            try:
                dst = destination_for(ctx.params, row.uri)
                copy_image(store, row.uri, dst, loaded.data.get(row.uri))
                row.copied_to = dst
            except ConsoleError as exc:
                row.outcome = "failed"
                row.detail["error"] = f"shows {row.label} ({row.confidence:.2f}) but the copy failed: {exc}"

        list(ctx.state["pool"].map(one, rows))

    # ---- the batch transaction
    def write(self, ctx: jobs.JobContext, computed: list[Row]) -> dict[str, str | None]:
        now = now_iso()
        outcome: dict[str, str | None] = {}
        for row in computed:
            cur = ctx.db.execute(
                "INSERT OR IGNORE INTO filter_results (job_id, uri, seq, label, confidence, outcome, detail, copied_to, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [ctx.job_id, row.uri, row.seq, row.label, row.confidence, row.outcome, json.dumps(row.detail),
                 row.copied_to, now],
            )
            if cur.rowcount and row.outcome == "band":
                ctx.db.execute(
                    "INSERT OR IGNORE INTO filter_checks (job_id, uri, label, confidence, status) VALUES (?, ?, ?, ?, 'open')",
                    [ctx.job_id, row.uri, row.label, row.confidence],
                )
            outcome[row.uri] = row.detail.get("error") if row.outcome == "failed" else None
        elapsed = max(time.monotonic() - ctx.state["started"], 1e-6)
        live = {"progress": {"rate": round(ctx.state["scanned_this_run"] / elapsed, 2),
                             "misses_in_a_row": ctx.state["misses"], "stopped_early": ctx.state["stopped"]}}
        ctx.db.execute("UPDATE jobs SET result = ? WHERE id = ?", [json.dumps(live), ctx.job_id])
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        if ctx.params.get("dry_run"):
            return ctx.state.get("dry_run") or {"dry_run": True, "would_scan": 0}
        outputs = write_outputs(ctx.db, job_id=ctx.job_id, store=ctx.state["store"])
        summary = progress(ctx.db, job_id=ctx.job_id)
        elapsed = max(time.monotonic() - ctx.state["started"], 1e-6)
        summary.update(rate=round(ctx.state["scanned_this_run"] / elapsed, 2), state="done")
        return {**summary, "progress": {"rate": summary["rate"]}, **outputs, "output": output_root(ctx.params)}

    def close(self, ctx: jobs.JobContext) -> None:
        pool = ctx.state.pop("pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        detector = ctx.state.pop("detector", None)
        closer = getattr(detector, "close", None)
        if callable(closer):
            closer()


jobs.register(FilterKind())


def launch(db: sqlite_utils.Database, params: dict[str, Any], *, actor: str,
           store: ObjectStore | None = None) -> int:
    """Validate and queue a filter job; returns its id. Raises InvalidInput (see validate_params)."""
    return jobs.create_job(db, kind=KIND, params=validate_params(db, params, store=store), actor=actor)

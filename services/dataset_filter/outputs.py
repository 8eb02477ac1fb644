"""Dataset filter read-outs and outputs: progress, results, the Ground Truth manifest and the report, and
the copy of a kept image. The job itself is ``services.dataset_filter.job``."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.csvsafe import safe_row
from services.core.errors import ConsoleError, NotFound, StorageError
from services.core.ratelimit import RateLimiter
from services.core.storage import ObjectStore, is_s3, join
from services.dataset_filter.params import KIND, output_root

MANIFEST_ATTRIBUTE = "category"
MANIFEST_MAX_BOXES = 50  # Rekognition Custom Labels reads at most 50 boxes an image
SCANNED = ("kept", "rejected", "band", "failed")



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


def _short(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]


def why_nothing_kept(db: sqlite_utils.Database, *, job_id: int, top: int = 3) -> dict[str, Any] | None:
    """Why a scan kept nothing, or None when it kept something (or scanned nothing).

    Returns {"threshold", "best": {label: [{"uri", "confidence"}, ...best ``top``]}, "would_keep":
    [{"threshold", "kept"}] (the highest threshold that keeps 1 image, and one that keeps about 5),
    "message"}: the best confidences the scan saw per label and the threshold that would have kept some.
    Raises NotFound for an unknown job.
    """
    params = jobs.get_job(db, job_id)["params"]
    if db.execute("SELECT 1 FROM filter_results WHERE job_id = ? AND outcome = 'kept' LIMIT 1", [job_id]).fetchone():
        return None
    labels = list(params.get("labels") or [])
    best: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    confidences: list[float] = []
    for uri, confidence, detail in db.execute(
            "SELECT uri, confidence, detail FROM filter_results WHERE job_id = ? AND outcome IN ('band', 'rejected')",
            [job_id]):
        confidences.append(float(confidence or 0.0))
        found = (json.loads(detail) if detail else {}).get("detections") or {}
        for label in labels:
            if label in found:
                best[label].append({"uri": uri, "confidence": round(float(found[label].get("confidence", 0.0)), 4)})
    if not confidences:
        return None
    for label in labels:
        best[label] = sorted(best[label], key=lambda b: -b["confidence"])[:top]
    ranked = sorted(confidences, reverse=True)
    would = []
    for n in (1, 5):
        if len(ranked) >= n and ranked[n - 1] > 0:
            t = math.floor(ranked[n - 1] * 100) / 100 or ranked[n - 1]
            kept = sum(c >= t for c in ranked)
            if not would or would[-1]["kept"] != kept:
                would.append({"threshold": t, "kept": kept})
    def said(label: str, rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"{label} nothing"
        scores = ", ".join(f"{b['confidence']:.2f}" for b in rows)
        return f"{label} {scores} (best: {_short(rows[0]['uri'])})"

    seen = "; ".join(said(label, rows) for label, rows in best.items())
    message = f"Nothing reached the threshold {params['threshold']:g}. Best confidences seen: {seen}."
    if would:
        message += " " + ", ".join(f"a threshold of {w['threshold']:g} would have kept {w['kept']:,}" for w in would)
        message += "."
    else:
        message += " No image scored above 0 for these labels: no threshold would have kept one."
    return {"threshold": params["threshold"], "best": best, "would_keep": would, "message": message}


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
    """(report.csv text, rows): every scanned object in scan order with its best label, confidence, outcome;
    text a spreadsheet would run as a formula is neutralised (services.core.csvsafe). Raises nothing."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=REPORT_FIELDS)
    writer.writeheader()
    n = 0
    for row in results(db, job_id=job_id, limit=-1):
        detail = row["detail"]
        best = (detail.get("detections") or {}).get(row["label"] or "", {})
        writer.writerow(safe_row(row={
            "seq": row["seq"], "uri": row["uri"], "outcome": row["outcome"], "label": row["label"] or "",
            "confidence": "" if row["confidence"] is None else f"{row['confidence']:.4f}",
            "matched": "; ".join(best.get("matched") or []), "copied_to": row["copied_to"] or "",
            "check": row["check_status"] or "", "error": detail.get("error", ""),
        }))
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


COPY_ATTEMPTS = 4  # on top of botocore's own retries: a copy still answered SlowDown waits at a halved rate


def copy_image(store: ObjectStore, src: str, dst: str, data: bytes | None = None, *,
               limiter: RateLimiter | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
    """Copy one image: server-side inside S3 (within ``limiter``'s rate and in-flight bound when given), else
    the bytes already read (or read now). A copy S3 still throttles (SlowDown) after botocore's retries halves
    the limiter's rate and is tried again, ``COPY_ATTEMPTS`` times in all. Raises ConsoleError (StorageError,
    NotFound, InvalidInput, PermissionDenied)."""
    if data is not None and not (is_s3(src) and is_s3(dst)):
        store.write(dst, data)
        return
    for attempt in range(COPY_ATTEMPTS):
        try:
            if limiter is None:
                store.copy(src, dst)
            else:
                with limiter.slot():
                    store.copy(src, dst)
            return
        except StorageError as exc:
            if not _throttled(exc) or attempt + 1 >= COPY_ATTEMPTS:
                raise
            if limiter is not None:
                limiter.throttled()
            sleep(0.5 * 2**attempt)


def _throttled(exc: ConsoleError) -> bool:
    """Whether a storage error says S3 throttled the request (``services.core.aws`` names the code)."""
    text = str(exc).lower()
    return any(code in text for code in ("slowdown", "throttl", "requestlimitexceeded", "toomanyrequests"))

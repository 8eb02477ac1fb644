"""Faces in a video stored in S3, from Amazon Rekognition Video (StartFaceDetection, then GetFaceDetection).

``run_face_detection`` starts (or, resumed, picks up) one job and waits for it without the video file; the
faces job runs several at once, up to ``rekognition_video_jobs`` (the service's concurrent-job quota), and maps
each one's faces to frames with ``faces_by_frame`` once the video is at hand.

GetFaceDetection has no paginator: pages are followed on ``NextToken``. Its timestamps are milliseconds from
the start, not frame numbers: each is matched to the frame whose presentation time is nearest (so a
variable or fractional frame rate, 29.97 and not 29, maps right). Boxes are ratios that can be negative or
run past the edge: they are clamped to the frame.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from services.core import aws
from services.core.errors import ExternalServiceError
from services.faces.detection import clamp_boxes

POLL_SECONDS = 5.0
TIMEOUT_SECONDS = 3600.0


def _call(fn: Callable[..., dict[str, Any]], *, bucket: str, key: str, **kwargs: Any) -> dict[str, Any]:
    """One Rekognition Video request about ``s3://bucket/key``; botocore failures as ConsoleErrors
    (``services.core.aws``)."""
    with aws.errors(service="Rekognition Video", action="detect faces in", resource=f"s3://{bucket}/{key}",
                    permission="rekognition:StartFaceDetection and rekognition:GetFaceDetection, and read access "
                               f"(s3:GetObject) to the video's bucket {bucket}"):
        return fn(**kwargs)


def nearest_frame(times: list[float], seconds: float) -> int:
    """Index of the frame whose presentation time (seconds from the first frame, sorted) is nearest."""
    i = bisect.bisect_left(times, seconds)
    if i == 0:
        return 0
    if i == len(times):
        return len(times) - 1
    return i if times[i] - seconds < seconds - times[i - 1] else i - 1


def face_detections(client: Any, *, bucket: str, key: str, times: list[float], width: int, height: int,
                    min_confidence: float, poll_seconds: float = POLL_SECONDS, timeout: float = TIMEOUT_SECONDS,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[dict[int, np.ndarray], int]:
    """(boxes per frame index in pixels, the sampling interval in frames) for ``s3://bucket/key``. Raises
    CloudAccessError (no credentials, or no permission), InvalidInput (a request Rekognition would refuse),
    ExternalServiceError (the job failed, with Rekognition's reason, or timed out, or the service failed)."""
    faces = run_face_detection(client, bucket=bucket, key=key, poll_seconds=poll_seconds, timeout=timeout,
                               sleep=sleep)
    return faces_by_frame(faces, times=times, width=width, height=height, min_confidence=min_confidence)


def run_face_detection(client: Any, *, bucket: str, key: str, poll_seconds: float = POLL_SECONDS,
                       timeout: float = TIMEOUT_SECONDS, sleep: Callable[[float], None] = time.sleep,
                       job_id: str | None = None, on_start: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every ``Faces`` item (Timestamp in ms, Face) of a Rekognition Video face detection of ``s3://bucket/key``.

    ``job_id``: a job started before (a resumed run): its results are read if Rekognition still has them (it
    keeps them 7 days), else a new job starts. ``on_start(job_id)`` is called once a new job is started (the
    caller records it to resume). A start refused for too many jobs at once (LimitExceededException) or for
    the request rate waits ``poll_seconds`` and tries again, within ``timeout``. ``sleep`` may raise to give up
    (a cancelled job). Raises CloudAccessError, InvalidInput, ExternalServiceError as ``face_detections``."""
    from botocore import exceptions as bx

    waited = 0.0
    page: dict[str, Any] | None = None
    if job_id:
        try:
            page = client.get_face_detection(JobId=job_id, MaxResults=1000)
        except bx.ClientError:
            job_id, page = None, None  # expired or unknown: start again
    while not job_id:
        try:
            job_id = _call(client.start_face_detection, bucket=bucket, key=key,
                           Video={"S3Object": {"Bucket": bucket, "Name": key}}, FaceAttributes="DEFAULT")["JobId"]
        except ExternalServiceError as exc:
            if "throttl" not in str(exc).lower() or waited >= timeout:
                raise
            sleep(poll_seconds)  # the account's concurrent-job quota is full: a slot frees as a job ends
            waited += poll_seconds
            continue
        if on_start is not None:
            on_start(job_id)
    while True:
        if page is None:
            page = _call(client.get_face_detection, bucket=bucket, key=key, JobId=job_id, MaxResults=1000)
        status = page.get("JobStatus")
        if status == "SUCCEEDED":
            break
        if status == "FAILED":
            raise ExternalServiceError(f"Rekognition Video could not detect faces: {page.get('StatusMessage') or 'no reason given'}")
        if waited >= timeout:
            raise ExternalServiceError(f"Rekognition Video took longer than {timeout:.0f} s (job {job_id}): try again later")
        sleep(poll_seconds)
        waited += poll_seconds
        page = None
    items: list[dict[str, Any]] = []
    while True:
        items.extend(page.get("Faces", []))
        token = page.get("NextToken")
        if not token:
            return items
        page = _call(client.get_face_detection, bucket=bucket, key=key, JobId=job_id, MaxResults=1000, NextToken=token)


def faces_by_frame(faces: list[dict[str, Any]], *, times: list[float], width: int, height: int,
                   min_confidence: float) -> tuple[dict[int, np.ndarray], int]:
    """(boxes per frame index in pixels, the sampling interval in frames) from GetFaceDetection's ``Faces``:
    millisecond timestamps matched to the nearest frame, boxes clamped, faces under ``min_confidence`` left out."""
    rows: dict[int, list[list[float]]] = {}
    stamps: set[int] = set()
    for item in faces:
        face = item["Face"]
        score = float(face.get("Confidence", 0.0)) / 100.0
        if score < min_confidence:
            continue
        b = face["BoundingBox"]
        frame = nearest_frame(times, float(item["Timestamp"]) / 1000.0)
        stamps.add(frame)
        rows.setdefault(frame, []).append([b["Left"] * width, b["Top"] * height, (b["Left"] + b["Width"]) * width,
                                           (b["Top"] + b["Height"]) * height, score])
    frames = sorted(stamps)
    gaps = np.diff(frames)
    step = int(np.median(gaps)) if len(gaps) else 1
    out = {f: clamp_boxes(np.array(v, dtype=np.float32).reshape(-1, 5), width, height) for f, v in rows.items()}
    return out, max(1, step)

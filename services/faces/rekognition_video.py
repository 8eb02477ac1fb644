"""Faces in a video stored in S3, from Amazon Rekognition Video (StartFaceDetection, then GetFaceDetection).

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
    job = _call(client.start_face_detection, bucket=bucket, key=key, Video={"S3Object": {"Bucket": bucket, "Name": key}},
                FaceAttributes="DEFAULT")["JobId"]
    waited = 0.0
    while True:
        page = _call(client.get_face_detection, bucket=bucket, key=key, JobId=job, MaxResults=1000)
        status = page.get("JobStatus")
        if status == "SUCCEEDED":
            break
        if status == "FAILED":
            raise ExternalServiceError(f"Rekognition Video could not detect faces: {page.get('StatusMessage') or 'no reason given'}")
        if waited >= timeout:
            raise ExternalServiceError(f"Rekognition Video took longer than {timeout:.0f} s (job {job}): try again later")
        sleep(poll_seconds)
        waited += poll_seconds
    rows: dict[int, list[list[float]]] = {}
    stamps: set[int] = set()
    while True:
        for item in page.get("Faces", []):
            face = item["Face"]
            score = float(face.get("Confidence", 0.0)) / 100.0
            if score < min_confidence:
                continue
            b = face["BoundingBox"]
            frame = nearest_frame(times, float(item["Timestamp"]) / 1000.0)
            stamps.add(frame)
            rows.setdefault(frame, []).append([b["Left"] * width, b["Top"] * height, (b["Left"] + b["Width"]) * width,
                                               (b["Top"] + b["Height"]) * height, score])
        token = page.get("NextToken")
        if not token:
            break
        page = _call(client.get_face_detection, bucket=bucket, key=key, JobId=job, MaxResults=1000, NextToken=token)
    frames = sorted(stamps)
    gaps = np.diff(frames)
    step = int(np.median(gaps)) if len(gaps) else 1
    out = {f: clamp_boxes(np.array(v, dtype=np.float32).reshape(-1, 5), width, height) for f, v in rows.items()}
    return out, max(1, step)

"""Rekognition Video through botocore's Stubber with the real request and response shapes: the job is polled,
pages followed on NextToken, millisecond timestamps matched to frames at the real (fractional) rate,
boxes clamped, failures explained."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from services.core.errors import CloudAccessError, ExternalServiceError
from services.faces.rekognition_video import face_detections, nearest_frame

META = {"Codec": "h264", "DurationMillis": 2000, "Format": "QuickTime / MOV", "FrameRate": 29.97002983093262,
        "FrameHeight": 720, "FrameWidth": 1280}
TIMES = [n / 29.97 for n in range(60)]  # 29.97 fps: frame 6 is at 200.2 ms, frame 12 at 400.4 ms


def _face(ts: int, left: float, top: float, w: float, h: float, conf: float) -> dict:
    return {"Timestamp": ts, "Face": {"BoundingBox": {"Width": w, "Height": h, "Left": left, "Top": top},
                                      "Confidence": conf}}


@pytest.fixture
def client():
    return boto3.client("rekognition", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")


def test_polls_pages_and_maps_timestamps_to_frames(client):
    with Stubber(client) as stub:
        stub.add_response("start_face_detection", {"JobId": "job-1"},
                          {"Video": {"S3Object": {"Bucket": "clips", "Name": "in/a.mp4"}}, "FaceAttributes": "DEFAULT"})
        stub.add_response("get_face_detection", {"JobStatus": "IN_PROGRESS"}, {"JobId": "job-1", "MaxResults": 1000})
        stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "VideoMetadata": META, "NextToken": "p2",
                                                 "Faces": [_face(0, -0.05, 0.1, 0.2, 0.3, 99.0),
                                                           _face(200, 0.5, 0.9, 0.1, 0.2, 97.0)]},
                          {"JobId": "job-1", "MaxResults": 1000})
        stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "VideoMetadata": META,
                                                 "Faces": [_face(400, 0.5, 0.5, 0.1, 0.1, 95.0),
                                                           _face(400, 0.1, 0.1, 0.1, 0.1, 20.0)]},
                          {"JobId": "job-1", "MaxResults": 1000, "NextToken": "p2"})
        waits = []
        found, step = face_detections(client, bucket="clips", key="in/a.mp4", times=TIMES, width=1280, height=720,
                                      min_confidence=0.5, sleep=waits.append)
    assert waits == [5.0] and sorted(found) == [0, 6, 12] and step == 6
    assert found[0][0, :4].round(1).tolist() == [0.0, 72.0, 192.0, 288.0]  # the negative left edge is clamped
    assert found[6][0, :4].round(1).tolist() == [640.0, 648.0, 768.0, 720.0]  # cut at the bottom
    assert len(found[12]) == 1  # the 20% face is under the threshold


def test_a_failed_job_says_why_and_access_denied_names_the_permissions(client):
    with Stubber(client) as stub:
        stub.add_response("start_face_detection", {"JobId": "job-2"})
        stub.add_response("get_face_detection", {"JobStatus": "FAILED", "StatusMessage": "Unsupported codec."})
        with pytest.raises(ExternalServiceError, match="Unsupported codec"):
            face_detections(client, bucket="bkt", key="k.mp4", times=TIMES, width=10, height=10, min_confidence=0.5,
                            sleep=lambda s: None)
        stub.add_client_error("start_face_detection", service_error_code="AccessDeniedException", http_status_code=400)
        with pytest.raises(CloudAccessError, match="StartFaceDetection"):
            face_detections(client, bucket="bkt", key="k.mp4", times=TIMES, width=10, height=10, min_confidence=0.5)


def test_nearest_frame_follows_the_real_timestamps():
    vfr = [0.0, 0.1, 0.15, 0.4, 0.45, 1.0]
    assert [nearest_frame(vfr, t) for t in (0.0, 0.12, 0.3, 0.44, 0.8, 5.0)] == [0, 1, 3, 4, 5, 5]
    assert nearest_frame(TIMES, 0.2) == 6 and nearest_frame(TIMES, 1.0) == 30  # 29.97 fps, not 29

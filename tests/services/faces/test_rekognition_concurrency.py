"""Face blurring with Rekognition at cloud speed: DetectFaces for images up to the requests in flight (throttles
slow it, never fail it), several Rekognition Video jobs at once, and a resumed job reading a started video job's
faces instead of paying again. Real botocore clients answered at the HTTP layer (``before-send``) with the real
JSON shapes; the limiter's clock is fake and the video poll interval 0, so nothing sleeps."""

from __future__ import annotations

import json
import threading
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.stub import Stubber
from PIL import Image

from services.core.config import set_setting
from services.core.jobs import get_job, resume_job, run_job
from services.core.ratelimit import RateLimiter
from services.faces import job as face_blur
from services.faces import rekognition_video
from services.faces.detection import RekognitionFaceDetector
from services.faces.rekognition_video import run_face_detection
from tests.conftest import SHARED

VIDEOS = SHARED / "samples" / "video"
FACE = {"BoundingBox": {"Width": 0.25, "Height": 0.4, "Left": 0.3, "Top": 0.2}, "Confidence": 99.0}


def _response(status: int, payload: dict[str, Any]) -> AWSResponse:
    raw = AWSResponse("https://rekognition.eu-west-1.amazonaws.com/", status,
                      {"x-amzn-RequestId": "r", "Content-Type": "application/x-amz-json-1.1"}, None)
    raw._content = json.dumps(payload).encode()
    return raw


def client_with(handler) -> Any:
    client = boto3.session.Session().client("rekognition", region_name="eu-west-1", aws_access_key_id="x",
                                            aws_secret_access_key="y",
                                            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=16))
    client.meta.events.register("before-send.rekognition", handler)
    return client


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_images_go_several_at_once_and_throttles_only_slow_them(ws, db, tmp_path, monkeypatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        Image.new("RGB", (160, 120), (i * 20, 80, 120)).save(src / f"{i:02d}.jpg", quality=90)
    lock, seen = threading.Lock(), []
    barrier = threading.Barrier(4, timeout=20)  # four requests in flight at once, or the job fails
    throttled = {1, 5}

    def handler(request, **_):
        with lock:
            seen.append(1)
            n = len(seen)
        if n <= 4:
            barrier.wait()
        if n in throttled:
            return _response(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
        return _response(200, {"FaceDetails": [FACE]})

    clock = FakeClock()
    limiter = RateLimiter(rate=1000.0, in_flight=4, clock=clock, sleep=clock.sleep)
    made: dict[str, Any] = {}

    def make(name: str, **kw: Any) -> RekognitionFaceDetector:
        assert kw["limiter"].in_flight == 16  # the settings' limiter is offered; this test uses its own
        made["det"] = RekognitionFaceDetector(client_with(handler), limiter=limiter, sleep=lambda s: None)
        return made["det"]

    monkeypatch.setattr(face_blur, "make_detector", make)
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out"),
                                   "detector": "rekognition"}, actor="cli:test")
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert (job["state"], job["done"], job["failed"]) == ("done", 12, 0), job["error"]
    assert limiter.peak_in_flight == 4 and limiter.throttles == 2 and made["det"].throttles == 2
    assert len(seen) == 14  # 12 images and the 2 throttled tries again
    for i in range(12):
        sidecar = json.loads((tmp_path / "out" / f"{i:02d}.jpg.faces.json").read_text())
        assert len(sidecar["faces"]) == 1 and sidecar["faces"][0]["x1"] == pytest.approx(48.0)


def test_a_throttle_on_every_attempt_fails_with_a_clear_reason() -> None:
    def handler(request, **_):
        return _response(400, {"__type": "ProvisionedThroughputExceededException", "message": "slow down"})

    delays: list[float] = []
    det = RekognitionFaceDetector(client_with(handler), limiter=RateLimiter(rate=1e6, in_flight=2, burst=1e6),
                                  max_attempts=3, sleep=delays.append)
    from services.core.errors import ExternalServiceError

    with pytest.raises(ExternalServiceError, match="throttling"):
        det.detect(__import__("numpy").zeros((90, 120, 3), dtype="uint8"))
    assert len(delays) == 2 and det.throttles == 2 and det.limiter.throttles == 2


def test_a_resumed_video_reads_the_started_job_and_an_expired_one_starts_again() -> None:
    client = boto3.client("rekognition", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    faces = [{"Timestamp": 0, "Face": FACE}]
    with Stubber(client) as stub:
        stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "Faces": faces},
                          {"JobId": "old", "MaxResults": 1000})
        started: list[str] = []
        assert run_face_detection(client, bucket="clips", key="k.mp4", job_id="old", on_start=started.append) == faces
        assert started == []  # nothing started, nothing paid twice
        stub.add_client_error("get_face_detection", "InvalidParameterException", "Job id is not valid", 400,
                              expected_params={"JobId": "expired", "MaxResults": 1000})
        stub.add_client_error("start_face_detection", "LimitExceededException", "too many jobs", 400)
        stub.add_response("start_face_detection", {"JobId": "new"})
        stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "Faces": faces},
                          {"JobId": "new", "MaxResults": 1000})
        waits: list[float] = []
        got = run_face_detection(client, bucket="clips", key="k.mp4", job_id="expired", on_start=started.append,
                                 sleep=waits.append)
        assert got == faces and started == ["new"] and waits == [rekognition_video.POLL_SECONDS]


@pytest.mark.skipif(not VIDEOS.is_dir(), reason="../shared/samples/video not found (a fresh clone)")
def test_several_video_jobs_run_at_once_and_a_resume_reuses_their_ids(ws, db, tmp_path, s3_bucket, monkeypatch):
    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=store.endpoint_url, actor="cli:test")
    set_setting(db, key="rekognition_video_jobs", value=3, actor="cli:test")
    clip = (VIDEOS / "mmpose_demo.mp4").read_bytes()
    for name in ("a", "b", "c"):
        store.write(f"s3://{bucket}/vids/{name}.mp4", clip)
    monkeypatch.setattr(rekognition_video, "POLL_SECONDS", 0.0)
    lock = threading.Lock()
    starts: list[str] = []
    all_started = threading.Event()

    def handler(request, **_):
        target = request.headers["X-Amz-Target"].decode() if isinstance(request.headers["X-Amz-Target"], bytes) \
            else request.headers["X-Amz-Target"]
        body = json.loads(request.body)
        if target.endswith("StartFaceDetection"):
            with lock:
                starts.append(body["Video"]["S3Object"]["Name"])
                if len(starts) >= 3:
                    all_started.set()
            return _response(200, {"JobId": "job-" + body["Video"]["S3Object"]["Name"]})
        # a job's results wait until all three were started: one video at a time never gets there (the bound
        # only turns that hang into a failure; with jobs at once it returns as soon as the third starts)
        if not all_started.wait(timeout=60):
            return _response(200, {"JobStatus": "FAILED", "StatusMessage": "the jobs never ran together"})
        return _response(200, {"JobStatus": "SUCCEEDED", "Faces": [{"Timestamp": 0, "Face": FACE}]})

    client = client_with(handler)
    monkeypatch.setattr(face_blur, "make_detector", lambda name, **kw: RekognitionFaceDetector(client))
    job_id = face_blur.launch(db, {"source": f"s3://{bucket}/vids", "destination": f"s3://{bucket}/out",
                                   "detector": "rekognition"}, actor="cli:test")
    monkeypatch.setattr(face_blur.FacesKind, "batch_size", 1)
    real_render = face_blur.anonymize_video
    renders = {"n": 0}

    def crash_on_the_second_video(*args, **kwargs):
        renders["n"] += 1
        if renders["n"] == 2:
            raise RuntimeError("simulated crash")  # b's job was started and recorded with the first batch
        return real_render(*args, **kwargs)

    monkeypatch.setattr(face_blur, "anonymize_video", crash_on_the_second_video)
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert job["state"] == "failed" and job["done"] == 1
    assert sorted(starts) == ["vids/a.mp4", "vids/b.mp4", "vids/c.mp4"]  # three jobs at once
    notes = dict(db.execute("SELECT item, error FROM job_items WHERE job_id = ? AND state = 'pending'", [job_id]))
    assert {k: json.loads(v) for k, v in notes.items()} == {
        "b.mp4": {"rekognition_job_id": "job-vids/b.mp4"}, "c.mp4": {"rekognition_job_id": "job-vids/c.mp4"}}
    resume_job(db, job_id=job_id, actor="cli:test")
    run_job(ws, job_id=job_id)
    job = get_job(db, job_id)
    assert (job["state"], job["done"], job["failed"]) == ("done", 3, 0), job["error"]
    assert len(starts) == 3  # the resumed run read the started jobs' faces: none started again
    for name in ("a", "b", "c"):
        sidecar = json.loads(store.read(f"s3://{bucket}/out/{name}.mp4.faces.json"))
        assert "0" in sidecar["masked"]

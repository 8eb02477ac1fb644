"""The dataset filter's Rekognition path with many requests in flight: real botocore clients whose requests are
answered at the HTTP layer (``before-send``) with DetectLabels' real JSON, by image; the limiter runs on a fake
clock, so nothing here sleeps."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from services.core import jobs
from services.core.ratelimit import RateLimiter
from services.dataset_filter import job as df
from services.dataset_filter import outputs as filter_outputs
from services.dataset_filter.label_detectors import RekognitionDetector
from tests.conftest import jpeg_bytes


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


class Endpoint:
    """DetectLabels answered by image: ``birds`` show a Robin (98%), ``band`` a Sparrow (64%), the rest a Rock.
    ``throttle``: names answered ThrottlingException once. ``together``: the first that many requests wait
    for each other (a barrier), so a client that sends one at a time fails loudly."""

    def __init__(self, names: dict[str, str], *, birds=(), band=(), throttle=(), together: int = 0,
                 crash_on: str | None = None) -> None:
        self.names, self.birds, self.band = names, set(birds), set(band)
        self.throttle = set(throttle)
        self.crash_on = crash_on
        self.seen: list[str] = []
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together, timeout=20) if together else None

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        body = json.loads(request.body)
        name = self.names[hashlib.sha1(base64.b64decode(body["Image"]["Bytes"])).hexdigest()]
        with self.lock:
            self.seen.append(name)
            first = len(self.seen) <= (self.barrier.parties if self.barrier else 0)
            throttled = name in self.throttle
            self.throttle.discard(name)
        if first:
            self.barrier.wait()  # several requests in flight at once, or BrokenBarrierError
        if name == self.crash_on:
            raise RuntimeError("simulated crash")
        if throttled:
            return _response(400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
        if name in self.birds:
            labels = [{"Name": "Robin", "Confidence": 98.0, "Instances": [], "Parents": [{"Name": "Bird"}],
                       "Aliases": [], "Categories": [{"Name": "Animals and Pets"}]}]
        elif name in self.band:
            labels = [{"Name": "Sparrow", "Confidence": 64.0, "Instances": [], "Parents": [],
                       "Aliases": [{"Name": "Bird"}], "Categories": [{"Name": "Animals and Pets"}]}]
        else:
            labels = [{"Name": "Rock", "Confidence": 91.0, "Instances": [], "Parents": [], "Aliases": [],
                       "Categories": [{"Name": "Nature and Outdoors"}]}]
        return _response(200, {"Labels": labels, "LabelModelVersion": "3.0"})


def _response(status: int, payload: dict[str, Any]) -> AWSResponse:
    raw = AWSResponse("https://rekognition.us-east-1.amazonaws.com/", status,
                      {"x-amzn-RequestId": "r", "Content-Type": "application/x-amz-json-1.1"}, None)
    raw._content = json.dumps(payload).encode()
    return raw


def folder(root: Path, n: int) -> dict[str, str]:
    """n JPEGs 00.jpg.. in root; returns sha1 of the bytes -> file name."""
    root.mkdir(parents=True, exist_ok=True)
    names = {}
    for i in range(n):
        data = jpeg_bytes((96, 64), color=(i * 9 % 255, (i * 37) % 255, 90))
        (root / f"{i:02d}.jpg").write_bytes(data)
        names[hashlib.sha1(data).hexdigest()] = f"{i:02d}.jpg"
    assert len(names) == n
    return names


def install(monkeypatch, endpoint: Endpoint, *, in_flight: int) -> dict[str, Any]:
    client = boto3.session.Session().client("rekognition", region_name="us-east-1", aws_access_key_id="test",
                                            aws_secret_access_key="test",
                                            config=Config(retries={"total_max_attempts": 1}, max_pool_connections=16))
    client.meta.events.register("before-send.rekognition.DetectLabels", endpoint)
    clock = FakeClock()
    made: dict[str, Any] = {"limiter": RateLimiter(rate=1000.0, in_flight=in_flight, clock=clock, sleep=clock.sleep)}

    def factory(ws, settings, store):
        made["detector"] = RekognitionDetector(client, store=store, sleep=lambda s: None, limiter=made["limiter"])
        return made["detector"]

    monkeypatch.setitem(df.DETECTORS, "rekognition", factory)
    return made


def params(src: Path, out: Path, **kw: Any) -> dict[str, Any]:
    return {"source": str(src), "destination": str(out), "labels": ["bird"], "name": "birds", "threshold": 0.8,
            "band_low": 0.5, "detector": "rekognition", **kw}


def run(ws, db, p: dict[str, Any]) -> dict[str, Any]:
    job_id = df.launch(db, p, actor="admin")
    jobs.run_job(ws, job_id=job_id)
    return jobs.get_job(db, job_id)


def outcomes(db, job_id: int) -> list[tuple[str, str]]:
    return [(r["uri"].rsplit("/", 1)[-1], r["outcome"]) for r in filter_outputs.results(db, job_id=job_id)]


def expected(n: int, birds: set[str], band: set[str]) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        name = f"{i:02d}.jpg"
        out.append((name, "kept" if name in birds else "band" if name in band else "rejected"))
    return out


def test_many_in_flight_gives_the_same_outcomes_in_the_same_order(ws, db, tmp_path, monkeypatch) -> None:
    names = folder(tmp_path / "src", 40)
    birds, band = {"03.jpg", "17.jpg", "38.jpg"}, {"05.jpg", "21.jpg"}
    endpoint = Endpoint(names, birds=birds, band=band, together=6, throttle={"10.jpg", "11.jpg"})
    made = install(monkeypatch, endpoint, in_flight=6)
    job = run(ws, db, params(tmp_path / "src", tmp_path / "out"))
    assert job["state"] == "done", job["error"]
    assert outcomes(db, job["id"]) == expected(40, birds, band)
    assert sorted(endpoint.seen) == sorted([f"{i:02d}.jpg" for i in range(40)] + ["10.jpg", "11.jpg"])
    limiter = made["limiter"]
    assert limiter.peak_in_flight == 6 and limiter.throttles == 2  # the throttles slowed it, never failed it
    assert job["result"]["throttles"] == 2 and job["result"]["requests"] == 42 and job["result"]["sent_past_stop"] == 0
    assert limiter.rate < 1000.0
    kept = sorted(p.name for p in (tmp_path / "out" / "birds").glob("*.jpg"))
    assert kept == sorted(birds)


@pytest.mark.parametrize("in_flight", [1, 5])
def test_early_stop_sends_at_most_the_requests_in_flight_past_it(ws, db, tmp_path, monkeypatch, in_flight) -> None:
    names = folder(tmp_path / "src", 60)
    endpoint = Endpoint(names, birds={"02.jpg"})
    made = install(monkeypatch, endpoint, in_flight=in_flight)
    job = run(ws, db, params(tmp_path / "src", tmp_path / "out", stop_after_misses=10))
    assert job["state"] == "done", job["error"]
    assert outcomes(db, job["id"]) == expected(13, {"02.jpg"}, set())  # stops on 12.jpg, the 10th miss
    past = [n for n in endpoint.seen if n > "12.jpg"]
    assert len(past) == job["result"]["sent_past_stop"] <= in_flight - 1
    assert made["detector"].calls == 13 + len(past)
    assert job["result"]["stopped_early"]


def test_a_crash_with_requests_in_flight_resumes_without_scanning_twice(ws, db, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(df.FilterKind, "batch_size", 8)
    names = folder(tmp_path / "src", 30)
    birds = {"01.jpg", "12.jpg", "25.jpg"}
    endpoint = Endpoint(names, birds=birds, crash_on="19.jpg")
    install(monkeypatch, endpoint, in_flight=4)
    job = run(ws, db, params(tmp_path / "src", tmp_path / "out"))
    assert job["state"] == "failed" and "simulated crash" in job["error"]
    assert outcomes(db, job["id"]) == expected(16, birds, set())  # two whole batches were written
    endpoint.crash_on = None
    endpoint.seen.clear()
    jobs.resume_job(db, job_id=job["id"], actor="admin")
    jobs.run_job(ws, job_id=job["id"])
    job = jobs.get_job(db, job["id"])
    assert job["state"] == "done", job["error"]
    assert outcomes(db, job["id"]) == expected(30, birds, set())  # each image once, in order
    assert sorted(endpoint.seen) == [f"{i:02d}.jpg" for i in range(16, 30)]  # nothing scanned twice
    assert sorted(p.name for p in (tmp_path / "out" / "birds").glob("*.jpg")) == sorted(birds)


def test_detect_many_sends_up_to_in_flight_at_once_and_keeps_the_order(tmp_path) -> None:
    names = folder(tmp_path / "src", 9)
    endpoint = Endpoint(names, birds={"01.jpg", "07.jpg"}, together=3)
    client = boto3.session.Session().client("rekognition", region_name="us-east-1", aws_access_key_id="test",
                                            aws_secret_access_key="test",
                                            config=Config(retries={"total_max_attempts": 1}))
    client.meta.events.register("before-send.rekognition.DetectLabels", endpoint)
    clock = FakeClock()
    det = RekognitionDetector(client, limiter=RateLimiter(rate=1000.0, in_flight=3, clock=clock, sleep=clock.sleep))
    paths = sorted((tmp_path / "src").glob("*.jpg"))
    found = det.detect_many([p.read_bytes() for p in paths], wanted=["bird"], uris=[str(p) for p in paths])
    assert [round(f["bird"].confidence, 2) for f in found] == [0.0, 0.98, 0, 0, 0, 0, 0, 0.98, 0]
    assert det.limiter.peak_in_flight == 3 and det.calls == 9

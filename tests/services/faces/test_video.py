"""Face blurring of videos, checked with ffprobe: frame count, frame rate, duration, timestamps (variable
frame rate), rotation and audio are kept; faces are masked on every frame between detections; bad videos
fail alone and leave nothing behind."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from services.core.jobs import get_job, run_job
from services.faces import job as face_blur
from services.faces.tracking import Track, boxes_at, link
from tests.conftest import SHARED

VIDEOS = SHARED / "samples" / "video"
needs_ffprobe = pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (apt-get install ffmpeg)")
needs_videos = pytest.mark.skipif(not VIDEOS.is_dir(), reason="../shared/samples/video not found (a fresh clone)")


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,codec_name,avg_frame_rate,r_frame_rate,nb_read_frames,duration,pix_fmt:"
                          "stream_side_data=rotation", "-of", "json", str(path)], capture_output=True, text=True, check=True)
    streams = json.loads(out.stdout)["streams"]
    return {s["codec_type"]: s for s in streams}


def pts(path: Path) -> list[str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time", "-of", "csv=p=0",
                          str(path)], capture_output=True, text=True, check=True)
    return [line.strip().rstrip(",") for line in out.stdout.split() if line.strip()]


def _job(ws, db, src: Path, dst: Path, **params) -> dict:
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(dst), **params}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    return get_job(db, job_id)


def test_gaps_between_detections_are_filled_and_held_past_the_ends():
    a = np.array([[10, 10, 50, 50, 0.9]], dtype=np.float32)
    b = np.array([[14, 10, 54, 50, 0.9]], dtype=np.float32)
    far = np.array([[200, 200, 240, 240, 0.8]], dtype=np.float32)
    tracks = link({10: a, 14: np.concatenate([b, far]), 18: np.zeros((0, 5), np.float32)}, step=4)
    assert sorted(len(t.frames) for t in tracks) == [1, 2]  # the moving face is one track; the new one its own
    for frame in (11, 12, 13):  # between detections at 10 and 14: interpolated
        got = boxes_at(tracks, frame, hold=4)
        assert len(got) >= 1 and got[0][0] == pytest.approx(10 + (frame - 10))
    assert len(boxes_at([Track([10, 14], [a[0], b[0]])], 17, hold=4)) == 1  # held after the last detection
    assert len(boxes_at([Track([10, 14], [a[0], b[0]])], 6, hold=4)) == 1  # and before the first
    assert len(boxes_at([Track([10, 14], [a[0], b[0]])], 19, hold=4)) == 0


@needs_ffprobe
@needs_videos
def test_a_clip_with_audio_keeps_frames_rate_duration_and_audio_and_faces_are_masked(ws, db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(VIDEOS / "fr_short_hamilton_clip.mp4", src / "clip.mp4")
    job = _job(ws, db, src, tmp_path / "out")
    assert job["state"] == "done" and job["done"] == 1, job
    before, after = probe(src / "clip.mp4"), probe(tmp_path / "out" / "clip.mp4")
    assert after["video"]["codec_name"] == "h264" and after["video"]["pix_fmt"] == "yuv420p"  # plays in browsers
    for key in ("nb_read_frames", "avg_frame_rate", "r_frame_rate", "duration"):
        assert after["video"][key] == before["video"][key], key
    assert after["video"]["avg_frame_rate"] == "2997/100"  # 29.97, not 29
    assert after["audio"]["codec_name"] == before["audio"]["codec_name"] == "aac"
    assert after["audio"]["nb_read_frames"] == before["audio"]["nb_read_frames"]
    sidecar = json.loads((tmp_path / "out" / "clip.mp4.faces.json").read_text())
    assert sidecar["frames"] == int(before["video"]["nb_read_frames"]) and sidecar["tracks"] >= 1
    detected = {int(k) for k in sidecar["detections"]}
    masked = {int(k) for k in sidecar["masked"]}
    assert detected <= masked and len(masked) > len(detected)  # frames between detections are masked too
    # a masked region really changed: compare one masked frame of input and output
    import av

    frame_no = sorted(masked)[len(masked) // 2]
    x1, y1, x2, y2, _ = (int(v) for v in sidecar["masked"][str(frame_no)][0])
    frames = []
    for path in (src / "clip.mp4", tmp_path / "out" / "clip.mp4"):
        with av.open(str(path)) as c:
            for n, f in enumerate(c.decode(video=0)):
                if n == frame_no:
                    frames.append(f.to_ndarray(format="rgb24").astype(int))
                    break
    cx, cy, w, h = (x1 + x2) // 2, (y1 + y2) // 2, max(2, (x2 - x1) // 4), max(2, (y2 - y1) // 4)
    inner = (slice(cy - h, cy + h), slice(cx - w, cx + w))
    assert np.abs(frames[1][inner] - frames[0][inner]).mean() > 4


@needs_ffprobe
@needs_videos
def test_a_video_without_audio_in_another_codec_and_a_rotated_one(ws, db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(VIDEOS / "opencv_vtest.avi"), "-frames:v", "60", "-c", "copy",
                    str(src / "street.avi")], check=True)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(VIDEOS / "mmpose_demo.mp4"), "-c", "copy", "-metadata:s:v:0",
                    "rotate=90", str(src / "phone.mp4")], check=True)
    job = _job(ws, db, src, tmp_path / "out", mode="pixelate", detect_every=2)
    assert (job["done"], job["failed"]) == (2, 0), job
    street, out = probe(src / "street.avi"), probe(tmp_path / "out" / "street.mp4")
    assert "audio" not in out and out["video"]["nb_read_frames"] == street["video"]["nb_read_frames"] == "60"
    assert out["video"]["avg_frame_rate"] == street["video"]["avg_frame_rate"]
    phone = probe(tmp_path / "out" / "phone.mp4")
    assert phone["video"]["side_data_list"][0]["rotation"] == probe(src / "phone.mp4")["video"]["side_data_list"][0]["rotation"]


@needs_ffprobe
def test_variable_frame_rate_timestamps_are_kept(ws, db, tmp_path):
    import av

    src = tmp_path / "src"
    src.mkdir()
    with av.open(str(src / "vfr.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for n, t in enumerate((0, 100, 150, 400, 450, 1000)):  # irregular gaps (ms)
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), n * 40, np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)
    job = _job(ws, db, src, tmp_path / "out")
    assert job["done"] == 1, job
    assert pts(tmp_path / "out" / "vfr.mp4") == pts(src / "vfr.mp4")


@needs_videos
def test_truncated_and_empty_videos_fail_alone_and_leave_nothing(ws, db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = (VIDEOS / "fr_short_hamilton_clip.mp4").read_bytes()
    (src / "cut.mp4").write_bytes(data[: len(data) // 3])
    (src / "empty.mov").write_bytes(b"")
    shutil.copy(VIDEOS / "mmpose_demo.mp4", src / "fine.mp4")
    job = _job(ws, db, src, tmp_path / "out")
    errors = dict(db.execute("SELECT item, error FROM job_items WHERE state = 'failed'").fetchall())
    assert set(errors) == {"cut.mp4", "empty.mov"} and job["done"] == 1
    assert all("video" in e for e in errors.values())
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["fine.mp4", "fine.mp4.faces.json"]  # no partial file at all, let alone one that looks finished


@needs_ffprobe
@needs_videos
def test_an_s3_source_with_rekognition_video_end_to_end(ws, db, tmp_path, s3_bucket, monkeypatch):
    """Images and a video in a real S3 bucket (loopback), faces from Rekognition (Stubber, real shapes): the
    outputs and sidecars land in the destination bucket; the video keeps its frames."""
    import boto3
    from botocore.stub import ANY, Stubber

    from services.core.config import set_setting
    from services.faces import job as fb
    from services.faces.detection import RekognitionFaceDetector

    store, bucket = s3_bucket
    set_setting(db, key="s3_endpoint_url", value=store.endpoint_url, actor="cli:test")
    store.write(f"s3://{bucket}/in/clip.mp4", (VIDEOS / "mmpose_demo.mp4").read_bytes())
    client = boto3.client("rekognition", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    stub.add_response("start_face_detection", {"JobId": "j"},
                      {"Video": {"S3Object": {"Bucket": bucket, "Name": "in/clip.mp4"}}, "FaceAttributes": "DEFAULT"})
    face = {"BoundingBox": {"Width": 0.2, "Height": 0.3, "Left": 0.4, "Top": -0.1}, "Confidence": 99.0}
    stub.add_response("get_face_detection", {"JobStatus": "SUCCEEDED", "Faces": [
        {"Timestamp": 0, "Face": face}, {"Timestamp": 800, "Face": face}]}, {"JobId": "j", "MaxResults": ANY})
    stub.activate()
    monkeypatch.setattr(fb, "make_detector", lambda name, **kw: RekognitionFaceDetector(client))
    job = _job(ws, db, f"s3://{bucket}/in", f"s3://{bucket}/out", detector="rekognition")
    assert (job["state"], job["done"], job["failed"]) == ("done", 1, 0), job
    sidecar = json.loads(store.read(f"s3://{bucket}/out/clip.mp4.faces.json"))
    assert sidecar["frames"] == 5 and sorted(map(int, sidecar["masked"])) == [0, 1, 2, 3, 4]  # 0 ms and 800 ms, filled
    local = tmp_path / "out.mp4"
    local.write_bytes(store.read(f"s3://{bucket}/out/clip.mp4"))
    assert probe(local)["video"]["nb_read_frames"] == "5"
    stub.assert_no_pending_responses()


@needs_ffprobe
@needs_videos
def test_audio_that_mp4_cannot_hold_is_reencoded_to_aac(ws, db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(VIDEOS / "fr_short_hamilton_clip.mp4"), "-t", "2", "-c:v", "mpeg4",
                    "-c:a", "pcm_s16le", str(src / "old.avi")], check=True)
    job = _job(ws, db, src, tmp_path / "out")
    assert job["done"] == 1, job
    before, after = probe(src / "old.avi"), probe(tmp_path / "out" / "old.mp4")
    assert (before["audio"]["codec_name"], after["audio"]["codec_name"]) == ("pcm_s16le", "aac")
    assert after["video"]["nb_read_frames"] == before["video"]["nb_read_frames"]
    assert abs(float(after["audio"]["duration"]) - float(after["video"]["duration"])) < 0.1  # in step with the video


def test_a_detector_with_a_video_form_looks_with_that_form(tmp_path):
    import av

    from services.faces.video import anonymize_video

    src = tmp_path / "in.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for k in range(9):
            frame = np.full((48, 64, 3), 40 + 10 * k, dtype=np.uint8)
            for p in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)

    class Looks:
        def __init__(self) -> None:
            self.calls = 0

        def detect(self, frame: np.ndarray, *, threshold: float) -> np.ndarray:
            self.calls += 1
            return np.array([[10, 10, 30, 30, 0.9]], dtype=np.float32)

    class Photos(Looks):
        video = Looks()

        def detect(self, frame: np.ndarray, *, threshold: float) -> np.ndarray:
            raise AssertionError("the photo form looked at a video frame")

        def for_video(self) -> Looks:
            return self.video

    photos = Photos()
    report = anonymize_video(str(src), str(tmp_path / "out.mp4"), detector=photos, threshold=0.1, mode="blur",
                             shape="ellipse", mask_scale=1.3, detect_every=3)
    assert photos.video.calls == 3 and report.frames == 9 and len(report.masked) == 9


@needs_ffprobe
@needs_videos
def test_a_video_job_says_how_far_it_is_inside_the_video_and_clears_it_when_done(ws, db, tmp_path, monkeypatch):
    """A video can take minutes: the job's row says which frame it has written (``jobs.current``), the page
    shows it under the progress bar, and it is gone once the video is recorded."""
    import functools

    from services.core import jobs

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(VIDEOS / "fr_short_hamilton_clip.mp4", src / "clip.mp4")
    said: list[tuple[str, str]] = []
    real = jobs.set_current

    def record(db, *, job_id, text, share=None):  # type: ignore[no-untyped-def]
        real(db, job_id=job_id, text=text, share=share)
        said.append((text, *db.execute("SELECT current, current_share FROM jobs WHERE id = ?", [job_id]).fetchone()))

    monkeypatch.setattr(jobs, "set_current", record)
    monkeypatch.setattr(face_blur, "_say_frames", functools.partial(face_blur._say_frames, every=0.0))
    job = _job(ws, db, src, tmp_path / "out")
    frames = int(probe(src / "clip.mp4")["video"]["nb_read_frames"])
    assert job["state"] == "done" and job["current"] is None and job["current_share"] is None  # cleared with it
    assert [text for text, _, _ in said] == [f"clip.mp4: frame {n} of about {frames}" for n in range(25, frames + 1, 25)]
    assert all(stored == text for text, stored, _ in said)  # the row said it while the job ran
    assert [share for _, _, share in said] == pytest.approx([n / frames for n in range(25, frames + 1, 25)])


@needs_ffprobe
@needs_videos
def test_a_cancel_inside_a_video_stops_it_within_seconds_and_a_resume_does_it_again_whole(ws, db, tmp_path,
                                                                                        monkeypatch):
    """An hour-long video must not hold a cancel for an hour: the job stops at the next progress report, leaves
    no partial output, keeps the video pending, and a resume writes it from its start."""
    import functools

    from services.core import jobs

    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    shutil.copy(VIDEOS / "fr_short_hamilton_clip.mp4", src / "clip.mp4")
    real = jobs.set_current
    said: list[str] = []

    def cancel_at_frame_100(db, *, job_id, text, share=None):  # type: ignore[no-untyped-def]
        real(db, job_id=job_id, text=text, share=share)
        said.append(text)
        if "frame 100 " in text:  # an operator presses Cancel while the video is being written
            jobs.cancel_job(db, job_id=job_id, actor="cli:test")

    monkeypatch.setattr(jobs, "set_current", cancel_at_frame_100)
    monkeypatch.setattr(face_blur, "_say_frames", functools.partial(face_blur._say_frames, every=0.0))
    job = _job(ws, db, src, out)
    assert job["state"] == "cancelled" and job["done"] == 0 and job["failed"] == 0
    assert said[-1].startswith("clip.mp4: frame 100 ")  # stopped at the next report, not at the video's end
    assert job["current"] is None and job["current_share"] is None
    assert not [p for p in out.rglob("*") if p.is_file()]  # no partial output, no .part file
    assert db.execute("SELECT state FROM job_items WHERE job_id = ?", [job["id"]]).fetchall() == [("pending",)]

    monkeypatch.setattr(jobs, "set_current", real)
    jobs.resume_job(db, job_id=job["id"], actor="cli:test")
    assert run_job(ws, job_id=job["id"]) == job["id"]
    job = get_job(db, job["id"])
    assert job["state"] == "done" and job["done"] == 1 and job["result"]["videos_done"] == 1
    frames = int(probe(src / "clip.mp4")["video"]["nb_read_frames"])
    assert int(probe(out / "clip.mp4")["video"]["nb_read_frames"]) == frames  # written whole, from its start

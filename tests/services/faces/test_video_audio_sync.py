"""A blurred video keeps its sound where it was: audio that starts after the picture starts after it by the same
time in the output (not only the same codec and frame count)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from services.core.jobs import get_job, run_job
from services.faces import job as face_blur

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg not installed (apt-get install ffmpeg)")


def starts(path: Path) -> dict[str, float]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,start_time", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True)
    return {s["codec_type"]: float(s["start_time"]) for s in json.loads(out.stdout)["streams"]}


def first_sound(path: Path) -> float:
    """Seconds from the file's start to the first audible sample, decoded (not from metadata): the audio is laid
    on the timeline from 0 (silence where it has none yet), and the first silence's end is where the tone starts."""
    out = subprocess.run(["ffmpeg", "-v", "info", "-i", str(path), "-map", "0:a", "-af",
                          "aresample=async=1:first_pts=0,silencedetect=noise=-40dB:d=0.1", "-f", "null", "-"],
                         capture_output=True, text=True)
    ends = [float(line.split("silence_end:")[1].split()[0]) for line in out.stderr.splitlines() if "silence_end:" in line]
    return ends[0] if ends else 0.0


@pytest.mark.parametrize("delay", [0.0, 0.8])
def test_audio_that_starts_after_the_picture_stays_that_far_behind(ws, db, tmp_path, delay):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    plain = tmp_path / "plain.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=3",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=1.5", "-map", "0:v", "-map", "1:a",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(plain)], check=True)
    # the same sound, shifted: it starts `delay` seconds into the picture
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(plain), "-itsoffset", str(delay), "-i", str(plain),
                    "-map", "0:v", "-map", "1:a", "-c", "copy", str(src / "clip.mp4")], check=True)
    before = starts(src / "clip.mp4")
    assert before["audio"] - before["video"] == pytest.approx(delay, abs=0.05)  # the input is what we meant

    job_id = face_blur.launch(db, {"source": str(src), "destination": str(out)}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    assert get_job(db, job_id)["state"] == "done"
    after = starts(out / "clip.mp4")
    # the offset between sound and picture survives, to within one AAC frame (1024 samples at 44.1 kHz: 23 ms)
    assert (after["audio"] - after["video"]) == pytest.approx(before["audio"] - before["video"], abs=0.024)
    # and where the tone is actually heard, decoded from both files
    heard = first_sound(src / "clip.mp4")
    assert heard == pytest.approx(delay, abs=0.05)
    assert first_sound(out / "clip.mp4") == pytest.approx(heard, abs=0.03)

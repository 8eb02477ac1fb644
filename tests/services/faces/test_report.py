"""What the admin is told per file: faces found, and the reasons a file deserves a human look (a crowd, weak
detections, masks that left detail); the job's summary counts them and lists the flagged files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from services.core.jobs import get_job, run_job
from services.faces import job as face_blur
from services.faces.report import CROWD, image_report, reasons, video_report
from tests.pages.helpers import write_photo
from tests.services.faces.test_job import FACES

CHEERING = "mmpose_wflw_7_Cheering_Cheering_7_16.jpg"
needs_faces = pytest.mark.skipif(not (FACES / CHEERING).is_file(), reason="../shared/samples/faces not found (a fresh clone)")


def _boxes(scores: list[float]) -> np.ndarray:
    return np.array([[10 * i, 0, 10 * i + 8, 10, s] for i, s in enumerate(scores)], dtype=np.float32).reshape(-1, 5)


def test_crowds_weak_detections_and_left_detail_are_flagged():
    assert reasons(faces=3, weak=0, most_at_once=3) == []
    assert reasons(faces=CROWD, weak=0, most_at_once=CROWD) == [f"crowd: {CROWD} faces"]
    assert reasons(faces=9, weak=3, most_at_once=9) == ["weak detections: 3 of 9 faces scored under 0.3"]
    assert reasons(faces=10, weak=3, most_at_once=10) == []  # under a third: the usual few
    report = image_report(_boxes([0.9, 0.12, 0.2, 0.15]), np.array([0.0, 0.0, 0.7, 0.1]))
    assert report == {"faces_found": 4, "weak": 3, "detail_left": 1,
                      "review": ["weak detections: 3 of 4 faces scored under 0.3", "masks left detail in 1 face"]}
    video = video_report(tracks=20, weak_tracks=2, most_at_once=14)
    assert video["most_in_a_frame"] == 14 and video["review"] == ["crowd: 14 faces in one frame"]
    every = video_report(tracks=13, weak_tracks=0, most_at_once=13)  # all its faces in one frame
    assert every["review"] == ["crowd: 13 faces"]


@needs_faces
def test_the_job_summary_counts_faces_and_lists_flagged_files_and_pages_through_all(ws, db, tmp_path):
    src = tmp_path / "src"
    for n in range(6):
        write_photo(src / f"p{n}.jpg", (20 * n, 90, 140))
    shutil.copy(FACES / CHEERING, src / "p3_crowd.jpg")  # a crowd at a cheering event (26 faces found)
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(tmp_path / "out")}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    result = get_job(db, job_id)["result"]
    sidecar = json.loads((tmp_path / "out" / "p3_crowd.jpg.faces.json").read_text())
    assert sidecar["faces_found"] == len(sidecar["faces"]) >= CROWD and sidecar["review"][0].startswith("crowd: ")
    assert result["faces_found"] >= sidecar["faces_found"] and result["files_flagged"] == 1
    assert result["flagged"] == [{"key": "p3_crowd.jpg", "faces": sidecar["faces_found"], "reasons": sidecar["review"]}]
    first = face_blur.results(db, job_id=job_id, actor="cli:test", offset=0, limit=4)
    second = face_blur.results(db, job_id=job_id, actor="cli:test", offset=4, limit=4)
    assert first["total"] == second["total"] == 7
    assert [d["key"] for d in first["items"] + second["items"]] == sorted(p.name for p in src.iterdir())
    flagged = face_blur.results(db, job_id=job_id, actor="cli:test", flagged_only=True)
    assert flagged["total"] == 1 and flagged["items"][0]["key"] == "p3_crowd.jpg"

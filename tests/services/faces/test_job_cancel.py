"""Face blurring cancelled between files and resumed: what was written is whole, nothing half-written is left, the
cancel takes effect after the file being written (not after a batch of several), and the resumed job does only the
rest."""

from __future__ import annotations

import io

from PIL import Image

from services.core import jobs
from services.core.jobs import get_job, run_job
from services.faces import job as face_blur
from tests.conftest import jpeg_bytes


def _listing(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_cancelled_blur_leaves_only_whole_outputs_and_a_resume_does_the_rest(ws, db, tmp_path, monkeypatch):
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    names = [f"p{n:02d}.jpg" for n in range(10)]
    for n, name in enumerate(names):
        (src / name).write_bytes(jpeg_bytes(size=(96, 64), color=(20 * n, 90, 200 - 15 * n)))
    batches: list[list[str]] = []
    write = face_blur.FacesKind.write

    def write_then_cancel_once(self, ctx, computed):
        batches.append(sorted(computed))
        result = write(self, ctx, computed)
        if len(batches) == 1:  # an operator presses Cancel while the first batch is being written
            jobs.cancel_job(ctx.db, job_id=ctx.job_id, actor="cli:test")
        return result

    monkeypatch.setattr(face_blur.FacesKind, "write", write_then_cancel_once)
    anonymised: list[str] = []
    image = face_blur.FacesKind._image

    def counted(ctx, key, data):  # type: ignore[no-untyped-def]
        anonymised.append(key)
        return image(ctx, key, data)

    monkeypatch.setattr(face_blur.FacesKind, "_image", staticmethod(counted))
    job_id = face_blur.launch(db, {"source": str(src), "destination": str(out)}, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "cancelled" and job["done"] == face_blur.FacesKind.batch_size == len(batches[0]) == 1
    first = batches[0]
    assert anonymised == first  # nothing worked on ahead of the job's record, to be thrown away and done again
    # exactly the first batch's photos and their sidecars, each whole; no temporary or empty file anywhere
    listing = _listing(out)
    assert sorted(listing) == sorted([*first, *(n + face_blur.SIDECAR for n in first)])
    for name in first:
        with Image.open(io.BytesIO((out / name).read_bytes())) as img:
            img.load()  # a truncated JPEG would raise here
            assert img.size == (96, 64)
    assert not list(tmp_path.rglob("*.tmp*")) and all((out / n).stat().st_size > 0 for n in listing)
    so_far = job["result"]  # the report on what was finished: a cancelled job still says what it found
    assert so_far["images_done"] == 1 and so_far["faces_found"] == 0 and so_far["files_flagged"] == 0

    jobs.resume_job(db, job_id=job_id, actor="cli:test")
    assert get_job(db, job_id)["result"] is None  # the part's report goes until the whole job reports
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done" and job["done"] == 10 and job["failed"] == 0
    assert sorted(n for b in batches for n in b) == sorted(names)  # every photo once: none redone
    assert sorted(anonymised) == sorted(names)  # and anonymised once
    resumed = _listing(out)
    assert sorted(resumed) == sorted([*names, *(n + face_blur.SIDECAR for n in names)])
    assert all(resumed[n] == listing[n] for n in listing)  # the first batch's files were not written again
    assert job["result"]["images_done"] == 10

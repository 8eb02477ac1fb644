"""Helpers for the page tests: start the app from app.py, seed reviews through the real services."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

from services.core.jobs import create_job, get_job, run_job
from services.core.storage import ObjectStore
from services.reviews.ingest import ingest_manifest

ROOT = Path(__file__).resolve().parents[2]


def start_app(page: str | None = None) -> AppTest:
    """The console started from app.py (as a browser would), optionally switched to ``page``."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page)
        at.run()
        assert not at.exception, at.exception
    return at


def write_photo(path: Path, color: tuple[int, int, int], *, fmt: str = "JPEG") -> str:
    """A small real photo of its own (random blocks seeded by the colour, so different colours are different
    pictures, not recoloured copies that the reused-photo check would rightly flag); returns its path."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(list(color))
    blocks = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
    blocks[..., 0] = (blocks[..., 0] // 2 + color[0] // 2).astype(np.uint8)
    img = Image.fromarray(blocks).resize((96, 72), Image.Resampling.NEAREST)
    img.save(path, format=fmt)
    return str(path)


def seed_reviews(db, folder: Path, reviews: list[dict], *, name: str = "batch.jsonl") -> dict:
    """Write one photo per entry of each review's ``photos`` (a count), a JSONL manifest, and ingest it.

    ``reviews``: dicts with review_id, review_type and optional photos (default 1), broken (how many
    extra files that are not images), product, user_id, submitted_at, text. Returns the ingest report.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for n, rv in enumerate(reviews):
        uris = []
        for k in range(rv.get("photos", 1)):
            fmt = "PNG" if k % 2 else "JPEG"
            color = ((37 * n + 11 * k) % 256, (91 * n + 53 * k + 40) % 256, (17 * n + 29 * k + 80) % 256)
            uris.append(write_photo(folder / f"{rv['review_id']}_{k}.{fmt.lower()}", color, fmt=fmt))
        for k in range(rv.get("broken", 0)):
            bad = folder / f"{rv['review_id']}_broken{k}.jpg"
            bad.write_bytes(b"this is not a photo")
            uris.append(str(bad))
        rec = {key: rv[key] for key in ("review_id", "review_type", "product", "user_id", "submitted_at", "text") if key in rv}
        rec["image_uris"] = uris
        lines.append(json.dumps(rec))
    manifest = folder / name
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="test").as_dict()
    assert report["error_count"] == sum(rv.get("broken", 0) for rv in reviews), report["errors"]
    return report


def run_kind_now(ws, db, kind: str) -> dict:
    """Queue a job of ``kind`` through the service and run it on this thread; returns the finished job."""
    job_id = create_job(db, kind=kind, params={}, actor="test")
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done", job["error"]
    return job


def classify_now(ws, db) -> dict:
    """Classify every pending photo, then check them for reuse as the worker does next (credit is held until
    then); returns the classify job."""
    job = run_kind_now(ws, db, "classify")
    check_reuse_now(ws, db)
    return job


def check_reuse_now(ws, db) -> dict:
    """Run the reused-photo check over every classified photo, on this thread; returns the finished job."""
    return run_kind_now(ws, db, "reuse")


def run_page(page: str) -> AppTest:
    """One page file run on its own, without app.py (``page`` relative to the repository or absolute)."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:  # type: ignore[no-untyped-def]
    """The values of a list of elements (captions, infos, errors...)."""
    return [e.value for e in elements]


def file_pages(at: AppTest) -> set[str]:
    """The file names of the pages this session's navigation registered (not the hidden refusal pages)."""
    return {Path(str(info["script_path"])).name for info in at._registered_pages.values() if info.get("script_path")}

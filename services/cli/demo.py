"""Seed a small demo workspace from photos that ship inside installed packages (never ../shared)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from services.core import jobs
from services.core.config import Workspace, get_settings, set_setting
from services.core.errors import NotFound
from services.core.storage import ObjectStore
from services.lines import feed as lines
from services.lines import simulator as linesim
from services.lines import targets as line_targets
from services.reviews import ingest

# (package, file inside its data folder, review type, review id)
DEMO_PHOTOS = [
    ("skimage", "data/astronaut.png", "style", "demo-style-1"),
    ("skimage", "data/coffee.png", "product", "demo-product-1"),
    ("skimage", "data/chelsea.png", "product", "demo-product-2"),
    ("skimage", "data/rocket.jpg", "product", "demo-product-3"),
    ("skimage", "data/motorcycle_left.png", "product", "demo-product-4"),
    ("sklearn", "datasets/images/china.jpg", "style", "demo-style-2"),
    ("sklearn", "datasets/images/flower.jpg", "product", "demo-product-5"),
]


def _package_file(package: str, rel: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def seed(ws: Workspace, *, actor: str) -> dict[str, Any]:
    """Copy the demo photos into the workspace, ingest them as reviews and classify them.

    Raises NotFound when none of the packages that ship the photos is installed.
    """
    store = ObjectStore()
    records = []
    for package, rel, review_type, review_id in DEMO_PHOTOS:
        src = _package_file(package, rel)
        if src is None:
            continue
        dst = ws.objects_dir / "demo" / Path(rel).name
        if not dst.exists():
            store.write(str(dst), src.read_bytes())
        records.append({"review_id": review_id, "review_type": review_type, "image_uris": [str(dst)],
                        "product": Path(rel).stem, "user_id": "demo-user", "text": f"Demo review with {Path(rel).name}"})
    if not records:
        raise NotFound("no demo photos found: scikit-image and scikit-learn are not installed")
    manifest = ws.objects_dir / "demo" / "reviews.jsonl"
    store.write(str(manifest), "".join(json.dumps(r) + "\n" for r in records).encode())
    db = ws.db()
    report = ingest.ingest_manifest(db, uri=str(manifest), store=store, actor=actor)
    job_id = jobs.create_job(db, kind="classify", params={"source": "demo"}, actor=actor)
    jobs.run_job(ws, job_id=job_id)
    return {"photos": len(records), "ingest": report.as_dict(), "classify_job": jobs.get_job(db, job_id)["state"],
            "lines": seed_lines(ws, db, actor=actor)}


def seed_lines(ws: Workspace, db: Any, *, actor: str, hours: float = 1.0) -> dict[str, Any]:
    """Three simulated packaging lines for the last ``hours`` (line-2 slowed down for a while, so it runs
    under target), read from the workspace's ``feed`` folder, which becomes the line feed; shift targets.
    Seeding again reads nothing twice."""
    import time


    feed = ws.root / "feed"
    feed.mkdir(exist_ok=True)
    if not any(feed.glob("*.jsonl")):
        start = time.time() - hours * 3600
        streams, _ = linesim.simulate(lines=3, hours=hours, seed=7, start_ts=start,
                                      rate_changes={"line-2": [(hours * 1800, hours * 1800, 0.6)]})
        linesim.write_jsonl(feed / f"frames-{int(start)}.jsonl", streams)
    set_setting(db, key="line_feed_uri", value=str(feed), actor=actor)
    report = lines.ingest_source(db, uri=str(feed), store=ObjectStore(), actor=actor)
    for line in ("line-1", "line-2", "line-3"):
        for shift in get_settings(db)["shifts"]:
            line_targets.set_target(db, line_id=line, shift=shift["name"], trays_per_hour=1100.0, actor=actor)
    return {"frames": report["frames_added"], "feed": str(feed)}

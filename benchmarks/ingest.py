"""Ingest throughput: a large JSON Lines manifest into a fresh workspace, then the same manifest again.

    python benchmarks/ingest.py [--quick] [--rows N] [--pool N]

Rows reference a pool of distinct small JPEGs (made once from ../shared/samples/reviews, or from
scikit-image's data folder, cached in benchmarks/out/ingest_pool). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import OUT, cpu_ticks, others_share, progress, source_photos
from PIL import Image, ImageEnhance, ImageOps


def build_pool(n: int) -> tuple[list[Path], str]:
    """``n`` distinct small JPEGs (crop, flip, jitter, 480-800 px on the long side)."""
    srcs, origin = source_photos()
    folder = OUT / ("ingest_pool" if origin == "samples" else "ingest_pool_skimage")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"pool_{i:05d}.jpg" for i in range(n)]
    opened: dict[Path, Image.Image] = {}
    made = 0
    for i, path in enumerate(paths):
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        src = srcs[i % len(srcs)]
        if src not in opened:
            opened[src] = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        im = opened[src]
        w, h = im.size
        f = rng.uniform(0.7, 1.0)
        x0, y0 = rng.uniform(0, w * (1 - f)), rng.uniform(0, h * (1 - f))
        im = im.crop((round(x0), round(y0), round(x0 + w * f), round(y0 + h * f)))
        im = ImageEnhance.Brightness(ImageOps.mirror(im) if rng.random() < 0.5 else im).enhance(rng.uniform(0.85, 1.15))
        im.thumbnail((int(rng.integers(480, 800)),) * 2)
        im.save(path, "JPEG", quality=int(rng.integers(80, 95)))
        made += 1
        if made % 250 == 0:
            print(f"made {made} pool photos", flush=True)
    distinct = len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths})
    print(f"pool: {n} photos ({made} new, {distinct} distinct) from {len(srcs)} {origin} photos", flush=True)
    return paths, origin


def write_manifest(path: Path, rows: int, uris: list[str]) -> None:
    rng = np.random.default_rng(7)
    with open(path, "w") as f:
        for i in range(rows):
            k = 1 if rng.random() < 0.6 else 2
            picks = rng.choice(len(uris), size=k, replace=False)
            f.write(json.dumps({
                "review_id": f"rv{i:07d}",
                "review_type": "style" if i % 3 == 0 else "product",
                "image_uris": [uris[j] for j in picks],
                "product": f"sku-{i % 997}",
                "user_id": f"u{i % 5003}",
                "submitted_at": f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:00:00Z",
                "text": f"review text {i}",
            }) + "\n")


def timed_import(ws, db, manifest: Path, label: str):  # type: ignore[no-untyped-def]
    from services.core.storage import ObjectStore
    from services.reviews.ingest import ingest_manifest

    def line(conn, sec: float) -> str:  # type: ignore[no-untyped-def]
        return f"{label}: {conn.execute('SELECT COUNT(*) FROM reviews').fetchone()[0]} reviews stored after {sec:.0f} s"

    t0 = time.perf_counter()
    with progress(ws, line):
        report = ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="bench")
    seconds = time.perf_counter() - t0
    added = report.reviews_added + report.images_added
    print(f"{label}: {report.rows} rows in {seconds:.1f} s ({report.rows / seconds:,.0f} rows/s): "
          f"{report.reviews_added} reviews and {report.images_added} images added, {report.duplicates} duplicates, "
          f"{len(report.errors)} errors", flush=True)
    return seconds, added, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 rows")
    ap.add_argument("--rows", type=int, default=None, help="manifest rows (default 100,000)")
    ap.add_argument("--pool", type=int, default=1000, help="distinct photo files the rows share")
    args = ap.parse_args()
    rows = args.rows or (10_000 if args.quick else 100_000)
    pool, origin = build_pool(args.pool)

    from services.core.config import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        ws = Workspace.open(tmp)
        (ws.objects_dir / "pool").symlink_to(pool[0].parent, target_is_directory=True)
        manifest = ws.objects_dir / "manifest.jsonl"
        write_manifest(manifest, rows, [str(ws.objects_dir / "pool" / p.name) for p in pool])
        print(f"manifest: {rows} rows, {manifest.stat().st_size / 1e6:.1f} MB", flush=True)
        db = ws.db()
        ticks = cpu_ticks()
        seconds, added, first = timed_import(ws, db, manifest, "first import")
        others = others_share(ticks)
        counts = [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("reviews", "images")]
        again_seconds, again_added, _ = timed_import(ws, db, manifest, "second import")
        after = [db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("reviews", "images")]
        db.close()
    if first.errors or counts[0] != rows or after != counts:
        print(f"WARNING: {len(first.errors)} errors; reviews/images {counts} then {after}", flush=True)
    print(json.dumps({
        "rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds, 1),
        "second_import_added": again_added, "second_import_seconds": round(again_seconds, 2),
        "reviews_added": first.reviews_added, "images_added": first.images_added, "errors": len(first.errors),
        "pool_photos": len(pool), "photo_source": origin, "cpus": os.cpu_count(), "others_cpu_share": others,
    }))


if __name__ == "__main__":
    main()

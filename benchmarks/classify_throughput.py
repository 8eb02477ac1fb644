"""Classify throughput: real-size JPEGs end to end through the classify job, against the model alone.

    python benchmarks/classify_throughput.py [--quick] [--images N] [--size phone|web] [--dump FILE]

--size phone (default): 12-megapixel phone originals (3000x4000 / 4032x3024, about 1.8 MB each).
--size web: the 1200x1600 uploads a shop's upload form typically produces (about 0.3 MB each).

Photos are made once from ../shared/samples/reviews (fallback: scikit-image's data folder) and cached
in benchmarks/out/. A model is trained on the samples first (not timed). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from common import OUT, SAMPLES, cpu_ticks, others_share, progress, source_photos
from PIL import Image, ImageEnhance, ImageOps

PROFILES = {
    "phone": {"portrait": (3000, 4000), "landscape": (4032, 3024)},
    "web": {"portrait": (1200, 1600), "landscape": (1600, 1200)},
}
GRAIN = 2.5  # sensor-like noise (std, 8-bit levels): plain upscales compress and decode unrealistically fast
_GRAIN: list[np.ndarray] = []


def make_photo(src: Path, dst: Path, seed: int, size: tuple[int, int] | None = None, profile: str = "phone") -> None:
    """A distinct phone-size JPEG from a source: crop, flip, colour jitter, upscale, grain, quality 90."""
    rng = np.random.default_rng(seed)
    im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
    w, h = im.size
    tw, th = size or PROFILES[profile]["portrait" if h >= w else "landscape"]
    cw = min(w, h * tw / th) * rng.uniform(0.85, 1.0)  # a crop of the target aspect
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - cw * th / tw)
    im = im.crop((round(x0), round(y0), round(x0 + cw), round(y0 + cw * th / tw)))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    for enhance in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        im = enhance(im).enhance(rng.uniform(0.85, 1.15))
    if not _GRAIN:  # one noise field per process; each photo takes a window at its own offset
        _GRAIN.append(np.random.default_rng(0).normal(0, GRAIN, (4160, 4160, 1)).round().astype(np.int16))
    dy, dx = rng.integers(0, 64, 2)
    arr = np.asarray(im.resize((tw, th), Image.Resampling.BICUBIC), dtype=np.int16) + _GRAIN[0][dy : dy + th, dx : dx + tw]
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(dst.with_suffix(".tmp"), "JPEG", quality=90)
    os.replace(dst.with_suffix(".tmp"), dst)


def build_photos(n: int, profile: str = "phone") -> tuple[list[Path], Path, str]:
    """(n cached phone-size photos, a labelled folder to train on, where the photos come from)."""
    srcs, origin = source_photos()
    train_dir = SAMPLES
    if origin != "samples":  # arbitrary labels: the model only has to exist for the timing
        train_dir = OUT / "skimage_labels"
        for k, j in ((k, j) for k in range(4) for j in range(3)):
            dst = train_dir / ("half_length", "product", "package", "full_length")[k] / f"{k}_{j}.jpg"
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                make_photo(srcs[(k + j) % len(srcs)], dst, 1000 + 10 * k + j, (768, 1024))
    folder = OUT / (("photos" if origin == "samples" else "photos_skimage") + ("" if profile == "phone" else f"_{profile}"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"photo_{i:05d}.jpg" for i in range(n)]
    todo = [(srcs[i % len(srcs)], p, i, None, profile) for i, p in enumerate(paths) if not p.exists()]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count() or 2) as pool:
        for k, _ in enumerate(pool.map(make_photo, *zip(*todo), chunksize=4) if todo else [], start=1):
            if k % 100 == 0 or k == len(todo):
                print(f"made {k}/{len(todo)} photos ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"{n} photos in {folder} ({len(todo)} new), from {len(srcs)} {origin} photos", flush=True)
    return paths, train_dir, origin


def setup(ws, paths: list[Path], train_dir: Path):  # type: ignore[no-untyped-def]
    """Train and activate a model, link the photos into the workspace's object store, ingest them."""
    from services.core.storage import ObjectStore
    from services.models.embedder import BACKBONE, export_onnx
    from services.models.training import import_folder, train
    from services.reviews.ingest import ingest_manifest

    onnx = OUT / "models" / f"{BACKBONE}.onnx"  # exported once, reused by every run
    if not onnx.exists():
        export_onnx(onnx)
    (ws.models_dir / onnx.name).symlink_to(onnx)
    (ws.objects_dir / "photos").symlink_to(paths[0].parent, target_is_directory=True)
    db, store = ws.db(), ObjectStore()
    import_folder(db, root=str(train_dir), store=store, actor="bench")
    res = train(ws, db, actor="bench")
    print(f"trained on {res['examples']} photos (cross-validated accuracy {res['accuracy']:.2f})", flush=True)
    manifest = ws.root / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"review_id": f"r{i:06d}", "review_type": ("product", "style")[i % 2],
                                            "image_uris": [str(ws.objects_dir / "photos" / p.name)]}) + "\n"
                                for i, p in enumerate(paths)))
    rep = ingest_manifest(db, uri=str(manifest), store=store, actor="bench")
    print(f"ingested {rep.images_added} photos ({rep.images_failed} failed)", flush=True)
    return db


def end_to_end(ws, db) -> tuple[float, dict]:  # type: ignore[no-untyped-def]
    from services.core.jobs import create_job, get_job, run_job
    from services.worker import kinds

    kinds.install()  # the job kinds, as the app and the command line wire them

    job_id = create_job(db, kind="classify", params={}, actor="bench")

    def line(conn, sec: float) -> str:  # type: ignore[no-untyped-def]
        done, total = conn.execute("SELECT done + failed, total FROM jobs WHERE id = ?", [job_id]).fetchone()
        return f"classify job: {done}/{total} photos ({done / sec:.1f} img/s)"

    t0 = time.perf_counter()
    with progress(ws, line):
        run_job(ws, job_id=job_id)
    seconds = time.perf_counter() - t0
    job = get_job(db, job_id)
    if job["state"] != "done":
        raise SystemExit(f"classify job ended {job['state']}: {job['error']}")
    return seconds, job


def dump_outcomes(db, path: Path) -> None:  # type: ignore[no-untyped-def]
    """Every photo's status, prediction, cues and decisions, to compare two versions of the code."""
    sql = ("SELECT i.uri, i.status, i.queue_reason, i.error, p.label, p.confidence, p.probabilities, e.cues, "
           "(SELECT group_concat(d.label || ':' || d.source || ':' || d.credit || ':' || d.reason, '|') "
           "FROM decisions d WHERE d.image_id = i.id) FROM images i LEFT JOIN predictions p ON p.image_id = i.id "
           "LEFT JOIN embeddings e ON e.sha256 = i.sha256 ORDER BY i.uri")
    path.write_text(json.dumps({Path(r[0]).name: r[1:] for r in db.execute(sql)}, indent=0))
    print(f"wrote the outcomes to {path}", flush=True)


def timed_batch(extractor, head, emb_in, face_in, scales, sizes, body_in) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """The job's compute for one batch of prepared inputs: embed, head, person cues (face geometry, body extent)
    for the rows it sends."""
    from services.models.body_cues import BodyPoseModel
    from services.models.person_cues import cues_from_faces

    cued = [0]

    def cues_for(idx: np.ndarray) -> np.ndarray:
        cued[0] += len(idx)
        faces = extractor.faces.detect(face_in[idx], [scales[i] for i in idx])
        face = np.array([cues_from_faces(f, *sizes[i]) for f, i in zip(faces, idx)], dtype=np.float32)
        return np.hstack([face, BodyPoseModel.shared().cues([body_in[i] for i in idx])])

    t0 = time.perf_counter()
    emb, _ = extractor.embedder.run(emb_in)
    head.predict_proba(emb, cues_for)
    return time.perf_counter() - t0, cued[0]


def model_only(ws, db, paths: list[Path]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Timed seconds of the model's work on every photo, decoded and preprocessed beforehand; photos cued."""
    from services.core.config import get_settings
    from services.models.embedder import preprocess
    from services.models.features import FeatureExtractor
    from services.models.person_cues import FaceDetector
    from services.models.registry import active_version, load_head

    extractor = FeatureExtractor.shared(ws.models_dir)  # the job's own sessions
    head = load_head(active_version(db), models_dir=ws.models_dir)
    max_pixels = get_settings(db)["max_pixels"]
    seconds, cued = 0.0, 0
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for start in range(0, len(paths), 256):  # prepare a chunk (not timed), then time its batches of 32
            pics = list(pool.map(lambda p: FeatureExtractor.decode(p.read_bytes(), max_pixels=max_pixels),
                                 paths[start : start + 256]))
            emb_in = np.stack(list(pool.map(preprocess, pics)))
            prepared = list(pool.map(FaceDetector.prepare, pics))
            face_in = np.stack([b for b, _ in prepared])
            for b in range(0, len(pics), 32):
                sec, k = timed_batch(extractor, head, emb_in[b : b + 32], face_in[b : b + 32],
                                     [s for _, s in prepared[b : b + 32]], [p.size for p in pics[b : b + 32]],
                                     [np.asarray(p.convert("RGB")) for p in pics[b : b + 32]])
                seconds, cued = seconds + sec, cued + k
            print(f"model only: {start + len(pics)}/{len(paths)} ({(start + len(pics)) / seconds:.1f} img/s)", flush=True)
    return seconds, cued


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="200 photos")
    ap.add_argument("--images", type=int, default=None, help="number of photos (default 2000)")
    ap.add_argument("--size", choices=sorted(PROFILES), default="phone", help="photo sizes (default phone)")
    ap.add_argument("--dump", type=Path, help="write every photo's outcome to this JSON file")
    args = ap.parse_args()
    n = args.images or (200 if args.quick else 2000)
    paths, train_dir, origin = build_photos(n, args.size)
    distinct = len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths})
    mb = sum(p.stat().st_size for p in paths) / n / 1e6
    print(f"{distinct} distinct files, {mb:.2f} MB on average", flush=True)

    from services.core.config import Workspace

    with tempfile.TemporaryDirectory(prefix="bench-classify-") as tmp:
        ws = Workspace.open(tmp)
        db = setup(ws, paths, train_dir)
        if "torch" in sys.modules:  # imported by the backbone export
            sys.modules["torch"].set_flush_denormal(True)
        ticks = cpu_ticks()
        before, cued = model_only(ws, db, paths)  # model-only runs before and after: machines drift
        seconds, job = end_to_end(ws, db)
        e2e = n / seconds
        print(f"end to end: {n} photos in {seconds:.1f} s = {e2e:.1f} img/s; {job['result']['images_by_status']}", flush=True)
        if args.dump:
            dump_outcomes(db, args.dump)
        after, _ = model_only(ws, db, paths)
        others = others_share(ticks)
        db.close()
    model = 2 * n / (before + after)
    print(f"model only: {model:.1f} img/s ({n / before:.1f} before, {n / after:.1f} after; {cued} photos sent to face cues)")
    print(f"ratio end-to-end / model-only = {e2e / model:.2f}; other processes used {others:.0%} of the CPUs meanwhile")
    print(json.dumps({
        "images": n, "size": args.size, "end_to_end_images_per_s": round(e2e, 2), "model_only_images_per_s": round(model, 2),
        "ratio": round(e2e / model, 3), "seconds_for_20000_projected": round(20000 / e2e, 1),
        "end_to_end_seconds": round(seconds, 2), "model_only_images_per_s_before_after": [round(n / before, 2), round(n / after, 2)],
        "face_cued": cued, "distinct_files": distinct, "avg_file_mb": round(mb, 2), "photo_source": origin,
        "cpus": os.cpu_count(), "others_cpu_share": others,
    }))


if __name__ == "__main__":
    main()

"""Reused-photo detection and the similarity index, measured.

1. Quality, through the real pipeline (ingest, classify, the reuse job) in a fresh workspace: every sample
   photo (reviews and faces) as a review of its own, then five edited copies of each (half size, 10% crop
   a side, JPEG quality 50, mirrored, 25% brighter) as reviews by other users.
   recall = copies flagged against their own original; false flags = flags between two originals, over all
   pairs of originals (the faces folder holds a few crops of one photo under other names: they are listed).
2. Speed: top-10 queries on the index configuration the console uses (usearch HNSW, cosine, 16-bit floats) at
   1,000,000 vectors (--quick: 100,000), and, at 100,000, the libraries it was chosen against (hnswlib,
   faiss HNSW, exact numpy search), each with its build time and recall@10 against the exact answer.

    python benchmarks/near_duplicates.py [--quick]

The last line is JSON: recall, false_flag_rate, query_ms (median at the large size), and the details.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, cpu_ticks, others_share
from PIL import Image, ImageEnhance, ImageOps

SHARED = ROOT.parent / "shared" / "samples"
EDITS = {
    "resize": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2))),
    "crop": lambda im: im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10)),
    "jpeg50": lambda im: im,
    "mirror": ImageOps.mirror,
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
}


def quality(work: Path) -> dict:
    from services.core.config import Workspace
    from services.core.jobs import create_job, get_job, run_job
    from services.worker import kinds

    kinds.install()  # the job kinds, as the app and the command line wire them
    from services.core.storage import ObjectStore
    from services.models.embedder import BACKBONE, export_onnx
    from services.reviews.ingest import ingest_manifest

    photos = sorted(p for folder in ("reviews", "faces") for p in (SHARED / folder).rglob("*")
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    ws = Workspace.open(work / "ws")
    export_onnx(ws.models_dir / f"{BACKBONE}.onnx")
    db = ws.db()
    originals, copies = [], []
    for n, src in enumerate(photos):
        originals.append({"review_id": f"o{n}", "review_type": "product", "user_id": "owner", "image_uris": [str(src)]})
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        for edit, fn in EDITS.items():
            dst = work / "copies" / f"{n}_{edit}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            fn(img).save(dst, "JPEG", quality=50 if edit == "jpeg50" else 90)
            copies.append({"review_id": f"c{n}_{edit}", "review_type": "product", "user_id": f"u{n}_{edit}",
                           "image_uris": [str(dst)]})
    for name, rows in (("originals", originals), ("copies", copies)):  # originals first: they came in earlier
        manifest = work / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="system:benchmark")
    timings = {}
    for kind in ("classify", "reuse"):
        t0 = time.perf_counter()
        job_id = create_job(db, kind=kind, params={}, actor="system:benchmark")
        run_job(ws, job_id=job_id)
        assert get_job(db, job_id)["state"] == "done", get_job(db, job_id)["error"]
        timings[kind] = round(time.perf_counter() - t0, 1)
    flags = db.execute("SELECT a.review_id, b.review_id, f.how FROM reuse_flags f JOIN images a ON a.id = f.image_id "
                       "JOIN images b ON b.id = f.other_image_id").fetchall()
    by_copy = {a: (b, how) for a, b, how in flags}
    per_edit = {}
    for edit in EDITS:
        hits = [by_copy.get(f"c{n}_{edit}", ("", ""))[0] == f"o{n}" for n in range(len(photos))]
        per_edit[edit] = round(sum(hits) / len(hits), 4)
    found = sum(by_copy.get(c["review_id"], ("", ""))[0] == "o" + c["review_id"][1:].split("_")[0] for c in copies)
    flagged_at_all = sum(c["review_id"] in by_copy for c in copies)  # against its original or a variant of it
    false = [(photos[int(a[1:])].name, photos[int(b[1:])].name) for a, b, _ in flags
             if a.startswith("o") and b.startswith("o")]
    pairs = len(photos) * (len(photos) - 1) // 2
    db.close()
    return {"photos": len(photos), "copies": len(copies), "recall": round(found / len(copies), 4),
            "flagged_at_all": round(flagged_at_all / len(copies), 4),
            "recall_by_edit": per_edit, "false_flags": false, "original_pairs": pairs,
            "false_flag_rate": round(len(false) / pairs, 5),
            "how": {h: sum(1 for *_, x in flags if x == h) for h in ("bytes", "hash", "keypoints")},
            "seconds": timings}


QUERY_NOISE = 0.009  # per dimension: a query sits at cosine about 0.95 from the stored vector it was made from


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` unit vectors in 1280 dimensions clustered like photo embeddings (random centres, spread)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (2000, 1280)).astype(np.float32)
    out = np.empty((n, 1280), dtype=np.float32)
    for lo in range(0, n, 100_000):
        hi = min(n, lo + 100_000)
        block = centres[rng.integers(0, len(centres), hi - lo)] + rng.normal(0, 0.8, (hi - lo, 1280)).astype(np.float32)
        out[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def timed_queries(search, queries: np.ndarray) -> tuple[float, float, list]:
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(search(q))
        times.append((time.perf_counter() - t0) * 1000)
    return round(float(np.median(times)), 3), round(float(np.percentile(times, 95)), 3), results


def speed(n_large: int, n_compare: int, n_queries: int = 200) -> dict:
    from services.reuse.similarity import EXPANSION_SEARCH, _new_index

    out: dict = {}
    data = vectors(n_compare)
    queries = data[:n_queries] + np.random.default_rng(1).normal(0, QUERY_NOISE, (n_queries, 1280)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [set(np.argsort(-(data @ q))[:10]) for q in queries]

    def recall(found) -> float:  # type: ignore[no-untyped-def]
        return round(float(np.mean([len(set(map(int, f)) & e) / 10 for f, e in zip(found, exact)])), 3)

    libs: dict = {}
    p50, p95, res = timed_queries(lambda q: np.argpartition(-(data @ q), 10)[:10], queries)
    libs["numpy exact"] = {"build_s": 0.0, "query_ms": p50, "p95_ms": p95, "recall@10": recall(res)}
    index = _new_index(1280)
    t0 = time.perf_counter()
    index.add(np.arange(n_compare), data, threads=2)
    build = time.perf_counter() - t0
    p50, p95, res = timed_queries(lambda q: index.search(q, 10).keys, queries)
    libs["usearch f16 (used)"] = {"build_s": round(build, 1), "query_ms": p50, "p95_ms": p95, "recall@10": recall(res)}
    from usearch.index import Index

    i8 = Index(ndim=1280, metric="cos", dtype="i8", connectivity=16, expansion_add=64, expansion_search=EXPANSION_SEARCH)
    t0 = time.perf_counter()
    i8.add(np.arange(n_compare), data, threads=2)
    build = time.perf_counter() - t0
    p50, p95, res = timed_queries(lambda q: i8.search(q, 10).keys, queries)
    libs["usearch i8"] = {"build_s": round(build, 1), "query_ms": p50, "p95_ms": p95, "recall@10": recall(res)}
    i8 = None  # freed before the next library is built
    try:
        import hnswlib

        h = hnswlib.Index(space="cosine", dim=1280)
        h.init_index(max_elements=n_compare, M=16, ef_construction=64)
        h.set_num_threads(2)
        t0 = time.perf_counter()
        h.add_items(data, np.arange(n_compare))
        build = time.perf_counter() - t0
        h.set_ef(EXPANSION_SEARCH)
        p50, p95, res = timed_queries(lambda q: h.knn_query(q, k=10)[0][0], queries)
        libs["hnswlib f32"] = {"build_s": round(build, 1), "query_ms": p50, "p95_ms": p95, "recall@10": recall(res)}
    except ImportError:
        libs["hnswlib f32"] = "not installed"
    try:
        import faiss

        faiss.omp_set_num_threads(2)
        f = faiss.IndexHNSWFlat(1280, 16, faiss.METRIC_INNER_PRODUCT)
        f.hnsw.efConstruction = 64
        t0 = time.perf_counter()
        f.add(data)
        build = time.perf_counter() - t0
        f.hnsw.efSearch = EXPANSION_SEARCH
        p50, p95, res = timed_queries(lambda q: f.search(q.reshape(1, -1), 10)[1][0], queries)
        libs["faiss HNSW f32"] = {"build_s": round(build, 1), "query_ms": p50, "p95_ms": p95, "recall@10": recall(res)}
    except ImportError:
        libs["faiss HNSW f32"] = "not installed"
    out[f"compared_at_{n_compare}"] = libs
    if n_large > n_compare:
        data = np.empty(0)  # free the comparison set before making the large one
        large = vectors(n_large, seed=2)
        index = _new_index(1280)
        t0 = time.perf_counter()
        for lo in range(0, n_large, 100_000):
            index.add(np.arange(lo, min(n_large, lo + 100_000)), large[lo:lo + 100_000], threads=2)
        build = time.perf_counter() - t0
        q = large[:n_queries] + np.random.default_rng(3).normal(0, QUERY_NOISE, (n_queries, 1280)).astype(np.float32)
        sweep = {}
        for ef in (64, 128, 256):  # how wide the search looks: the index's setting is the used one
            index.expansion_search = ef
            p50, p95, res = timed_queries(lambda v: index.search(v, 10).keys, q)
            self_hit = float(np.mean([int(r[0]) == i for i, r in enumerate(res)]))  # the copy finds its source
            sweep[ef] = {"query_ms": p50, "p95_ms": p95, "nearest_is_its_source": round(self_hit, 3)}
        used = sweep[EXPANSION_SEARCH]
        out[f"usearch_at_{n_large}"] = {"build_s": round(build, 1), **used, "expansion_search": EXPANSION_SEARCH,
                                        "by_expansion_search": sweep, "memory_mb": round(index.memory_usage / 2**20)}
    else:
        out[f"usearch_at_{n_large}"] = libs["usearch f16 (used)"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 vectors instead of 1,000,000")
    args = parser.parse_args()
    n_large = 100_000 if args.quick else 1_000_000
    before = cpu_ticks()
    figures: dict = {}
    if (SHARED / "reviews").is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            figures["quality"] = quality(Path(tmp))
        print(json.dumps(figures["quality"]), flush=True)
    else:
        print(f"NOTE: {SHARED} not found: quality figures skipped", flush=True)
    figures["speed"] = speed(n_large, 100_000)
    print(json.dumps(figures["speed"]), flush=True)
    q = figures.get("quality", {})
    print(json.dumps({"recall": q.get("recall"), "false_flag_rate": q.get("false_flag_rate"),
                      "query_ms": figures["speed"][f"usearch_at_{n_large}"]["query_ms"], "vectors": n_large,
                      "others_cpu_share": others_share(before), **figures}))


if __name__ == "__main__":
    main()

"""Reused-photo detection and the similarity index, measured.

1. Quality, through the real pipeline (ingest, classify, the reuse job) in a fresh workspace. Originals, each a
   review by a user of its own: the sample photos (``../shared/samples``: reviews and faces, when present) and
   the look-alike garment photos of ``clothing_lookalikes.py`` (real CC0 photos of github:alexeygrigorev/
   clothing-dataset, read from its fetched snapshot and cached under ``benchmarks/out/clothing_lookalikes``;
   the benchmark stops and says so when the snapshot is absent). Then edited copies, as reviews by other
   users, of every sample photo and of every EDIT_EVERY-th garment photo: the five edits the detector was first
   built around (half size, 10% crop a side, JPEG quality 50, mirrored, 25% brighter) and the edits of issue 25
   (rotation by 90/180/270 degrees, an EXIF-rotated file (pixels turned, the tag turning them back) and a file
   whose EXIF tag turns it, a screenshot of a shop page with the photo small on a phone-sized canvas, 25%
   cropped a side, a border, a caption bar, stickers, a sepia filter with a vignette, a perspective tilt).
   recall = copies flagged against their own original; false flags = flags between two sample originals, over
   their pairs (the faces folder holds a few crops of one photo under other names: they are listed);
   false_flags_lookalike = flags between two garment photos of the same label, over all such pairs, with a 95%
   upper bound (Clopper-Pearson); a flag between two photos that are one photo in the data (listed in
   ``clothing_lookalikes.REAL_COPIES`` after looking at it) is counted as a real copy. Every flag between
   originals is saved side by side under ``benchmarks/out/near_duplicates_flags/<split>/`` to be looked at.
   Splits: the sample photos, sorted by name, alternate between the **tune** split (even positions) and the
   **report** split (odd positions); the garment photos of the tune split are the clothing-dataset-small
   train/ folder, the others are the report split. Thresholds are chosen on tune; the figures quoted are
   report's; ``--split all`` runs both.
2. Speed: top-10 queries on the index configuration the console uses (usearch HNSW, cosine, 16-bit floats) at
   1,000,000 vectors (--quick: 100,000), and, at 100,000, the libraries it was chosen against (hnswlib,
   faiss HNSW, exact numpy search), each with its build time and recall@10 against the exact answer; and the
   in-memory hash scan one photo's check makes at as many photos (``hash_scan``).

    nice python benchmarks/near_duplicates.py [--quick] [--split report|tune|all] [--edits a,b]
        [--mirror-dir D] [--no-speed | --no-quality [--no-compare]]

The last line is JSON: recall, recall_min_edit, false_flag_rate, false_flags_lookalike (with lookalike_pairs,
false_flags_lookalike_upper95, real_copies_in_data), query_ms (median at the
large size), hash_scan_ms, and the details.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import clothing_lookalikes as lookalikes
import numpy as np
from common import ROOT, cpu_ticks, others_share
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

SHARED = ROOT.parent / "shared" / "samples"
MIRROR_DIR = Path("/work/.mirror")  # fetched snapshots, as owner+name/repo: the look-alike garment photos
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def _rng(im: Image.Image) -> np.random.Generator:
    """A generator seeded by the picture, so each photo's edit is fixed from run to run."""
    return np.random.default_rng(int.from_bytes(hashlib.sha1(im.resize((8, 8)).tobytes()).digest()[:4], "big"))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, size))


def screenshot(im: Image.Image) -> Image.Image:
    """A phone screenshot of a shop page: status bar, header, the photo at 55-80% of the width, title, price
    and a button below, on a light page (the photo covers 15-35% of the canvas)."""
    rng = _rng(im)
    w, h = 720, 1560
    page = tuple(int(v) for v in rng.integers(235, 256, 3))
    canvas = Image.new("RGB", (w, h), page)
    d = ImageDraw.Draw(canvas)
    d.rectangle((0, 0, w, 48), fill=(20, 20, 20))
    d.text((24, 10), "9:41", fill="white", font=_font(26))
    d.rectangle((0, 48, w, 140), fill=tuple(int(v) for v in rng.integers(200, 256, 3)))
    d.text((24, 70), "< Back      Shop", fill=(30, 30, 30), font=_font(34))
    side = int(w * rng.uniform(0.55, 0.8))
    photo = im.copy()
    photo.thumbnail((side, int(h * 0.5)))
    x, y = int((w - photo.width) * rng.uniform(0.2, 0.8)), int(160 + rng.integers(0, 80))
    canvas.paste(photo, (x, y))
    ty = y + photo.height + 30
    d.text((24, ty), "Relaxed fit, organic cotton", fill=(20, 20, 20), font=_font(32))
    d.text((24, ty + 50), "$ 24.99   * * * * *  (1,204)", fill=(180, 30, 30), font=_font(30))
    d.rounded_rectangle((24, ty + 110, w - 24, ty + 190), radius=20, fill=(250, 200, 40))
    d.text((w // 2 - 90, ty + 130), "Add to cart", fill=(0, 0, 0), font=_font(34))
    return canvas


def border(im: Image.Image) -> Image.Image:
    rng = _rng(im)
    width = max(4, int(min(im.size) * rng.uniform(0.05, 0.12)))
    return ImageOps.expand(im, border=width, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))


def caption(im: Image.Image) -> Image.Image:
    """A caption bar of 15% of the height under (or over) the photo, with text."""
    bar = max(20, im.height * 15 // 100)
    out = Image.new("RGB", (im.width, im.height + bar), "black")
    top = _rng(im).random() < 0.5
    out.paste(im, (0, bar if top else 0))
    ImageDraw.Draw(out).text((bar // 3, (0 if top else im.height) + bar // 4), "my new favourite, 10/10 would buy",
                             fill="white", font=_font(bar // 2))
    return out


def stickers(im: Image.Image) -> Image.Image:
    """Three opaque stickers (discs and a label), each about 4-6% of the picture."""
    rng = _rng(im)
    out = im.copy()
    d = ImageDraw.Draw(out)
    for k in range(3):
        r = int(min(im.size) * rng.uniform(0.1, 0.14))
        cx, cy = int(rng.uniform(r, im.width - r)), int(rng.uniform(r, im.height - r))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if k < 2:
            d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour, outline="black", width=max(1, r // 12))
            d.ellipse((cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3), fill="white")
        else:
            d.rectangle((cx - r, cy - r // 2, cx + r, cy + r // 2), fill=colour)
            d.text((cx - r + 4, cy - r // 4), "SALE", fill="white", font=_font(r // 2))
    return out


def sepia(im: Image.Image) -> Image.Image:
    """A sepia filter with a vignette and more contrast."""
    grey = np.asarray(ImageOps.grayscale(ImageEnhance.Contrast(im).enhance(1.3)), dtype=np.float32)
    tone = np.stack([grey * 1.07, grey * 0.74, grey * 0.43], axis=-1)
    yy, xx = np.mgrid[0:im.height, 0:im.width]
    r = np.hypot((xx - im.width / 2) / (im.width / 2), (yy - im.height / 2) / (im.height / 2))
    tone *= np.clip(1.15 - 0.45 * r ** 2, 0.35, 1.0)[..., None]
    return Image.fromarray(np.clip(tone + 20, 0, 255).astype(np.uint8))


def perspective(im: Image.Image) -> Image.Image:
    """The photo photographed at a tilt: one side 12-18% shorter than the other."""
    w, h = im.size
    k = _rng(im).uniform(0.12, 0.18)
    # the source corners (upper left, lower left, lower right, upper right) of the output's: the left side shrinks
    return im.transform((w, h), Image.Transform.QUAD, (0, -h * k / 2, 0, h + h * k / 2, w, h, w, 0),
                        Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def crop(share: float) -> Callable[[Image.Image], Image.Image]:
    def fn(im: Image.Image) -> Image.Image:
        return im.crop((int(im.width * share), int(im.height * share), int(im.width * (1 - share)),
                        int(im.height * (1 - share))))
    return fn


ORIENTATION = 0x0112
EXIF_TURNED_BACK = "exif_turned_back"  # pixels turned a quarter, the EXIF tag turns them back upright
EXIF_TURNS_IT = "exif_turns_it"  # upright pixels, the EXIF tag turns the photo a quarter when it is shown
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "resize": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2))),
    "crop": crop(0.10),
    "jpeg50": lambda im: im,
    "mirror": ImageOps.mirror,
    "bright": lambda im: ImageEnhance.Brightness(im).enhance(1.25),
    # issue 25: edits the detector was not designed around
    "rot90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rot180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rot270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    EXIF_TURNED_BACK: lambda im: im.transpose(Image.Transpose.ROTATE_90),  # saved with orientation 6
    EXIF_TURNS_IT: lambda im: im,  # saved with orientation 8
    "screenshot": screenshot,
    "crop25": crop(0.25),
    "border": border,
    "caption": caption,
    "stickers": stickers,
    "sepia": sepia,
    "perspective": perspective,
}
FIRST_EDITS = ("resize", "crop", "jpeg50", "mirror", "bright")


def save_edit(img: Image.Image, edit: str, dst: Path) -> None:
    """The edited copy as a JPEG (quality 50 for jpeg50, else 90), with its EXIF orientation tag if any."""
    out = EDITS[edit](img).convert("RGB")
    exif = Image.Exif()
    if edit == EXIF_TURNED_BACK:
        exif[ORIENTATION] = 6  # shown turned 90 degrees clockwise: the pixels were turned counter-clockwise
    elif edit == EXIF_TURNS_IT:
        exif[ORIENTATION] = 8
    out.save(dst, "JPEG", quality=50 if edit == "jpeg50" else 90, exif=exif)


def samples(split: str) -> list[Path]:
    """The sample photos (reviews and faces) of the split, each photo's bytes once: sorted by name, even positions
    are the tune split and odd positions the report split."""
    found: dict[str, Path] = {}
    for p in (p for folder in ("reviews", "faces") for p in (SHARED / folder).rglob("*")):
        if p.suffix.lower() in PHOTO_SUFFIXES:
            found.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p)
    ordered = sorted(found.values(), key=lambda x: x.name)
    return ordered if split == "all" else [x for k, x in enumerate(ordered) if k % 2 == (0 if split == "tune" else 1)]


EDIT_EVERY = 20  # every 20th look-alike photo of the split (by name) is also copied with every edit


def originals(split: str, *, mirror_dir: Path) -> list[tuple[Path, str, bool]]:
    """(photo, group, copied with every edit) of every original of the split: the sample photos (group
    "sample", all copied) when ``../shared/samples`` is there, then the look-alike garment photos (group: the
    garment label; every EDIT_EVERY-th copied). Raises MirrorMissing when the garment photos' snapshot is absent."""
    out = [(p, "sample", True) for p in samples(split)] if (SHARED / "reviews").is_dir() else []
    garments = lookalikes.photos(split, mirror_dir=mirror_dir)
    return out + [(p, label, k % EDIT_EVERY == 0) for k, (p, label) in enumerate(garments)]


def quality(work: Path, *, split: str = "report", edits: tuple[str, ...] = tuple(EDITS),
            mirror_dir: Path = MIRROR_DIR) -> dict:
    from services.core.config import Workspace, set_setting
    from services.core.jobs import create_job, get_job, run_job
    from services.worker import kinds

    kinds.install()  # the job kinds, as the app and the command line wire them
    from services.core.storage import ObjectStore
    from services.models.embedder import BACKBONE, export_onnx
    from services.reuse.detection import unchecked_count
    from services.reviews.ingest import ingest_manifest

    chosen = originals(split, mirror_dir=mirror_dir)
    photos = [p for p, _, _ in chosen]
    group = [g for _, g, _ in chosen]
    edited = [n for n, (_, _, e) in enumerate(chosen) if e]
    ws = Workspace.open(work / "ws")
    export_onnx(ws.models_dir / f"{BACKBONE}.onnx")
    db = ws.db()
    # the console reads only inside its storage roots: the shared photos, the garment photos and the edited copies
    set_setting(db, key="storage_roots", value=[str(SHARED.parent.resolve()), str(lookalikes.CACHE.resolve()),
                                                str(work.resolve())], actor="system:benchmark")
    origs, copies = [], []
    for n, src in enumerate(photos):
        origs.append({"review_id": f"o{n}", "review_type": "product", "user_id": f"owner{n}", "image_uris": [str(src)]})
    for n in edited:
        img = ImageOps.exif_transpose(Image.open(photos[n])).convert("RGB")
        for edit in edits:
            dst = work / "copies" / f"{n}_{edit}.jpg"
            dst.parent.mkdir(parents=True, exist_ok=True)
            save_edit(img, edit, dst)
            copies.append({"review_id": f"c{n}_{edit}", "review_type": "product", "user_id": f"u{n}_{edit}",
                           "image_uris": [str(dst)]})
    for name, rows in (("originals", origs), ("copies", copies)):  # originals first: they came in earlier
        manifest = work / f"{name}.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="system:benchmark")
    timings = {}
    for kind in ("classify", "reuse"):
        t0 = time.perf_counter()
        while True:  # a reuse job checks at most JOB_LIMIT photos; the worker would queue the next
            job_id = create_job(db, kind=kind, params={}, actor="system:benchmark")
            run_job(ws, job_id=job_id)
            assert get_job(db, job_id)["state"] == "done", get_job(db, job_id)["error"]
            if kind == "classify" or unchecked_count(db) == 0:
                break
        timings[kind] = round(time.perf_counter() - t0, 1)
    flags = db.execute("SELECT a.review_id, b.review_id, f.how FROM reuse_flags f JOIN images a ON a.id = f.image_id "
                       "JOIN images b ON b.id = f.other_image_id").fetchall()
    db.close()
    return {"split": split, **recall_figures(flags, photos, edited, edits, group),
            **lookalikes.false_flag_figures(flags, photos, group, split), "seconds": timings}


def recall_figures(flags: list, photos: list[Path], edited: list[int], edits: tuple[str, ...], group: list[str]) -> dict:
    """Recall per edit (a copy flagged against its own original), for all copied photos and the look-alikes."""
    by_copy = {a: (b, how) for a, b, how in flags}
    per_edit, counts, missed, garment_counts = {}, {}, {}, {}
    for edit in edits:
        hits = {n: by_copy.get(f"c{n}_{edit}", ("", ""))[0] == f"o{n}" for n in edited}
        per_edit[edit] = round(sum(hits.values()) / len(hits), 4)
        counts[edit] = f"{sum(hits.values())}/{len(hits)}"
        garment = [hit for n, hit in hits.items() if group[n] != "sample"]
        garment_counts[edit] = f"{sum(garment)}/{len(garment)}"
        missed[edit] = [photos[n].name for n, hit in hits.items() if not hit][:12]
    n_copies = len(edited) * len(edits)

    def source(review_id: str) -> str:
        return review_id[1:].split("_")[0]

    found = sum(1 for a, b, _ in flags if a.startswith("c") and b == "o" + source(a))
    wrong = [(a, b) for a, b, _ in flags if a.startswith("c") and source(a) != source(b)]  # a copy of another photo
    return {"photos": len(photos), "copied_photos": len(edited), "copies": n_copies,
            "recall": round(found / max(1, n_copies), 4),
            "flagged_at_all": round(sum(1 for a, *_ in flags if a.startswith("c")) / max(1, n_copies), 4),
            "recall_by_edit": per_edit, "found_by_edit": counts, "found_by_edit_lookalikes": garment_counts,
            "recall_min_edit": min(per_edit.values()), "missed_by_edit": missed,
            "copies_flagged_against_another_photo": len(wrong),
            "how": {h: sum(1 for *_, x in flags if x == h) for h in ("bytes", "hash", "keypoints")}}


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
    """Query times at ``n_large`` vectors, and the libraries compared at ``n_compare`` (0: not compared)."""
    from services.reuse.similarity import EXPANSION_SEARCH, _new_index

    out: dict = {}
    if n_compare:
        out[f"compared_at_{n_compare}"] = compare_libraries(n_compare, n_queries)
    if n_large > n_compare:
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
        out[f"usearch_at_{n_large}"] = out[f"compared_at_{n_compare}"]["usearch f16 (used)"]
    out[f"hash_scan_at_{n_large}"] = hash_scan(n_large)
    return out


def compare_libraries(n_compare: int, n_queries: int) -> dict:
    """The index the console uses against the libraries it was chosen against, at ``n_compare`` vectors: build
    time, query time and recall@10 against the exact answer."""
    from services.reuse.similarity import EXPANSION_SEARCH, _new_index

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
    return libs


def hash_scan(n_photos: int, rows_per_photo: int = 7, n_probes: int = 14) -> dict:
    """The in-memory hash scan a photo's check makes, at ``n_photos`` stored photos with seven rows each (the
    whole photo, its centre window, its margin-free content or page block, which many photos lack, and its four
    quarters, plain ones left out), looked up with fourteen probes (the most a photo has: four quarter turns of the
    whole and of the margin-free content, two page blocks, four quarters)."""
    import sqlite_utils

    from services.reuse.hashes import HashIndex

    rng = np.random.default_rng(4)
    index = HashIndex()
    n = n_photos * rows_per_photo
    index.rowids = np.arange(1, n + 1, dtype=np.int64)
    index.hashes = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64)
    index.mirrors = rng.integers(0, 2**63, n, dtype=np.int64).view(np.uint64)
    db = sqlite_utils.Database(memory=True)
    db["image_hashes"].create({"sha256": str, "phash": int, "phash_mirror": int}, pk="sha256")
    times = []
    for _ in range(20):
        probes = [int(v) for v in rng.integers(-2**63, 2**63 - 1, n_probes, dtype=np.int64)]
        t0 = time.perf_counter()
        index.scan(db, probes)
        times.append((time.perf_counter() - t0) * 1000)
    return {"stored_rows": n, "probes": n_probes, "scan_ms": round(float(np.median(times)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 vectors instead of 1,000,000")
    parser.add_argument("--split", choices=("report", "tune", "all"), default="report",
                        help="which originals: the report split (default), the tune split or all")
    parser.add_argument("--edits", default=",".join(EDITS), help="comma-separated edit kinds (default: all)")
    parser.add_argument("--mirror-dir", type=Path, default=MIRROR_DIR,
                        help="where the look-alike photos' snapshots are fetched (owner+name/repo)")
    parser.add_argument("--no-speed", action="store_true", help="quality only")
    parser.add_argument("--no-quality", action="store_true", help="speed only")
    parser.add_argument("--no-compare", action="store_true", help="speed: the used index only, no other libraries")
    args = parser.parse_args()
    n_large = 100_000 if args.quick else 1_000_000
    before = cpu_ticks()
    figures: dict = {}
    if not args.no_quality:
        if not (SHARED / "reviews").is_dir():
            print(f"NOTE: {SHARED} not found: only the look-alike garment photos are originals", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            figures["quality"] = quality(Path(tmp), split=args.split, edits=tuple(args.edits.split(",")),
                                         mirror_dir=args.mirror_dir)
        print(json.dumps(figures["quality"]), flush=True)
    if not args.no_speed:
        figures["speed"] = speed(n_large, 0 if args.no_compare else 100_000)
        print(json.dumps(figures["speed"]), flush=True)
    q = figures.get("quality", {})
    query_ms = figures["speed"][f"usearch_at_{n_large}"]["query_ms"] if "speed" in figures else None
    print(json.dumps({"recall": q.get("recall"), "recall_min_edit": q.get("recall_min_edit"),
                      "false_flag_rate": q.get("false_flag_rate"), "false_flags_lookalike": q.get("false_flags_lookalike"),
                      "lookalike_pairs": q.get("lookalike_pairs"),
                      "false_flags_lookalike_upper95": q.get("false_flags_lookalike_upper95"),
                      "real_copies_in_data": len(q.get("real_copies_in_data", [])), "split": q.get("split"),
                      "query_ms": query_ms, "vectors": n_large,
                      "hash_scan_ms": figures["speed"][f"hash_scan_at_{n_large}"]["scan_ms"] if "speed" in figures else None,
                      "others_cpu_share": others_share(before), **figures}))


if __name__ == "__main__":
    main()

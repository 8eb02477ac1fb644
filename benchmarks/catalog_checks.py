"""Review photos checked against the catalog (issue 26 item 2), measured on real product photos.

Data: the Grocery Store Dataset, github:marcusklasson/GroceryStoreDataset @ fc80ba9 (MIT licence; Klasson et al.,
WACV 2019): 81 products (fruit, vegetables, cartons of juice, milk, yoghurt), each with an iconic shop image and
natural photos taken with a smartphone in grocery stores; many products look alike (five apple varieties, six
milks, ten juices of one brand family). Read from its fetched snapshot (``/work/.mirror``) and cached under
``benchmarks/out/grocery`` (gitignored); the benchmark stops and says so when the snapshot is absent.

* **Catalog** (imported through the real ``catalog_import`` job, product id = the folder): per product its iconic
  image and its first CATALOG_NATURAL photos of the dataset's train list.
* **Splits.** Tune: the dataset's validation photos (every TUNE_EVERY-th); report: the dataset's test photos (every
  REPORT_EVERY-th); fresh: the test photos report leaves out (with other copies: another seed). Thresholds
  (``services.reuse.catalog_checks``) were chosen on tune; the figures quoted are report's. CATALOG_KEYPOINT_AGREE
  was added after report's false copy flags were looked at (its value fixed on tune copies), so fresh, never run
  before it, is quoted beside report.
* **Queries**, each through ``catalog_checks.check_against_catalog`` (what the reuse job runs per photo) on the
  photo decoded and embedded as classification does:
  - genuine: a photo reviewed as its own product (a flag of any kind is a false flag);
  - mismatch: the same photo reviewed as another product: a look-alike (same coarse class) when the product has
    one, else any other; it should be flagged ``mismatch`` (its copy search is the genuine case's: it does not
    depend on the product);
  - copy: a catalog image of a product of the split's parity, edited (``near_duplicates.EDITS``: half size, JPEG
    50, 10% and 25% crop a side, border, caption, screenshot, mirror, brighter, stickers, a perspective tilt; or the
    same bytes), reviewed as its own product or another one (alternately); it should be flagged ``copy`` of that
    catalog image.

    python benchmarks/catalog_checks.py [--quick] [--split report|tune|fresh] [--grid]

The last line is JSON: photos, copy_precision, copy_recall, mismatch_precision, mismatch_recall (look-alikes
and others apart), false_flag_rate, false_flag_upper95 (Clopper-Pearson), with counts and Wilson 95% bounds.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import wilson  # noqa: E402
from near_duplicates import save_edit  # noqa: E402

REPO, COMMIT = "marcusklasson+GroceryStoreDataset", "fc80ba9"
MIRROR = Path("/work/.mirror") / REPO / "repo"
CACHE = Path(__file__).resolve().parent / "out" / "grocery"
CATALOG_NATURAL = 5
TUNE_EVERY, REPORT_EVERY = 1, 2
COPY_EDITS = ("exact", "resize", "jpeg50", "crop", "crop25", "border", "caption", "screenshot", "mirror", "bright",
              "stickers", "perspective")


def ensure_data() -> Path:
    """The dataset folder, extracted from the fetched snapshot once."""
    if not (CACHE / "dataset" / "classes.csv").is_file():
        if not MIRROR.is_dir():
            raise SystemExit(f"the Grocery Store Dataset snapshot is absent: fetch github:{REPO.replace('+', '/')} "
                             f"into {MIRROR.parent}")
        CACHE.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "--git-dir", str(MIRROR), "archive", COMMIT, "dataset", "LICENSE"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(CACHE)], input=archive, check=True)
    return CACHE / "dataset"


def classes(root: Path) -> list[dict[str, str]]:
    with (root / "classes.csv").open() as f:
        rows = list(csv.reader(f))[1:]
    return [{"name": r[0], "id": r[1], "coarse": r[2], "iconic": r[4].lstrip("/")} for r in rows]


def listed(root: Path, name: str) -> list[tuple[Path, str]]:
    out = []
    for line in (root / name).read_text().splitlines():
        if line.strip():
            path, fine, _ = [x.strip() for x in line.split(",")]
            out.append((root / path, fine))
    return out


def upper95(k: int, n: int) -> float | None:
    """One-sided 95% Clopper-Pearson upper bound."""
    if n == 0:
        return None
    from scipy.stats import beta
    return 1.0 if k >= n else round(float(beta.ppf(0.95, k + 1, n - k)), 5)


def build_catalog(work: Path, root: Path, cls: list[dict[str, str]]) -> tuple[Path, set[Path]]:
    """Copy each product's catalog images into work/catalog/<product>/; returns the folder and the natural photos used."""
    by_class: dict[str, list[Path]] = defaultdict(list)
    names = {c["id"]: c["name"] for c in cls}
    for path, fine in listed(root, "train.txt"):
        by_class[names[fine]].append(path)
    used: set[Path] = set()
    folder = work / "catalog"
    for c in cls:
        dst = folder / c["name"]
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "iconic.jpg").write_bytes((root / c["iconic"]).read_bytes())
        for path in sorted(by_class[c["name"]])[:CATALOG_NATURAL]:
            (dst / path.name).write_bytes(path.read_bytes())
            used.add(path)
    return folder, used


def queries(split: str, root: Path, cls: list[dict[str, str]], used: set[Path], quick: bool) -> list[tuple[Path, str]]:
    names = {c["id"]: c["name"] for c in cls}
    if split == "tune":
        photos = [(p, names[f]) for p, f in listed(root, "val.txt")][::TUNE_EVERY]
    elif split == "fresh":  # the test photos the report split leaves out
        photos = [(p, names[f]) for p, f in listed(root, "test.txt")][1::REPORT_EVERY]
    else:
        photos = [(p, names[f]) for p, f in listed(root, "test.txt")][::REPORT_EVERY]
    return photos[:: 4 if quick else 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every 8th photo of the split")
    ap.add_argument("--split", choices=("report", "tune", "fresh"), default="report")
    ap.add_argument("--grid", action="store_true", help="print own/other similarities per threshold pair (tuning)")
    args = ap.parse_args()

    from services.core.config import Workspace, get_settings, set_setting
    from services.core.images import decode
    from services.core.jobs import create_job, get_job, run_job
    from services.core.storage import ObjectStore
    from services.models.embedder import BACKBONE, export_onnx
    from services.models.features import FeatureExtractor
    from services.reuse import catalog_checks as checks
    from services.reuse.catalog import KIND
    from services.reuse.near_copies import ORB_SIDE
    from services.worker import kinds

    kinds.install()
    root = ensure_data()
    cls = classes(root)
    coarse = {c["name"]: c["coarse"] for c in cls}
    names = [c["name"] for c in cls]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ws = Workspace.open(work / "ws")
        export_onnx(ws.models_dir / f"{BACKBONE}.onnx")
        db = ws.db()
        folder, used = build_catalog(work, root, cls)
        set_setting(db, key="storage_roots", value=[str(work.resolve()), str(CACHE.resolve())], actor="system:benchmark")
        job_id = create_job(db, kind=KIND, params={"source": str(folder), "manifest": ""}, actor="system:benchmark")
        run_job(ws, job_id=job_id)
        job = get_job(db, job_id)
        assert job["state"] == "done", job["error"]
        index = checks.CatalogIndex()
        index.sync(db)
        store = ObjectStore(roots=[str(work.resolve()), str(CACHE.resolve())])
        max_pixels = int(get_settings(db)["max_pixels"])
        extractor = FeatureExtractor.shared(ws.models_dir)
        rng = np.random.default_rng(27 if args.split == "fresh" else 26)  # fresh: other copies too
        photos = queries(args.split, root, cls, used, args.quick)
        # copies: catalog images of products of this split's parity (by class index), edited
        parity = 0 if args.split == "tune" else 1
        sources = [(n, str(index.uris[n]), str(index.products[n])) for n in range(len(index))
                   if names.index(str(index.products[n])) % 2 == parity]
        cases: list[dict] = []
        for k, (path, product) in enumerate(photos):
            alike = [c for c in names if coarse[c] == coarse[product] and c != product]
            other = str(rng.choice(alike)) if alike else str(rng.choice([c for c in names if c != product]))
            cases.append({"kind": "genuine", "path": path, "product": product})
            cases.append({"kind": "mismatch", "path": path, "product": other, "lookalike": bool(alike)})
            n, uri, owner = sources[int(rng.integers(len(sources)))]
            edit = COPY_EDITS[k % len(COPY_EDITS)]
            dst = work / "copies" / f"{k}_{edit}.jpg"
            dst.parent.mkdir(exist_ok=True)
            if edit == "exact":
                dst.write_bytes(Path(uri).read_bytes())
            else:
                save_edit(ImageOps.exif_transpose(Image.open(uri)).convert("RGB"), edit, dst)
            reviewed = owner if k % 2 == 0 else str(rng.choice([c for c in names if c != owner]))
            cases.append({"kind": "copy", "path": dst, "product": reviewed, "edit": edit,
                          "source": int(index.ids[n])})
        # decode and embed each distinct photo as classification does
        paths = sorted({c["path"] for c in cases})
        vectors, pictures, shas = {}, {}, {}
        import hashlib
        for start in range(0, len(paths), 32):
            chunk = paths[start:start + 32]
            data = [p.read_bytes() for p in chunk]
            emb = extractor.embed([FeatureExtractor.decode(d, max_pixels=max_pixels) for d in data])
            for p, d, e in zip(chunk, data, emb):
                vectors[p], shas[p] = e, hashlib.sha256(d).hexdigest()
                pictures[p] = decode(d, max_side=ORB_SIDE, max_pixels=max_pixels)
        grid = []
        genuine_flags: dict[Path, list] = {}
        for c in cases:
            p = c["path"]
            if c["kind"] == "mismatch" and not any(f["kind"] == "copy" for f in genuine_flags[p]):
                # the same photo as its genuine case, whose copy search found nothing (it does not depend on the
                # product): what check_against_catalog does next, for the other product
                found = checks.mismatch(index, product=c["product"], sims=index.product_similarities(vectors[p]))
                c["flags"] = [found] if found else []
            elif c["kind"] == "mismatch":
                c["flags"] = genuine_flags[p]
            else:
                c["flags"] = checks.check_against_catalog(index=index, sha256=shas[p], picture=pictures[p],
                                                          vector=vectors[p], product=c["product"], store=store,
                                                          max_pixels=max_pixels)
            if c["kind"] == "genuine":
                genuine_flags[p] = c["flags"]
            if args.grid and c["kind"] in ("genuine", "mismatch"):
                sims = index.product_similarities(vectors[p])
                own = index.products == c["product"]
                grid.append((c["kind"], float(sims[own].max()), float(sims[~own].max())))
        seconds = time.perf_counter() - started
        shown = CACHE.parent / "catalog_checks_flags" / args.split
        shown.mkdir(parents=True, exist_ok=True)
        for k, c in enumerate(x for x in cases if x["kind"] == "genuine" and x["flags"]):
            f = c["flags"][0]
            other = Path(f["detail"] and json.loads(f["detail"]).get("uri") or
                         json.loads(f["detail"])["other"][0]["uri"])
            a, b = Image.open(c["path"]).convert("RGB"), Image.open(other).convert("RGB")
            a.thumbnail((300, 300))
            b.thumbnail((300, 300))
            pair = Image.new("RGB", (610, 300), "white")
            pair.paste(a, (0, 0))
            pair.paste(b, (310, 0))
            pair.save(shown / f"{k:03d}_{f['kind']}_{f['how']}_{c['product']}.jpg")

    def kinds_of(c: dict) -> set[str]:
        return {f["kind"] for f in c["flags"]}

    genuine = [c for c in cases if c["kind"] == "genuine"]
    mism = [c for c in cases if c["kind"] == "mismatch"]
    copies = [c for c in cases if c["kind"] == "copy"]
    false_flags = sum(1 for c in genuine if c["flags"])
    copy_hits = sum(1 for c in copies if any(f["kind"] == "copy" and f["catalog_image_id"] == c["source"] for f in c["flags"]))
    copy_flags = sum(1 for c in cases for f in c["flags"] if f["kind"] == "copy")
    copy_right = sum(1 for c in copies for f in c["flags"] if f["kind"] == "copy" and f["catalog_image_id"] == c["source"])
    mism_hits = sum(1 for c in mism if "mismatch" in kinds_of(c))
    mism_flags = sum(1 for c in genuine + mism if "mismatch" in kinds_of(c))
    by_edit = {e: [sum(1 for c in copies if c["edit"] == e and any(f["kind"] == "copy" for f in c["flags"])),
                   sum(1 for c in copies if c["edit"] == e)] for e in COPY_EDITS}
    look = [c for c in mism if c["lookalike"]]
    result = {
        "split": args.split, "photos": len(photos), "catalog_images": len(index), "products": len(names),
        "copy_recall": round(copy_hits / max(len(copies), 1), 4), "copy_recall_95": wilson(copy_hits, len(copies)),
        "copies": len(copies), "copy_precision": round(copy_right / max(copy_flags, 1), 4),
        "copy_precision_95": wilson(copy_right, copy_flags), "copy_flags": copy_flags,
        "copy_recall_by_edit": by_edit,
        "mismatch_recall": round(mism_hits / max(len(mism), 1), 4), "mismatch_recall_95": wilson(mism_hits, len(mism)),
        "mismatches": len(mism),
        "mismatch_recall_lookalike": [sum(1 for c in look if "mismatch" in kinds_of(c)), len(look)],
        "mismatch_precision": round(mism_hits / max(mism_flags, 1), 4), "mismatch_precision_95": wilson(mism_hits, mism_flags),
        "mismatch_flags": mism_flags,
        "false_flags": false_flags, "genuine": len(genuine),
        "false_flag_rate": round(false_flags / max(len(genuine), 1), 4),
        "false_flag_upper95": upper95(false_flags, len(genuine)),
        "false_flags_by_kind": {k: sum(1 for c in genuine if k in kinds_of(c)) for k in ("copy", "mismatch")},
        "seconds": round(seconds, 1),
    }
    if args.grid:
        arr = np.array([(k == "mismatch", o, x) for k, o, x in grid])
        for margin in (0.1, 0.15, 0.2, 0.25, 0.3):
            for own_max in (0.5, 0.7, 1.01):
                flagged = (arr[:, 2] - arr[:, 1] >= margin) & (arr[:, 1] < own_max)
                tp, fp = int((flagged & (arr[:, 0] == 1)).sum()), int((flagged & (arr[:, 0] == 0)).sum())
                print(f"margin {margin:.2f} own<{own_max:.2f}: recall {tp}/{int(arr[:, 0].sum())} "
                      f"false {fp}/{int((arr[:, 0] == 0).sum())}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

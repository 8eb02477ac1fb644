"""The seller's catalog images: imported from a folder or ``s3://`` prefix with a product id per image, kept apart
from review photos (their own tables, never in ``images``, ``embeddings`` or the similarity index), so a catalog
image is only ever the thing a review photo is compared against (``services.reuse.catalog_checks``).

Product ids come from a manifest CSV (``key,product_id``: the key relative to the prefix, or the image's full
URI) or, without one, from the first folder level under the prefix (``P123/front.jpg`` is product ``P123``).
The ``catalog_import`` job lists the source once and imports each new or changed image (by URI and etag: S3's
ETag, a local file's size and modification time); an image that did not change is not read again, so importing
again adds nothing and a killed import resumes. An image that cannot be read or decoded fails alone, with its
reason, while the others import. Once the catalog changed, every review photo is checked against it again by
the next ``reuse`` job (``images.catalog_checked``). Per image it keeps the sha256, the backbone embedding (unit length) and the
perceptual hashes of the whole image and of its regions (what crops, borders and screenshots keep).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import numpy as np
import sqlite_utils

from services.core import jobs
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, InvalidInput
from services.core.images import IMAGE_SUFFIXES, decode
from services.core.storage import ObjectStore
from services.models.features import FeatureExtractor
from services.reuse.hashes import perceptual_hash, region_hashes
from services.reuse.near_copies import ORB_SIDE

KIND = "catalog_import"
MAX_PRODUCT_ID = 200


def read_manifest(data: bytes, *, name: str) -> dict[str, str]:
    """{key or URI: product id} from a CSV with columns ``key`` (or ``uri``) and ``product_id``. Raises
    InvalidInput for a file without those columns, or a row without a product id (with its line number)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not UTF-8 text: give a CSV with columns key,product_id") from exc
    reader = csv.DictReader(io.StringIO(text))
    fields = {f.strip().lower() for f in reader.fieldnames or []}
    key_field = "key" if "key" in fields else "uri" if "uri" in fields else None
    if key_field is None or "product_id" not in fields:
        raise InvalidInput(f"{name} needs the columns key (or uri) and product_id; it has {', '.join(sorted(fields)) or 'none'}")
    out: dict[str, str] = {}
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        key, product = row.get(key_field, ""), row.get("product_id", "")
        if not key:
            continue
        if not product or len(product) > MAX_PRODUCT_ID:
            raise InvalidInput(f"{name} line {line}: {key} has no product id (or one over {MAX_PRODUCT_ID} characters)")
        out[key.lstrip("/") if key_field == "key" else key] = product
    return out


def plan_import(db: sqlite_utils.Database, *, source: str, store: ObjectStore,
                manifest: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The images under ``source`` to import: new URIs, and known ones whose etag changed; each {uri, product,
    etag, size}. Product ids from ``manifest`` (by key or URI) or else the first folder level; an image with
    neither is listed with product "" (its import fails with the reason). Raises NotFound, InvalidInput or
    StorageError for the source itself."""
    known = {r[0]: (r[1], r[2]) for r in db.execute("SELECT uri, etag, product_id FROM catalog_images")}
    out = []
    for obj in store.list(source, suffixes=IMAGE_SUFFIXES):
        if manifest is not None:
            product = manifest.get(obj.key) or manifest.get(obj.uri) or ""
        else:
            product = obj.key.split("/", 1)[0] if "/" in obj.key else ""
        was = known.get(obj.uri)
        if was is not None and was == (obj.etag, product):
            continue
        out.append({"uri": obj.uri, "product": product, "etag": obj.etag, "size": obj.size})
    return out


def analyse(data: bytes, *, max_pixels: int) -> dict[str, Any]:
    """What is kept of one catalog image but its embedding: sha256, size, the backbone's input (decoded as review
    photos are for classification), the whole
    image's and its regions' hashes. Raises ImageError when the bytes are not a readable image."""
    picture = decode(data, max_side=ORB_SIDE, max_pixels=max_pixels)
    return {"sha256": hashlib.sha256(data).hexdigest(), "picture": picture, "width": picture.width,
            "prepared": FeatureExtractor.prepare(FeatureExtractor.decode(data, max_pixels=max_pixels)),
            "height": picture.height, "hashes": {"": perceptual_hash(picture), **region_hashes(picture)}}


def save(db: sqlite_utils.Database, *, item: dict[str, Any], found: dict[str, Any], vector: np.ndarray,
         job_id: int | None) -> int:
    """Insert or replace one catalog image (by URI) with its hashes; returns its id."""
    unit = (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
    whole = found["hashes"][""]
    row = db.execute("SELECT id FROM catalog_images WHERE uri = ?", [item["uri"]]).fetchone()
    values = [item["product"], item["etag"], item["size"], found["sha256"], unit.tobytes(), whole[0], whole[1],
              found["width"], found["height"], now_iso(), job_id]
    if row:
        image_id = int(row[0])
        db.execute("UPDATE catalog_images SET product_id = ?, etag = ?, size = ?, sha256 = ?, vector = ?, phash = ?, "
                   "phash_mirror = ?, width = ?, height = ?, imported_at = ?, job_id = ? WHERE id = ?", [*values, image_id])
        db.execute("DELETE FROM catalog_hashes WHERE catalog_image_id = ?", [image_id])
    else:
        image_id = int(db.execute(
            "INSERT INTO catalog_images (product_id, etag, size, sha256, vector, phash, phash_mirror, width, height, "
            "imported_at, job_id, uri) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", [*values, item["uri"]]).lastrowid)
    db.conn.executemany("INSERT INTO catalog_hashes (catalog_image_id, region, phash, phash_mirror) VALUES (?, ?, ?, ?)",
                        [(image_id, region, h[0], h[1]) for region, h in found["hashes"].items()])
    return image_id


def summary(db: sqlite_utils.Database) -> dict[str, Any]:
    """{images, products, last_import}: what the catalog holds."""
    images, products, last = db.execute(
        "SELECT COUNT(*), COUNT(DISTINCT product_id), MAX(imported_at) FROM catalog_images").fetchone()
    return {"images": int(images), "products": int(products), "last_import": last}


def start_import(db: sqlite_utils.Database, *, source: str, actor: str, manifest: str = "",
                 product_from: str = "folder") -> int:
    """Queue a ``catalog_import`` job for a folder or ``s3://`` prefix; product ids from ``manifest`` (a CSV
    URI) when ``product_from`` is 'manifest', else from the first folder level. Returns the job id. Raises
    PermissionDenied, InvalidInput (no source, a manifest missing or given without asking for it)."""
    require(db, actor=actor, action="quality.manage")
    source, manifest = source.strip(), manifest.strip()
    if not source:
        raise InvalidInput("give the folder or s3:// prefix that holds the catalog images")
    if product_from not in ("folder", "manifest"):
        raise InvalidInput("product ids come from the 'folder' (first level under the prefix) or a 'manifest' CSV")
    if product_from == "manifest" and not manifest:
        raise InvalidInput("give the manifest CSV (columns key,product_id) that names each image's product")
    params = {"source": source, "manifest": manifest if product_from == "manifest" else ""}
    return jobs.create_job(db, kind=KIND, params=params, actor=actor)


class CatalogImportKind(jobs.BaseKind):
    """Import the catalog images a listing finds new or changed; each batch is embedded together."""

    name = KIND
    batch_size = 16

    def start(self, ctx: jobs.JobContext) -> None:
        ctx.state.update(store=object_store(ctx.db), max_pixels=int(get_settings(ctx.db)["max_pixels"]),
                         extractor=FeatureExtractor.shared(ctx.ws.models_dir))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        store = ctx.state["store"]
        manifest = None
        if ctx.params.get("manifest"):
            manifest = read_manifest(store.read(ctx.params["manifest"]), name=ctx.params["manifest"])
        return [json.dumps(item) for item in plan_import(ctx.db, source=ctx.params["source"], store=store,
                                                         manifest=manifest)]

    def load(self, ctx: jobs.JobContext, items: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for raw in items:
            item = json.loads(raw)
            if not item["product"]:
                out[raw] = (f"{item['uri']}: no product id (not in the manifest, or not in a product folder under "
                            "the prefix)")
                continue
            try:
                out[raw] = (item, analyse(ctx.state["store"].read(item["uri"]), max_pixels=ctx.state["max_pixels"]))
            except ConsoleError as exc:
                out[raw] = f"{item['uri']} skipped: {exc}"
        return out

    def compute(self, ctx: jobs.JobContext, loaded: dict[str, Any]) -> dict[str, Any]:
        good = [k for k, v in loaded.items() if not isinstance(v, str)]
        extractor = ctx.state["extractor"]
        vectors = extractor.embed([loaded[k][1]["picture"] for k in good], [loaded[k][1]["prepared"] for k in good])
        return {"loaded": loaded, "vectors": dict(zip(good, vectors))}

    def write(self, ctx: jobs.JobContext, computed: dict[str, Any]) -> dict[str, str | None]:
        outcome: dict[str, str | None] = {}
        for raw, value in computed["loaded"].items():
            if isinstance(value, str):
                outcome[raw] = value
                continue
            save(ctx.db, item=value[0], found=value[1], vector=computed["vectors"][raw], job_id=ctx.job_id)
            outcome[raw] = None
        if any(v is None for v in outcome.values()):  # the catalog changed: every photo is checked against it again
            ctx.db.execute("UPDATE images SET catalog_checked = 0 WHERE catalog_checked = 1")
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        failed = ctx.db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state = 'failed'",
                                [ctx.job_id]).fetchone()[0]
        return {**summary(ctx.db), "failed": int(failed)}

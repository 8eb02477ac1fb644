"""Review photos checked against the seller's catalog (``services.reuse.catalog``), by the ``reuse`` job beside
the check between reviews (each photo once; ``images.catalog_checked``):

* **a copy of a catalog image**: the same bytes, or an edited copy (resized, recompressed, cropped, framed,
  captioned, pasted in a screenshot). Candidates are catalog images whose whole or region hashes are close to one
  of the photo's probes (its quarter turns, margin-free content, page block) and the nearest catalog embeddings;
  each is confirmed or not by ``services.reuse.near_copies.compare``, strongest evidence first, as between
  reviews. A copy holds the review's credit like a reused photo (``services.reviews.credit_holds``).
* **another product**: the photo's review names a product with catalog images, and the photo looks clearly more
  like another product's images than like any of its own: in the catalog's product space (embeddings whitened by
  the spread of images within one product, ``_within_product_whitening``, so the light, background and shelf that
  vary within a product count less) the best cosine to another product exceeds the best cosine to the reviewed
  product by at least MISMATCH_MARGIN, and the reviewed product's best stays under MISMATCH_OWN_MAX. The flag keeps the nearest images of both products with their similarities, for an admin to
  compare side by side. It does not hold credit: it asks a person to look.

The catalog is held in memory (``CatalogIndex``: unit embeddings and every hash), reloaded when an import changed it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import sqlite_utils
from PIL import Image

from services.core.errors import ConsoleError
from services.core.images import decode
from services.reuse.candidates import (
    CANDIDATE_SIMILARITY,
    MAX_VERIFY,
    NEIGHBOURS,
    WEAK_NEIGHBOURS,
    WEAK_SIMILARITY,
    tier,
)
from services.reuse.hashes import HASH_BITS_NEAR, nearest_bits, probes
from services.reuse.near_copies import ORB_SIDE, compare

# Thresholds chosen on the tune split of benchmarks/catalog_checks.py (see there; reported on the other split).
# Mismatch, in the catalog's product space: tune split (296 photos) flagged 1 genuine photo at 0.25 (2 at 0.20, 10
# at 0.15); the reviewed product's own best similarity added nothing there, so it is not bounded (1.0).
MISMATCH_MARGIN = 0.25
MISMATCH_OWN_MAX = 1.0
WHITEN_SHRINK = 0.1  # tune split: 0.05-0.3 alike, 1.0 worse
SHOWN = 3  # nearest catalog images kept per product for the side-by-side view
# A customer's own photo of a printed package (a carton held in the hand, on another shelf) lines up with a catalog
# photo of the same package under one homography, and the print agrees a little: reviews' 0.2-0.3 (near_copies.AGREE,
# AGREE_MANY_KEYPOINTS) let such photos through as copies. A copy confirmed by keypoints alone must agree at least
# this much here. Tune split of benchmarks/catalog_checks.py: edited catalog images confirmed by keypoints (crops,
# captions, stickers, perspective tilts) agree at 0.44 and more but one (356 copies; a sticker over the middle at
# 0.34). The dataset's other train photos, second shots of the catalog photos' scenes taken moments apart, were
# confirmed as copies 330 times in 2,235, agreeing at 0.2-0.99 (77 under 0.4): a second shot of one scene is beyond
# this check, a photo of the same package elsewhere is not.
CATALOG_KEYPOINT_AGREE = 0.4


class CatalogIndex:
    """Every catalog image's id, product, URI, sha256 and unit embedding, and every hash (whole and regions)."""

    def __init__(self) -> None:
        self.fingerprint: tuple[Any, ...] = ()
        self.ids = np.zeros(0, dtype=np.int64)
        self.products = np.zeros(0, dtype=object)
        self.uris = np.zeros(0, dtype=object)
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.centre = np.zeros(0, dtype=np.float32)
        self.whiten = np.zeros((0, 0), dtype=np.float32)
        self.product_space = np.zeros((0, 0), dtype=np.float32)
        self.by_sha: dict[str, int] = {}
        self.hash_ids = np.zeros(0, dtype=np.int64)
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.mirrors = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.ids)

    def sync(self, db: sqlite_utils.Database) -> bool:
        """Reload when the catalog changed since the last look; returns whether it did."""
        fingerprint = tuple(db.execute("SELECT COUNT(*), MAX(id), MAX(imported_at) FROM catalog_images").fetchone())
        if fingerprint == self.fingerprint:
            return False
        rows = db.execute("SELECT id, product_id, uri, sha256, vector FROM catalog_images ORDER BY id").fetchall()
        self.ids = np.array([r[0] for r in rows], dtype=np.int64)
        self.products = np.array([r[1] for r in rows], dtype=object)
        self.uris = np.array([r[2] for r in rows], dtype=object)
        self.by_sha = {r[3]: r[0] for r in rows}
        self.vectors = (np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows]) if rows
                        else np.zeros((0, 0), dtype=np.float32))
        self.centre, self.whiten = _within_product_whitening(self.vectors, self.products)
        self.product_space = self._to_product_space(self.vectors) if rows else self.vectors
        hashes = db.execute("SELECT catalog_image_id, region, phash, phash_mirror FROM catalog_hashes").fetchall()
        self.hash_ids = np.array([h[0] for h in hashes], dtype=np.int64)
        self.hashes = np.array([h[2] for h in hashes], dtype=np.int64).view(np.uint64)
        self.mirrors = np.array([h[3] for h in hashes], dtype=np.int64).view(np.uint64)
        self.fingerprint = fingerprint
        return True

    def scan(self, values: list[int], *, max_bits: int = HASH_BITS_NEAR) -> dict[int, int]:
        """{catalog image id: closest bits} of images with a hash within ``max_bits`` of a probe (mirror allowed)."""
        if not len(self.hashes) or not values:
            return {}
        best = nearest_bits(self.hashes, self.mirrors, np.array(values, dtype=np.int64).view(np.uint64))
        out: dict[int, int] = {}
        for i in np.flatnonzero(best <= max_bits):
            cid = int(self.hash_ids[i])
            out[cid] = min(out.get(cid, 99), int(best[i]))
        return out

    def _to_product_space(self, vectors: np.ndarray) -> np.ndarray:
        z = (vectors - self.centre) @ self.whiten
        return (z / np.maximum(np.linalg.norm(z, axis=-1, keepdims=True), 1e-12)).astype(np.float32)

    def product_similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine to every catalog image in the catalog's product space (``_within_product_whitening``), in
        ``ids`` order: what tells one product from another."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.float32)
        return self.product_space @ self._to_product_space(vector.astype(np.float32)[None, :])[0]

    def similarities(self, vector: np.ndarray) -> np.ndarray:
        """Cosine of a (unit or not) embedding to every catalog image, in ``ids`` order."""
        if not len(self.ids):
            return np.zeros(0, dtype=np.float32)
        unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return self.vectors @ unit.astype(np.float32)


def _within_product_whitening(vectors: np.ndarray, products: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre, matrix) that whiten the spread of images within one product (regularised by WHITEN_SHRINK of its
    mean variance): directions along which photos of one product differ (light, background, shelf) count less,
    those that tell products apart more. Identity when no product has two images."""
    dims = vectors.shape[1] if vectors.ndim == 2 and len(vectors) else 0
    if not dims:
        return np.zeros(0, dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    centre = vectors.mean(axis=0)
    spread = np.zeros((dims, dims), dtype=np.float64)
    n = 0
    for product in np.unique(products):
        group = vectors[products == product].astype(np.float64)
        if len(group) > 1:
            d = group - group.mean(axis=0)
            spread += d.T @ d
            n += len(group)
    if n == 0 or not np.trace(spread):
        return centre.astype(np.float32), np.eye(dims, dtype=np.float32)
    spread /= n
    spread += np.eye(dims) * WHITEN_SHRINK * np.trace(spread) / dims
    values, vectors_ = np.linalg.eigh(spread)
    return centre.astype(np.float32), (vectors_ / np.sqrt(values)).astype(np.float32)


_indexes: dict[str, CatalogIndex] = {}
_lock = threading.Lock()


def catalog_for(ws: Any) -> CatalogIndex:
    """The workspace's catalog in memory (one per process)."""
    with _lock:
        return _indexes.setdefault(str(ws.root.resolve()), CatalogIndex())


def _nearest(index: CatalogIndex, sims: np.ndarray, rows: np.ndarray) -> list[dict[str, Any]]:
    top = rows[np.argsort(-sims[rows], kind="stable")[:SHOWN]]
    return [{"catalog_image_id": int(index.ids[i]), "uri": str(index.uris[i]), "similarity": round(float(sims[i]), 4)}
            for i in top]


def mismatch(index: CatalogIndex, *, product: str, sims: np.ndarray) -> dict[str, Any] | None:
    """The mismatch flag (not yet written) when the photo looks clearly more like another product than like
    ``product``'s own catalog images; None when it does not, or ``product`` has no catalog image."""
    if not product or not len(index):
        return None
    own = index.products == product
    if not own.any() or own.all():
        return None
    own_rows, other_rows = np.flatnonzero(own), np.flatnonzero(~own)
    own_best = float(sims[own_rows].max())
    best_other = int(other_rows[np.argmax(sims[other_rows])])
    other_best, other_product = float(sims[best_other]), str(index.products[best_other])
    if other_best - own_best < MISMATCH_MARGIN or own_best >= MISMATCH_OWN_MAX:
        return None
    detail = {"product": product, "own_best": round(own_best, 4), "own": _nearest(index, sims, own_rows),
              "other_product": other_product, "other_best": round(other_best, 4),
              "other": _nearest(index, sims, np.flatnonzero(index.products == other_product))}
    reason = (f"the photo looks like catalog product {other_product} ({other_best:.0%} alike) more than the "
              f"reviewed product {product} (at most {own_best:.0%} alike)")
    return {"kind": "mismatch", "how": "embedding", "similarity": round(own_best, 4), "catalog_image_id": None,
            "hash_distance": None, "inliers": None, "reason": reason, "detail": json.dumps(detail)}


def _copy_flag(index: CatalogIndex, *, row: int, product: str, how: str, similarity: float | None,
               hash_distance: int | None, inliers: int | None) -> dict[str, Any]:
    theirs = str(index.products[row])
    whose = ("the reviewed product's own catalog image" if theirs == product
             else f"a catalog image of product {theirs}" + (f" (the review is of {product})" if product else ""))
    edit = "the same bytes as" if how == "bytes" else "an edited copy of"
    return {"kind": "copy", "how": how, "similarity": similarity, "catalog_image_id": int(index.ids[row]),
            "hash_distance": hash_distance, "inliers": inliers, "reason": f"the photo is {edit} {whose}",
            "detail": json.dumps({"product": product, "catalog_product": theirs, "uri": str(index.uris[row])})}


def check_against_catalog(*, index: CatalogIndex, sha256: str, picture: Image.Image, vector: np.ndarray | None,
                          product: str, store: Any, max_pixels: int) -> list[dict[str, Any]]:
    """The catalog flags of one review photo (not yet written): a copy of a catalog image, else a mismatch
    with the reviewed product's images. ``picture`` is the photo decoded at ORB_SIDE; ``vector`` its backbone
    embedding (None: only exact and hash-found copies are looked for). A catalog image that cannot be read now
    is passed over. Raises nothing of its own."""
    if not len(index):
        return []
    row_of = {int(cid): n for n, cid in enumerate(index.ids)}
    if index.by_sha and sha256 in index.by_sha:
        return [_copy_flag(index, row=row_of[index.by_sha[sha256]], product=product, how="bytes", similarity=1.0,
                           hash_distance=0, inliers=None)]
    candidates: dict[int, dict[str, Any]] = {cid: {"bits": bits, "similarity": None}
                                             for cid, bits in index.scan([p.value for p in probes(picture)]).items()}
    sims = index.similarities(vector) if vector is not None else None
    if sims is not None:
        for rank, n in enumerate(np.argsort(-sims, kind="stable")[:NEIGHBOURS]):
            if sims[n] < WEAK_SIMILARITY or (sims[n] < CANDIDATE_SIMILARITY and rank >= WEAK_NEIGHBOURS):
                break
            found = candidates.setdefault(int(index.ids[n]), {"bits": None, "similarity": None})
            found["similarity"] = round(float(sims[n]), 4)

    def strength(cid: int) -> tuple[int, float]:  # the strongest tier first, then the nearest within it
        c = candidates[cid]
        rank = tier(bits=c["bits"], similarity=c["similarity"])
        return rank, (c["bits"] if rank == 0 else -(c["similarity"] or 0.0))

    for cid in sorted(candidates, key=strength)[:MAX_VERIFY]:
        n = row_of[cid]
        try:
            theirs = decode(store.read(str(index.uris[n])), max_side=ORB_SIDE, max_pixels=max_pixels)
        except ConsoleError:
            continue  # the catalog image cannot be read now; it was hashed and embedded when imported
        result = compare(theirs, picture)
        if result.near and (result.how != "keypoints" or result.agreement >= CATALOG_KEYPOINT_AGREE):
            c = candidates[cid]
            return [_copy_flag(index, row=n, product=product, how=result.how, similarity=c["similarity"],
                               hash_distance=result.hash_distance, inliers=result.inliers)]
    if vector is None:
        return []
    found = mismatch(index, product=product, sims=index.product_similarities(vector))
    return [found] if found else []


def check_image(db: sqlite_utils.Database, *, image_id: int, index: CatalogIndex, store: Any,
                max_pixels: int, backbone: str) -> list[dict[str, Any]]:
    """The catalog flags of a stored review photo (see ``check_against_catalog``). Raises ConsoleError when the
    photo itself cannot be read."""
    row = db.execute("SELECT i.sha256, i.uri, r.product FROM images i JOIN reviews r ON r.id = i.review_id "
                     "WHERE i.id = ?", [image_id]).fetchone()
    if row is None or not row[0] or not len(index):
        return []
    sha, uri, product = row
    vec = db.execute("SELECT vector FROM embeddings WHERE sha256 = ? AND backbone = ?", [sha, backbone]).fetchone()
    picture = decode(store.read(uri), max_side=ORB_SIDE, max_pixels=max_pixels)
    return check_against_catalog(index=index, sha256=sha, picture=picture,
                                 vector=np.frombuffer(vec[0], dtype=np.float32) if vec else None,
                                 product=(product or "").strip(), store=store, max_pixels=max_pixels)


def record(db: sqlite_utils.Database, *, image_id: int, flags: list[dict[str, Any]], now: str) -> None:
    """Write a photo's catalog flags (one per kind at most; a flag already there, open or resolved, stays) and
    mark the photo checked against the catalog."""
    for f in flags:
        db.execute("INSERT OR IGNORE INTO reuse_flags (image_id, other_image_id, source, catalog_image_id, kind, how, "
                   "similarity, hash_distance, inliers, same_user, status, created_at, reason, detail) "
                   "VALUES (?, NULL, 'catalog', ?, ?, ?, ?, ?, ?, 0, 'open', ?, ?, ?)",
                   [image_id, f["catalog_image_id"], f["kind"], f["how"], f["similarity"], f["hash_distance"],
                    f["inliers"], now, f["reason"], f["detail"]])
    db.execute("UPDATE images SET catalog_checked = 1 WHERE id = ?", [image_id])

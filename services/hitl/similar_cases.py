"""Similar past cases for inspectors: the photos most like the one on screen that people or the model have
already decided, with how, and whether this photo is flagged as a copy of another."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

import numpy as np
import sqlite_utils

from services.core.authz import require
from services.reuse.similarity import SimilarityIndex

MIN_SIMILARITY = 0.5  # below this a neighbour says little about the photo on screen
UI_CATCH_UP = 2_000  # vectors a page adds to the index at most (about 0.2 s); the reuse job adds the rest
CACHE_SECONDS = 600.0  # a photo's similar cases are searched once per this long, not on every page run
CACHE_ENTRIES = 5_000
_cache: OrderedDict[tuple[str, int, str, int], tuple[float, list[dict[str, Any]]]] = OrderedDict()
_cache_lock = threading.Lock()


def _database_file(db: sqlite_utils.Database) -> str:
    return str(db.execute("PRAGMA database_list").fetchone()[2])


def similar_decided(db: sqlite_utils.Database, *, image_id: int, actor: str, index: SimilarityIndex,
                    k: int = 3) -> list[dict[str, Any]]:
    """Up to ``k`` decided photos of other reviews most like ``image_id``, most similar first: image_id,
    review_id, uri, sha256, label, source (auto or human), decided_by, similarity. [] when the photo has no
    embedding yet. Searched once per photo, embedding backbone and ``k`` in this process (kept CACHE_SECONDS; a
    photo decided meanwhile shows from the next search; an empty answer is not kept). Raises PermissionDenied unless ``actor`` may see
    reviews."""
    require(db, actor=actor, action="reviews.read")
    key = (_database_file(db), int(image_id), index.backbone, int(k))
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            _cache.move_to_end(key)
            return [dict(case) for case in hit[1]]
    out = _search(db, image_id=image_id, index=index, k=k)
    if not out:  # no embedding yet, or nothing decided near it yet: looked for again next time
        return out
    with _cache_lock:
        _cache[key] = (now, [dict(case) for case in out])
        while len(_cache) > CACHE_ENTRIES:
            _cache.popitem(last=False)
    return out


def _search(db: sqlite_utils.Database, *, image_id: int, index: SimilarityIndex, k: int) -> list[dict[str, Any]]:
    index.sync(db, save=False, max_rows=UI_CATCH_UP)  # photos embedded by another process since the last look
    row = db.execute("SELECT i.sha256, i.review_id, e.vector FROM images i JOIN embeddings e ON e.sha256 = i.sha256 "
                     "AND e.backbone = ? WHERE i.id = ?", [index.backbone, image_id]).fetchone()
    if row is None:
        return []
    sha, review_id, vector = row
    out: list[dict[str, Any]] = []
    for near in index.search(db, np.frombuffer(vector, dtype=np.float32), k=4 * k + 1, min_similarity=MIN_SIMILARITY):
        if near.sha256 == sha:
            continue
        found = db.execute(
            "SELECT i.id, i.review_id, i.uri, i.sha256, d.label, d.source, d.decided_by FROM images i "
            "JOIN decisions d ON d.id = i.decision_id WHERE i.sha256 = ? AND i.review_id != ? AND i.status = 'decided' "
            "ORDER BY d.id DESC LIMIT 1", [near.sha256, review_id]).fetchone()
        if found:
            keys = ("image_id", "review_id", "uri", "sha256", "label", "source", "decided_by")
            out.append({**dict(zip(keys, found)), "similarity": round(near.similarity, 3)})
        if len(out) == k:
            break
    return out


def reuse_flag_of(db: sqlite_utils.Database, *, image_id: int, actor: str) -> dict[str, Any] | None:
    """The live reuse flag on this photo (open or confirmed) between reviews, with the earlier photo's review,
    user and uri, or None. Raises PermissionDenied unless ``actor`` may see reviews."""
    require(db, actor=actor, action="reviews.read")
    rows = list(db.query(
        "SELECT f.id, f.kind, f.how, f.status, f.similarity, b.id AS other_image_id, b.review_id AS other_review_id, "
        "b.uri AS other_uri, b.sha256 AS other_sha256, rb.user_id AS other_user_id FROM reuse_flags f "
        "JOIN images b ON b.id = f.other_image_id JOIN reviews rb ON rb.id = b.review_id "
        "WHERE f.image_id = ? AND f.source = 'review' AND f.status IN ('open', 'confirmed') ORDER BY f.id DESC LIMIT 1",
        [image_id]))
    return rows[0] if rows else None


def catalog_flags_of(db: sqlite_utils.Database, *, image_id: int, actor: str) -> list[dict[str, Any]]:
    """The live catalog flags on this photo (open or confirmed: a copy of a catalog image, a mismatch with the
    reviewed product), each with its reason and the catalog images to show (``shown``: uri, sha256, caption).
    Raises PermissionDenied unless ``actor`` may see reviews."""
    require(db, actor=actor, action="reviews.read")
    out = []
    for f in db.query("SELECT f.id, f.kind, f.how, f.status, f.reason, f.detail, c.uri, c.sha256, c.product_id "
                      "FROM reuse_flags f LEFT JOIN catalog_images c ON c.id = f.catalog_image_id WHERE f.image_id = ? "
                      "AND f.source = 'catalog' AND f.status IN ('open', 'confirmed') ORDER BY f.id", [image_id]):
        out.append({**f, "shown": catalog_images_shown(db, flag=f)})
    return out


def catalog_images_shown(db: sqlite_utils.Database, *, flag: dict[str, Any]) -> list[dict[str, Any]]:
    """The catalog images a catalog flag shows side by side: the copied image, or for a mismatch the nearest
    images of the reviewed product and of the product the photo looks like; each {uri, sha256, caption}."""
    if flag["kind"] != "mismatch":
        if not flag.get("uri"):
            return []
        return [{"uri": flag["uri"], "sha256": flag["sha256"], "caption": f"catalog image of {flag['product_id']}"}]
    detail = json.loads(flag["detail"] or "{}")
    out = []
    for side, product in (("own", detail.get("product")), ("other", detail.get("other_product"))):
        for near in detail.get(side, []):
            sha = db.execute("SELECT sha256 FROM catalog_images WHERE id = ?", [near["catalog_image_id"]]).fetchone()
            out.append({"uri": near["uri"], "sha256": sha[0] if sha else "", "side": side,
                        "caption": f"{'reviewed' if side == 'own' else 'looks like'} {product}: "
                                   f"{near['similarity']:.0%} alike"})
    return out

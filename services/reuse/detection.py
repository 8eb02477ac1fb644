"""Reused photos: the same photo, or an edited copy of it, submitted with different reviews.

The ``reuse`` job kind checks every embedded photo once (``images.reuse_checked``), so a crashed check
resumes where it stopped. For each photo: other reviews' photos with the same bytes are exact copies; else the
candidates are the stored photos whose whole-photo or region hashes are close to one of the photo's probes
(``services.reuse.hashes``: its quarter turns, its margin-free content, a page block, its textured quarters) and the nearest stored
embeddings (``services.reuse.similarity``, cosine at least CANDIDATE_SIMILARITY, the nearest few at least
WEAK_SIMILARITY: stickers move an embedding far); each is confirmed or not by
``services.reuse.near_copies`` (an alignment, then the fine detail under it), strongest evidence first. The
photo's own region hashes are stored for later photos. A flag records the pair; while it is open, and with
``hold_credit_on_reuse`` on, the review's credit is held (``held_reviews``) until an admin clears or confirms it.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import sqlite_utils
from PIL import Image

from db.database import immediate
from services.core import jobs
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings, object_store
from services.core.errors import ConsoleError, InvalidInput, NotFound
from services.core.images import decode
from services.models.features import FeatureExtractor
from services.reuse import catalog_checks
from services.reuse.candidates import (
    CANDIDATE_SIMILARITY,
    MAX_VERIFY,
    NEIGHBOURS,
    WEAK_NEIGHBOURS,
    WEAK_SIMILARITY,
    tier,
)
from services.reuse.hashes import REGION_SEP, HashIndex, perceptual_hash, probes, region_boxes, region_hashes
from services.reuse.near_copies import ORB_SIDE, Comparison, Hint, compare
from services.reuse.regions import Box
from services.reuse.similarity import SimilarityIndex

EARLIER_CHECKS = 3  # once a copy is confirmed, earlier candidates still checked (the first appearance is flagged)
KIND = "reuse"
JOB_LIMIT = 2000  # photos one reuse job checks at most; the worker queues the next


def index_for(ws: Any) -> SimilarityIndex:
    """The workspace's similarity index for the current backbone (one per process)."""
    return SimilarityIndex.shared(ws.root / "index", FeatureExtractor.backbone)


_hash_indexes: dict[str, HashIndex] = {}
_hash_lock = threading.Lock()


def hashes_for(ws: Any) -> HashIndex:
    """The workspace's perceptual hashes in memory (one per process)."""
    with _hash_lock:
        return _hash_indexes.setdefault(str(ws.root.resolve()), HashIndex())


def _hashes(db: sqlite_utils.Database, sha: str) -> tuple[int, int] | None:
    row = db.execute("SELECT phash, phash_mirror FROM image_hashes WHERE sha256 = ?", [sha]).fetchone()
    return (row[0], row[1]) if row else None


def _picture(store: Any, uri: str, max_pixels: int) -> Image.Image:
    return decode(store.read(uri), max_side=ORB_SIDE, max_pixels=max_pixels)


def _store_regions(db: sqlite_utils.Database, sha: str, picture: Image.Image) -> None:
    """The hashes of this photo's regions, for later photos to meet (rows ``<sha256>#<region>``)."""
    for name, (value, mirror) in region_hashes(picture, quarters=True).items():
        db.execute("INSERT OR IGNORE INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)",
                   [f"{sha}{REGION_SEP}{name}", value, mirror])


def _same_user(theirs: str | None, mine: str | None) -> int:
    """1 when both photos came from one known customer account (photos without one are never the same account)."""
    return int(theirs is not None and theirs != "" and theirs == mine)


def _region_box(picture: Image.Image, region: str) -> Box:
    if region:
        box = region_boxes(picture, quarters=True).get(region)
        if box is not None:
            return box
    return 0, 0, picture.width, picture.height


def check_image(db: sqlite_utils.Database, *, image_id: int, index: SimilarityIndex, hashes: HashIndex,
                store: Any, max_pixels: int) -> list[dict[str, Any]]:
    """The flag to record (a list of at most one, not yet written) when this photo copies a photo that came in
    earlier with another review: the same bytes, or an edited copy. Stores the hashes of the photo's regions
    for later photos. Raises ConsoleError when the photo itself cannot be read."""
    row = db.execute("SELECT i.id, i.sha256, i.uri, i.review_id, r.user_id FROM images i JOIN reviews r "
                     "ON r.id = i.review_id WHERE i.id = ?", [image_id]).fetchone()
    if row is None or not row[1]:
        return []
    _, sha, uri, review_id, user_id = row
    picture = _picture(store, uri, max_pixels)
    mine = _hashes(db, sha)
    if mine is None:  # classified before hashes were stored
        mine = perceptual_hash(picture)
        db.execute("INSERT OR IGNORE INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", [sha, *mine])
    _store_regions(db, sha, picture)
    # only photos that came in earlier (lower id) in other reviews: the later photo is the suspect, and it is
    # flagged once, against the first appearance found
    exact = db.execute("SELECT i.id, r.user_id FROM images i JOIN reviews r ON r.id = i.review_id "
                       "WHERE i.sha256 = ? AND i.review_id != ? AND i.id < ? ORDER BY i.id LIMIT 1",
                       [sha, review_id, image_id]).fetchone()
    if exact:
        return [{"other_image_id": exact[0], "kind": "exact", "how": "bytes", "similarity": 1.0, "hash_distance": 0,
                 "inliers": None, "same_user": _same_user(exact[1], user_id)}]
    vec = db.execute("SELECT vector FROM embeddings WHERE sha256 = ? AND backbone = ?", [sha, index.backbone]).fetchone()
    if vec is None:
        return []
    candidates: dict[int, dict[str, Any]] = {}  # other image id -> what found it

    def earliest(other_sha: str) -> tuple[int, str, str] | None:
        return db.execute("SELECT i.id, i.uri, r.user_id FROM images i JOIN reviews r ON r.id = i.review_id "
                          "WHERE i.sha256 = ? AND i.review_id != ? AND i.id < ? AND i.status != 'failed' "
                          "ORDER BY i.id LIMIT 1", [other_sha, review_id, image_id]).fetchone()

    hashes.sync(db)  # the regions of photos checked since the job started
    mine_probes = probes(picture, quarters=True)
    for hit in hashes.scan(db, [p.value for p in mine_probes], limits=[p.max_bits for p in mine_probes]):
        if hit.sha256 != sha and (other := earliest(hit.sha256)):
            found = candidates.setdefault(other[0], {"uri": other[1], "user": other[2], "sha": hit.sha256,
                                                     "bits": hit.bits, "similarity": None, "hits": []})
            found["bits"] = min(found["bits"], hit.bits)
            found["hits"].append(hit)
    nearest = index.search(db, np.frombuffer(vec[0], dtype=np.float32), k=NEIGHBOURS + 1,
                           min_similarity=WEAK_SIMILARITY)
    for rank, near in enumerate(nearest):
        if near.similarity < CANDIDATE_SIMILARITY and rank > WEAK_NEIGHBOURS:
            break  # most similar first: only the nearest few are candidates below CANDIDATE_SIMILARITY
        if near.sha256 != sha and (other := earliest(near.sha256)):
            found = candidates.setdefault(other[0], {"uri": other[1], "user": other[2], "sha": near.sha256,
                                                     "bits": None, "hits": []})
            found["similarity"] = round(near.similarity, 4)
    # strong evidence first (a hash within HASH_BITS_STRONG, then an embedding at STRONG_SIMILARITY), the earliest
    # photo first within each: a copy is flagged against the first appearance, not a later copy of it
    order = sorted(candidates, key=lambda i: (tier(bits=candidates[i]["bits"], similarity=candidates[i]["similarity"]), i))
    budget = MAX_VERIFY
    confirmed: tuple[int, Comparison] | None = None
    for other_id in order:
        if budget <= 0:
            break
        if confirmed is not None and other_id > confirmed[0]:
            continue  # after a copy is found, only an earlier photo could take its place
        c = candidates[other_id]
        try:
            theirs = _picture(store, c["uri"], max_pixels)
        except ConsoleError:
            continue  # the other photo cannot be read now (it was checked itself when it came in)
        budget -= 1
        hints = [Hint(_region_box(theirs, h.region), mine_probes[h.probe].box, mine_probes[h.probe].turns, h.mirrored,
                      h.bits) for h in c["hits"]]
        result = compare(theirs, picture, hints=hints)
        if result.near:
            confirmed = (other_id, result)
            budget = min(budget, EARLIER_CHECKS)  # a later copy of the first appearance may have come first
    if confirmed is None:
        return []
    other_id, result = confirmed
    c = candidates[other_id]
    return [{"other_image_id": other_id, "kind": "near", "how": result.how, "similarity": c["similarity"],
             "hash_distance": result.hash_distance, "inliers": result.inliers, "same_user": _same_user(c["user"], user_id)}]


# a photo the reuse job checks: not yet against other reviews, or not yet against a catalog that has images
UNCHECKED_SQL = ("(i.reuse_checked != 1 OR (i.catalog_checked = 0 AND EXISTS (SELECT 1 FROM catalog_images))) "
                 "AND i.status != 'failed'")


def unchecked_count(db: sqlite_utils.Database) -> int:
    """Embedded photos not yet checked for reuse (against other reviews, or against the catalog)."""
    return int(db.execute(f"SELECT COUNT(*) FROM images i WHERE {UNCHECKED_SQL} AND "
                          "EXISTS (SELECT 1 FROM embeddings e WHERE e.sha256 = i.sha256 AND e.backbone = ?)",
                          [FeatureExtractor.backbone]).fetchone()[0])


def _record(db: sqlite_utils.Database, image_id: int, flags: list[dict[str, Any]] | None,
            catalog: list[dict[str, Any]]) -> None:
    now = now_iso()
    catalog_checks.record(db, image_id=image_id, flags=catalog, now=now)
    if flags is None:  # checked against other reviews before: the catalog alone was checked now
        return
    for f in flags:
        db.execute("INSERT OR IGNORE INTO reuse_flags (image_id, other_image_id, kind, how, similarity, hash_distance, "
                   "inliers, same_user, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                   [image_id, f["other_image_id"], f["kind"], f["how"], f["similarity"], f["hash_distance"],
                    f["inliers"], f["same_user"], now])
    db.execute("UPDATE images SET reuse_checked = 1 WHERE id = ?", [image_id])


class ReuseKind(jobs.BaseKind):
    """Check every embedded photo not yet checked; each batch's flags are written in one transaction."""

    name = KIND
    batch_size = 32

    def start(self, ctx: jobs.JobContext) -> None:
        index, hashes, catalog = index_for(ctx.ws), hashes_for(ctx.ws), catalog_checks.catalog_for(ctx.ws)
        index.sync(ctx.db)
        hashes.sync(ctx.db)
        catalog.sync(ctx.db)
        ctx.state.update(index=index, hashes=hashes, catalog=catalog, store=object_store(ctx.db),
                         max_pixels=int(get_settings(ctx.db)["max_pixels"]))

    def list_items(self, ctx: jobs.JobContext) -> list[str]:
        # new photos first (their credit waits), then any backlog of photos classified before the check existed;
        # at most JOB_LIMIT a job, so other jobs get their turn on the worker between backlog jobs
        rows = ctx.db.execute("SELECT i.id FROM images i JOIN embeddings e ON e.sha256 = i.sha256 AND e.backbone = ? "
                              f"WHERE {UNCHECKED_SQL} ORDER BY i.reuse_checked = 1, i.reuse_checked, i.id LIMIT ?",
                              [ctx.state["index"].backbone, JOB_LIMIT]).fetchall()
        return [str(r[0]) for r in rows]

    def compute(self, ctx: jobs.JobContext, items: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ctx.state["catalog"].sync(ctx.db)  # an import finished while this job ran
        for item in items:
            done = ctx.db.execute("SELECT reuse_checked = 1 FROM images WHERE id = ?", [int(item)]).fetchone()
            try:
                flags = None if done and done[0] else check_image(
                    ctx.db, image_id=int(item), index=ctx.state["index"], hashes=ctx.state["hashes"],
                    store=ctx.state["store"], max_pixels=ctx.state["max_pixels"])
                catalog = catalog_checks.check_image(ctx.db, image_id=int(item), index=ctx.state["catalog"],
                                                     store=ctx.state["store"], max_pixels=ctx.state["max_pixels"],
                                                     backbone=ctx.state["index"].backbone)
                out[item] = (flags, catalog)
            except ConsoleError as exc:
                out[item] = str(exc)
        return out

    def write(self, ctx: jobs.JobContext, computed: dict[str, Any]) -> dict[str, str | None]:
        outcome: dict[str, str | None] = {}
        with immediate(ctx.db):
            for item, flags in computed.items():
                if isinstance(flags, str):
                    outcome[item] = flags  # unreadable now: left unchecked, tried again by the next run
                    continue
                _record(ctx.db, int(item), *flags)
                outcome[item] = None
        return outcome

    def finish(self, ctx: jobs.JobContext) -> dict[str, Any]:
        n = ctx.db.execute("SELECT COUNT(*) FROM reuse_flags WHERE status = 'open'").fetchone()[0]
        return {"open_flags": n, "indexed": len(ctx.state["index"]), "catalog_images": len(ctx.state["catalog"])}




def list_flags(db: sqlite_utils.Database, *, actor: str, status: str | None = "open", limit: int = 200) -> list[dict[str, Any]]:
    """Flags, newest first: pairs of review photos (``source`` 'review', both photos' review, user and URI) and
    review photos flagged against the catalog (``source`` 'catalog': a copy names its catalog image, a mismatch
    keeps the nearest catalog images in ``detail``), each with its ``reason``. Raises PermissionDenied."""
    require(db, actor=actor, action="quality.manage")
    where, params = ("WHERE f.status = ?", [status]) if status else ("", [])
    return list(db.query(
        "SELECT f.*, a.review_id, a.uri, a.sha256, ra.user_id, ra.product, b.review_id AS other_review_id, "
        "b.uri AS other_uri, b.sha256 AS other_sha256, rb.user_id AS other_user_id, c.uri AS catalog_uri, "
        "c.sha256 AS catalog_sha256, c.product_id AS catalog_product FROM reuse_flags f "
        "JOIN images a ON a.id = f.image_id JOIN reviews ra ON ra.id = a.review_id "
        "LEFT JOIN images b ON b.id = f.other_image_id LEFT JOIN reviews rb ON rb.id = b.review_id "
        "LEFT JOIN catalog_images c ON c.id = f.catalog_image_id "
        f"{where} ORDER BY f.id DESC LIMIT ?", [*params, int(limit)]))


def accounts_involved(db: sqlite_utils.Database, *, actor: str) -> list[dict[str, Any]]:
    """Per customer account: flagged pairs it is part of (open and all). Raises PermissionDenied."""
    require(db, actor=actor, action="quality.manage")
    return list(db.query(
        "WITH sides AS (SELECT f.id, f.status, ra.user_id AS user_id FROM reuse_flags f JOIN images a ON a.id = f.image_id "
        "JOIN reviews ra ON ra.id = a.review_id UNION SELECT f.id, f.status, rb.user_id FROM reuse_flags f "
        "JOIN images b ON b.id = f.other_image_id JOIN reviews rb ON rb.id = b.review_id) "
        "SELECT user_id, COUNT(*) AS pairs, SUM(status = 'open') AS open, SUM(status = 'confirmed') AS confirmed "
        "FROM sides GROUP BY user_id ORDER BY open DESC, pairs DESC"))


def resolve(db: sqlite_utils.Database, *, flag_id: int, status: str, actor: str, note: str = "") -> None:
    """Clear a flag (not a reuse: credit flows again) or confirm it (a reuse: credit stays held); audited.
    Raises PermissionDenied, NotFound, InvalidInput."""
    require(db, actor=actor, action="quality.manage")
    if status not in ("cleared", "confirmed"):
        raise InvalidInput("a flag is resolved as 'cleared' or 'confirmed'")
    with immediate(db):
        if db.execute("UPDATE reuse_flags SET status = ?, resolved_by = ?, resolved_at = ?, note = ? WHERE id = ?",
                      [status, actor, now_iso(), note.strip() or None, flag_id]).rowcount == 0:
            raise NotFound(f"no reuse flag {flag_id}")
        record(db, actor=actor, action=f"reuse.{status}", target=f"reuse_flag:{flag_id}", detail={"note": note.strip()})

"""Credit held for reused photos: with ``hold_credit_on_reuse`` on, a review earns no credit while one of its
photos waits for the reused-photo check (``services.reuse.detection``) or is flagged as a copy (open or confirmed)
of another review's photo or of a catalog image, so a copy is flagged before any credit is granted. Clearing the flag lets the credit through."""

from __future__ import annotations

import sqlite_utils

from services.core.config import get_settings

WAITING = "credit held: a photo waits for the reused-photo check"
FLAGGED = "credit held: a photo is flagged as reused from another review (an admin can clear it under Label quality)"
CATALOG = ("credit held: a photo is flagged as a copy of a catalog image (an admin can clear it under Reused & "
           "catalog photos)")

# the flags that hold credit: copies, of another review's photo or of a catalog image (a photo that only looks
# like another product, a mismatch, asks a person to look but holds nothing)
HOLDING = "status IN ('open', 'confirmed') AND kind != 'mismatch'"

# per image: 1 while its credit is held (classified, not yet checked; or the later photo of a live flag)
HELD_SQL = ("(i.reuse_checked = 0 AND i.status IN ('queued', 'decided') AND EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.sha256 = i.sha256)) OR i.id IN "
            f"(SELECT image_id FROM reuse_flags WHERE {HOLDING})")


def hold_active(db: sqlite_utils.Database) -> bool:
    return bool(get_settings(db)["hold_credit_on_reuse"])


def held_reviews(db: sqlite_utils.Database, review_ids: list[str] | None = None) -> dict[str, str]:
    """{review_id: why its credit is held} (empty when holding is off)."""
    if not hold_active(db):
        return {}
    where, params = "", []
    if review_ids is not None:
        if not review_ids:
            return {}
        where, params = f"AND i.review_id IN ({','.join('?' * len(review_ids))})", list(review_ids)
    out: dict[str, str] = {}
    for rid, flagged, catalog in db.execute(
            f"SELECT i.review_id, MAX(i.id IN (SELECT image_id FROM reuse_flags WHERE {HOLDING} AND source = 'review')), "
            f"MAX(i.id IN (SELECT image_id FROM reuse_flags WHERE {HOLDING} AND source = 'catalog')) "
            f"FROM images i WHERE ({HELD_SQL}) {where} GROUP BY i.review_id", params):
        out[rid] = FLAGGED if flagged else CATALOG if catalog else WAITING
    return out

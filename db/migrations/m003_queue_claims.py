"""Migration 003: leases on queued photos."""

from __future__ import annotations

import sqlite_utils


def m003_queue_claims(db: sqlite_utils.Database) -> None:
    """Leases on queued photos: an inspector holds one until they decide, skip, or it expires."""
    db["queue_claims"].create(
        {"image_id": int, "inspector": str, "claimed_at": str, "lease_expires": float},
        pk="image_id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["queue_claims"].create_index(["inspector"])
    db["images"].create_index(["status", "queue_reason"], index_name="idx_images_queue")

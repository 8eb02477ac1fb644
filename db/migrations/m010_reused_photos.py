"""Migration 010: reused photos."""

from __future__ import annotations

import sqlite_utils


def m010_reused_photos(db: sqlite_utils.Database) -> None:
    """Reused photos: a perceptual hash per photo content, a flag per pair of photos found to be copies
    (exact bytes or an edited copy) across reviews, and which photos have been checked."""
    db["image_hashes"].create({"sha256": str, "phash": int, "phash_mirror": int}, pk="sha256")
    db["images"].add_column("reuse_checked", int, not_null_default=0)
    # photos classified before this check existed are checked too (2), but their credit is not held meanwhile
    db.execute("UPDATE images SET reuse_checked = 2 WHERE status IN ('queued', 'decided')")
    db.execute("CREATE INDEX idx_images_reuse_unchecked ON images (id) WHERE reuse_checked != 1")
    db["reuse_flags"].create(
        {
            "id": int,
            "image_id": int,  # the later photo
            "other_image_id": int,  # the earlier photo it copies
            "kind": str,  # exact | near
            "how": str,  # bytes | hash | keypoints
            "similarity": float,  # embedding cosine (None for exact copies)
            "hash_distance": int,
            "inliers": int,
            "same_user": int,
            "status": str,  # open | cleared | confirmed
            "created_at": str,
            "resolved_by": str,
            "resolved_at": str,
            "note": str,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id"), ("other_image_id", "images", "id")],
    )
    db["reuse_flags"].create_index(["image_id", "other_image_id"], unique=True)
    db["reuse_flags"].create_index(["status", "id"])

"""Migration 021: the seller's catalog images, and review photos flagged against them (issue 26 item 2)."""

from __future__ import annotations

import sqlite_utils


def m021_catalog_photos(db: sqlite_utils.Database) -> None:
    """``catalog_images``: one row per imported catalog image (its URI, product id, the etag and sha256 an
    incremental import compares, and its embedding and perceptual hashes, kept apart from review photos so a
    catalog image is never checked or flagged as a review). ``catalog_hashes``: the hashes of each image's regions
    (whole, margin-free content, page block, centre windows). ``reuse_flags`` gains ``source`` ('review' or
    'catalog'), ``catalog_image_id`` (the catalog image copied), ``reason`` (a readable sentence) and ``detail``
    (JSON: for a mismatch, the nearest catalog images of the reviewed product and of the best other product).
    ``other_image_id`` is NULL on catalog flags. ``images.catalog_checked``: 1 once the photo was checked against
    the catalog (the reuse job does both; a killed job resumes)."""
    db["catalog_images"].create(
        {"id": int, "uri": str, "product_id": str, "etag": str, "size": int, "sha256": str, "vector": bytes,
         "phash": int, "phash_mirror": int, "width": int, "height": int, "imported_at": str, "job_id": int},
        pk="id", not_null={"uri", "product_id", "sha256"})
    db["catalog_images"].create_index(["uri"], unique=True)
    db["catalog_images"].create_index(["product_id"])
    db["catalog_images"].create_index(["sha256"])
    db["catalog_hashes"].create({"id": int, "catalog_image_id": int, "region": str, "phash": int, "phash_mirror": int},
                                pk="id", foreign_keys=[("catalog_image_id", "catalog_images", "id")])
    db["catalog_hashes"].create_index(["catalog_image_id"])
    db["reuse_flags"].add_column("source", str, not_null_default="review")
    db["reuse_flags"].add_column("catalog_image_id", int)
    db["reuse_flags"].add_column("reason", str)
    db["reuse_flags"].add_column("detail", str)
    db.execute("CREATE UNIQUE INDEX idx_reuse_flags_catalog ON reuse_flags (image_id, kind) WHERE source = 'catalog'")
    db["images"].add_column("catalog_checked", int, not_null_default=0)

"""Migration 007: dataset filtering jobs and their yes/no checks."""

from __future__ import annotations

import sqlite_utils


def m007_dataset_filter(db: sqlite_utils.Database) -> None:
    """Dataset filtering jobs: one row per scanned image (its outcome, the copy made), and the yes/no
    checks people make on images whose confidence falls in the human band."""
    db["filter_results"].create(
        {
            "job_id": int,
            "uri": str,  # source object
            "seq": int,  # position in the scan order (early stopping counts misses in this order)
            "label": str,  # best matching wanted label
            "confidence": float,
            "outcome": str,  # kept | rejected | band | failed | skipped
            "detail": str,  # JSON: matched class names, boxes, image size, error
            "copied_to": str,  # destination object, once copied
            "created_at": str,
        },
        pk=("job_id", "uri"),
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["filter_results"].create_index(["job_id", "seq"])
    db["filter_results"].create_index(["job_id", "outcome"])
    db["filter_checks"].create(
        {
            "id": int,
            "job_id": int,
            "uri": str,
            "label": str,
            "confidence": float,
            "status": str,  # open | yes | no
            "claimed_by": str,
            "lease_expires": float,
            "answered_by": str,
            "answered_at": str,
            "copied_to": str,
        },
        pk="id",
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["filter_checks"].create_index(["job_id", "uri"], unique=True)
    db["filter_checks"].create_index(["status", "id"])

"""Migration 001: the core tables (reviews, photos, models, decisions, labels, jobs, settings, audit log)."""

from __future__ import annotations

import sqlite_utils


def m001_core_schema(db: sqlite_utils.Database) -> None:
    """The first schema, one step per group of tables, in this order (all in the migration's one transaction)."""
    _create_reviews_and_images(db)
    _create_models_and_predictions(db)
    _create_decisions(db)
    _create_labels(db)
    _create_jobs(db)
    _create_settings_and_audit_log(db)


def _create_reviews_and_images(db: sqlite_utils.Database) -> None:
    """Reviews and their photos: one row per photo, unique per review by content and by URI."""
    db["reviews"].create(
        {
            "id": str,
            "review_type": str,
            "product": str,
            "user_id": str,
            "submitted_at": str,
            "text": str,
            "batch": str,
            "created_at": str,
        },
        pk="id",
    )
    db["images"].create(
        {
            "id": int,
            "review_id": str,
            "uri": str,
            "sha256": str,
            "size": int,
            "width": int,
            "height": int,
            "status": str,  # pending | queued | decided | failed
            "queue_reason": str,  # no_model | low_confidence | audit
            "error": str,
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("review_id", "reviews", "id")],
    )
    db["images"].create_index(["review_id", "sha256"], unique=True)
    db["images"].create_index(["review_id", "uri"], unique=True)
    db["images"].create_index(["status"])
    db["images"].create_index(["sha256"])


def _create_models_and_predictions(db: sqlite_utils.Database) -> None:
    """Model versions, cached embeddings per photo content and backbone, and predictions."""
    db["model_versions"].create(
        {
            "id": int,
            "name": str,
            "created_at": str,
            "backbone": str,
            "classes": str,  # JSON list
            "hyperparams": str,  # JSON
            "metrics": str,  # JSON
            "thresholds": str,  # JSON {class: threshold}
            "training_data": str,  # JSON
            "path": str,
            "active": int,
        },
        pk="id",
    )
    db["embeddings"].create(
        {"sha256": str, "backbone": str, "vector": bytes, "cues": str, "created_at": str},
        pk=("sha256", "backbone"),
    )
    db["predictions"].create(
        {
            "id": int,
            "image_id": int,
            "model_version_id": int,
            "label": str,
            "confidence": float,
            "probabilities": str,  # JSON {class: p}
            "created_at": str,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id"), ("model_version_id", "model_versions", "id")],
    )
    db["predictions"].create_index(["image_id"])


def _create_decisions(db: sqlite_utils.Database) -> None:
    """Decisions on photos, append-only (triggers refuse updates and deletes)."""
    db["decisions"].create(
        {
            "id": int,
            "image_id": int,
            "label": str,
            "credit": int,
            "reason": str,
            "source": str,  # auto | human
            "decided_by": str,
            "decided_at": str,
            "prediction_id": int,
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["decisions"].create_index(["image_id", "id"])
    db.executescript(
        """
        CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
        CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
        BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
        """
    )


def _create_labels(db: sqlite_utils.Database) -> None:
    """Known labels by photo content, from folders, ground truth or decisions."""
    db["labels"].create(
        {
            "id": int,
            "uri": str,
            "sha256": str,
            "label": str,
            "source": str,  # folder | groundtruth | decision
            "imported_at": str,
        },
        pk="id",
    )
    db["labels"].create_index(["sha256", "source"], unique=True)


def _create_jobs(db: sqlite_utils.Database) -> None:
    """Background jobs and their items."""
    db["jobs"].create(
        {
            "id": int,
            "kind": str,
            "params": str,
            "state": str,  # queued | running | cancelling | cancelled | done | failed
            "total": int,
            "done": int,
            "failed": int,
            "error": str,
            "result": str,
            "created_by": str,
            "created_at": str,
            "started_at": str,
            "finished_at": str,
            "heartbeat_at": str,
            "lease_owner": str,
            "lease_expires": float,
        },
        pk="id",
    )
    db["jobs"].create_index(["state"])
    db["job_items"].create(
        {"job_id": int, "item": str, "state": str, "error": str, "updated_at": str},
        pk=("job_id", "item"),
        foreign_keys=[("job_id", "jobs", "id")],
    )
    db["job_items"].create_index(["job_id", "state"])


def _create_settings_and_audit_log(db: sqlite_utils.Database) -> None:
    """Settings, and the audit log (append-only)."""
    db["settings"].create({"key": str, "value": str, "updated_at": str, "updated_by": str}, pk="key")
    db["audit_log"].create(
        {"id": int, "at": str, "actor": str, "action": str, "target": str, "detail": str},
        pk="id",
    )
    db.executescript(
        """
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        """
    )

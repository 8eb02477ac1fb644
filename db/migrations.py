"""Every schema change, in order. Applied at start-up by ``connect``; each runs once, in a transaction.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_core_schema(db: sqlite_utils.Database) -> None:
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


@migration
def m002_latest_decision_on_images(db: sqlite_utils.Database) -> None:
    """Point each image at its latest decision, so pages and exports join in O(1) per row."""
    db.execute("ALTER TABLE images ADD COLUMN decision_id INTEGER REFERENCES decisions(id)")
    db.execute("UPDATE images SET decision_id = (SELECT MAX(id) FROM decisions WHERE image_id = images.id)")
    db.execute("CREATE INDEX idx_images_decision_id ON images (decision_id)")
    db.execute("CREATE INDEX idx_images_created_at ON images (created_at)")


@migration
def m003_queue_claims(db: sqlite_utils.Database) -> None:
    """Leases on queued photos: an inspector holds one until they decide, skip, or it expires."""
    db["queue_claims"].create(
        {"image_id": int, "inspector": str, "claimed_at": str, "lease_expires": float},
        pk="image_id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["queue_claims"].create_index(["inspector"])
    db["images"].create_index(["status", "queue_reason"], index_name="idx_images_queue")


QUEUE_ORDER = (
    "CASE queue_reason WHEN 'audit' THEN 0 WHEN 'rereview' THEN 0 WHEN 'low_confidence' THEN 1 "
    "WHEN 'adjudication' THEN 3 ELSE 2 END"
)


@migration
def m004_several_inspectors(db: sqlite_utils.Database) -> None:
    """Several inspectors per photo: claims per (photo, inspector), every answer kept, gold items,
    consensus and inspector reliability, an append-only event history, queue-size snapshots.

    ``images.submitted_at`` copies the review's time (a trigger keeps it) so the queue order
    (priority, oldest first) is one partial index: claim-next reads its first eligible row.
    """
    db.execute("ALTER TABLE images ADD COLUMN submitted_at TEXT")
    db.execute("ALTER TABLE images ADD COLUMN required_answers INTEGER")  # set at first claim; NULL = 1
    db.execute("UPDATE images SET submitted_at = (SELECT submitted_at FROM reviews WHERE reviews.id = images.review_id)")
    db.executescript(
        """
        CREATE TRIGGER images_submitted_at AFTER INSERT ON images WHEN NEW.submitted_at IS NULL
        BEGIN UPDATE images SET submitted_at = (SELECT submitted_at FROM reviews WHERE id = NEW.review_id)
              WHERE id = NEW.id; END;
        CREATE TRIGGER reviews_submitted_at AFTER UPDATE OF submitted_at ON reviews
        BEGIN UPDATE images SET submitted_at = NEW.submitted_at WHERE review_id = NEW.id; END;
        """
    )
    db.execute(f"CREATE INDEX idx_images_queue_order ON images ({QUEUE_ORDER}, submitted_at, id) WHERE status = 'queued'")
    db.execute("DROP TABLE queue_claims")
    db["queue_claims"].create(
        {"image_id": int, "inspector": str, "kind": str, "claimed_at": str, "claimed_ts": float, "lease_expires": float},
        pk=("image_id", "inspector"),
        foreign_keys=[("image_id", "images", "id")],
    )  # kind: queue | gold
    db["queue_claims"].create_index(["inspector"])
    db["answers"].create(
        {
            "id": int,
            "image_id": int,
            "inspector": str,
            "label": str,
            "kind": str,  # single | overlap | gold | adjudication
            "answered_at": str,
            "seconds": float,  # from claim to answer
            "prediction_id": int,
            "queue_reason": str,  # why the photo was in the queue when answered (restored by undo)
            "prev_decision_id": int,  # images.decision_id before this answer (restored by undo)
            "decision_id": int,  # the decision this answer produced, if any
        },
        pk="id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["answers"].create_index(["image_id"])
    db["answers"].create_index(["inspector", "id"])
    db["queue_events"].create(
        {
            "id": int,
            "at": str,
            "ts": float,
            "image_id": int,
            "inspector": str,
            "action": str,  # claim | answer | skip | undo | flag | lease_expired | adjudicate | requeue | gold
            "label": str,
            "seconds": float,
            "answer_id": int,
            "detail": str,  # JSON
        },
        pk="id",
    )
    db["queue_events"].create_index(["image_id", "id"])
    db["queue_events"].create_index(["inspector", "ts"])
    db["queue_events"].create_index(["answer_id"])
    db["gold_items"].create(
        {"image_id": int, "label": str, "created_by": str, "created_at": str},
        pk="image_id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["consensus"].create(
        {
            "image_id": int,
            "label": str,
            "confidence": float,  # consolidated posterior of the label
            "agreement": float,  # share of answers that chose the label
            "n_answers": int,
            "probabilities": str,  # JSON {class: p}
            "method": str,  # dawid-skene | gold | prior
            "outcome": str,  # decided | adjudication
            "updated_at": str,
        },
        pk="image_id",
        foreign_keys=[("image_id", "images", "id")],
    )
    db["inspector_reliability"].create(
        {
            "inspector": str,
            "method": str,  # dawid-skene | gold | prior
            "accuracy": float,
            "confusion": str,  # JSON K x K, rows true class, columns answered class
            "n_answers": int,
            "n_overlap_items": int,
            "gold_answers": int,
            "gold_correct": int,
            "updated_at": str,
        },
        pk="inspector",
    )
    db["queue_snapshots"].create(
        {"ts": float, "at": str, "queued": int, "by_reason": str},
        pk="ts",
    )
    db.executescript(
        """
        CREATE TRIGGER answers_no_update BEFORE UPDATE ON answers
        BEGIN SELECT RAISE(ABORT, 'answers are append-only (undo appends an event)'); END;
        CREATE TRIGGER answers_no_delete BEFORE DELETE ON answers
        BEGIN SELECT RAISE(ABORT, 'answers are append-only (undo appends an event)'); END;
        CREATE TRIGGER queue_events_no_update BEFORE UPDATE ON queue_events
        BEGIN SELECT RAISE(ABORT, 'the queue history is append-only'); END;
        CREATE TRIGGER queue_events_no_delete BEFORE DELETE ON queue_events
        BEGIN SELECT RAISE(ABORT, 'the queue history is append-only'); END;
        CREATE VIEW active_answers AS
            SELECT * FROM answers a
            WHERE NOT EXISTS (SELECT 1 FROM queue_events e WHERE e.answer_id = a.id AND e.action = 'undo');
        """
    )


@migration
def m005_queue_filters_on_images(db: sqlite_utils.Database) -> None:
    """Copy what the queue filters on (review type, the latest prediction's class and confidence) onto
    ``images`` (triggers keep them), so claim-next reads one covering index even for a filter that
    matches nothing (status is in the index too, which makes it covering); index ``queue_events`` by time
    (who is at work now)."""
    for column, kind in (("review_type", "TEXT"), ("pred_label", "TEXT"), ("pred_confidence", "REAL")):
        db.execute(f"ALTER TABLE images ADD COLUMN {column} {kind}")
    db.execute("UPDATE images SET review_type = (SELECT review_type FROM reviews WHERE reviews.id = images.review_id)")
    db.execute(
        "UPDATE images SET (pred_label, pred_confidence) = (SELECT label, confidence FROM predictions "
        "WHERE predictions.id = (SELECT MAX(id) FROM predictions WHERE image_id = images.id))"
    )
    db.executescript(
        f"""
        DROP TRIGGER images_submitted_at;
        DROP TRIGGER reviews_submitted_at;
        CREATE TRIGGER images_from_review AFTER INSERT ON images
        BEGIN UPDATE images SET
                  submitted_at = COALESCE(NEW.submitted_at, (SELECT submitted_at FROM reviews WHERE id = NEW.review_id)),
                  review_type = (SELECT review_type FROM reviews WHERE id = NEW.review_id)
              WHERE id = NEW.id; END;
        CREATE TRIGGER reviews_to_images AFTER UPDATE OF submitted_at, review_type ON reviews
        BEGIN UPDATE images SET submitted_at = NEW.submitted_at, review_type = NEW.review_type
              WHERE review_id = NEW.id; END;
        CREATE TRIGGER predictions_to_images AFTER INSERT ON predictions
        BEGIN UPDATE images SET pred_label = NEW.label, pred_confidence = NEW.confidence WHERE id = NEW.image_id; END;
        DROP INDEX idx_images_queue_order;
        CREATE INDEX idx_images_queue_order ON images ({QUEUE_ORDER}, submitted_at, id, queue_reason, review_type,
            pred_label, pred_confidence, required_answers, status) WHERE status = 'queued';
        CREATE INDEX idx_queue_events_ts ON queue_events (ts);
        """
    )


@migration
def m006_line_counting(db: sqlite_utils.Database) -> None:
    """Packaging-line counting: detector frames, files read (once, resumable), per-line counter state,
    bins, per-minute roll-ups, targets per shift, alerts."""
    db["lines"].create(
        {"id": str, "name": str, "created_at": str, "last_frame_ts": float},
        pk="id",
    )
    db["line_frames"].create(
        {
            "line_id": str,
            "camera_id": str,
            "ts": float,  # epoch seconds, UTC
            "count": int,  # trays counted in the frame (boxes under the minimum confidence left out)
            "raw_count": int,  # as reported
            "file": str,
        },
        pk=("line_id", "camera_id", "ts"),  # a frame seen twice is one frame
    )
    db["line_frames"].create_index(["line_id", "ts"])
    db["line_files"].create(
        {
            "uri": str,
            "offset": int,  # bytes consumed (complete lines only: a file still being written is resumed here)
            "size": int,
            "etag": str,
            "frames_added": int,
            "duplicates": int,
            "skipped": str,  # JSON {reason: count}
            "samples": str,  # JSON [{line, reason}] first few skipped lines
            "state": str,  # partial | done
            "first_seen_at": str,
            "updated_at": str,
        },
        pk="uri",
    )
    db["line_state"].create(
        {"line_id": str, "state": str, "counted_to_ts": float, "updated_at": str},
        pk="line_id",
    )
    db["line_bins"].create(
        {"id": int, "line_id": str, "start_ts": float, "end_ts": float, "trays": int, "reason": str,
         "created_at": str},
        pk="id",
    )
    db["line_bins"].create_index(["line_id", "end_ts"], unique=True)
    db["line_minutes"].create(
        {"line_id": str, "minute": int, "frames": int, "mean_count": float, "max_count": int, "trays_binned": int},
        pk=("line_id", "minute"),  # minute = epoch seconds // 60
    )
    db["line_targets"].create(
        {"line_id": str, "shift": str, "trays_per_hour": float, "updated_by": str, "updated_at": str},
        pk=("line_id", "shift"),
    )
    db["line_alerts"].create(
        {"id": int, "line_id": str, "shift": str, "kind": str, "started_ts": float, "ended_ts": float,
         "rate_per_hour": float, "target_per_hour": float, "message": str, "created_at": str},
        pk="id",
    )
    db["line_alerts"].create_index(["line_id", "started_ts"])


@migration
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


@migration
def m008_users(db: sqlite_utils.Database) -> None:
    """Local accounts: argon2id password hashes, roles, and the failure count and lock of the lockout."""
    db["users"].create(
        {
            "username": str,
            "password_hash": str,
            "roles": str,  # JSON list: inspector | ops | admin
            "disabled": int,
            "failed_count": int,  # failed sign-ins since the last success
            "locked_until": float,  # epoch seconds; sign-in refused before it
            "created_at": str,
            "created_by": str,
            "last_sign_in_at": str,
        },
        pk="username",
    )



@migration
def m009_single_sign_on(db: sqlite_utils.Database) -> None:
    """Single sign-on: accounts say how they sign in (``password`` or ``oidc``, the latter without a hash,
    keeping the groups of their last sign-in), and admins map identities and groups to roles."""
    db["users"].add_column("auth", str, not_null_default="password")
    db["users"].add_column("sso_groups", str)  # JSON list, from the identity provider's groups claim
    db["sso_roles"].create(
        {
            "kind": str,  # identity (the identity claim's value, e.g. an email) | group
            "subject": str,
            "roles": str,  # JSON list: inspector | ops | admin
            "updated_at": str,
            "updated_by": str,
        },
        pk=("kind", "subject"),
    )


@migration
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


@migration
def m011_retraining_runs(db: sqlite_utils.Database) -> None:
    """Gated retraining: every run, what it trained, how the candidate compared and what was decided."""
    db["retrain_runs"].create(
        {
            "id": int,
            "job_id": int,
            "started_at": str,
            "finished_at": str,
            "trigger": str,  # due (enough new labels) | forced
            "new_labels": int,
            "candidate_version_id": int,
            "candidate_macro_f1": float,
            "current_version_id": int,
            "current_macro_f1": float,
            "outcome": str,  # promoted | kept | failed
            "reason": str,
        },
        pk="id",
    )


@migration
def m012_grid_searches(db: sqlite_utils.Database) -> None:
    """Hyperparameter grid searches (local head, local fine-tuning, SageMaker tuning) and their grid points."""
    db["grid_searches"].create(
        {
            "id": int,
            "job_id": int,
            "backend": str,  # head | finetune | sagemaker
            "created_at": str,
            "finished_at": str,
            "actor": str,
            "grid": str,  # JSON: parameter -> list of values
            "folds": int,
            "examples": int,
            "state": str,  # running | done | failed
            "error": str,
            "external_name": str,  # the SageMaker tuning job's name
            "model_version_id": int,  # the version saved from the best point, if any
        },
        pk="id",
    )
    db["grid_points"].create(
        {
            "id": int,
            "search_id": int,
            "params": str,  # JSON: this point's values
            "macro_f1": float,
            "accuracy": float,
            "automatic_share": float,  # expected share decided automatically at the target accuracy
            "metrics": str,  # JSON: per_class, confusion_matrix, ... (whatever the backend reports)
            "seconds": float,
            "state": str,  # done | failed
            "error": str,
            "external_name": str,  # the SageMaker training job's name
        },
        pk="id",
        foreign_keys=[("search_id", "grid_searches", "id")],
    )
    db["grid_points"].create_index(["search_id"])


@migration
def m013_version_activation_time(db: sqlite_utils.Database) -> None:
    """When a version last became active: activating it again (a roll back) re-scores the queue again."""
    db["model_versions"].add_column("activated_at", str)
    db.execute("UPDATE model_versions SET activated_at = created_at WHERE active = 1")


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded in ``_migrations``; return the names applied.

    Raises sqlite3.Error if a migration fails (that migration is rolled back).
    """
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it while we waited for the lock
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                conn.execute("COMMIT")
                continue
            fn(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", [name]
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied

"""Migration 004: several inspectors per photo, and the queue order (``QUEUE_ORDER``) it indexes."""

from __future__ import annotations

import sqlite_utils

# The queue's priority order (audits and re-reviews first, adjudication last), as SQL over ``images.queue_reason``.
# The queue-order index created here (and rebuilt by m005) sorts by it; the queue orders claim-next by the same
# expression, so the index serves that query.
QUEUE_ORDER = (
    "CASE queue_reason WHEN 'audit' THEN 0 WHEN 'rereview' THEN 0 WHEN 'low_confidence' THEN 1 "
    "WHEN 'adjudication' THEN 3 ELSE 2 END"
)


def m004_several_inspectors(db: sqlite_utils.Database) -> None:
    """Several inspectors per photo: claims per (photo, inspector), every answer kept, gold items,
    consensus and inspector reliability, an append-only event history, queue-size snapshots.

    ``images.submitted_at`` copies the review's time (a trigger keeps it) so the queue order
    (priority, oldest first) is one partial index: claim-next reads its first eligible row.
    """
    _queue_order_on_images(db)
    _claims_and_answers(db)
    _queue_events(db)
    _gold_consensus_and_reliability(db)
    _queue_snapshots(db)
    _append_only_answers_and_events(db)


def _queue_order_on_images(db: sqlite_utils.Database) -> None:
    """Copy the review's time onto ``images`` (triggers keep it) and index the queue order."""
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


def _claims_and_answers(db: sqlite_utils.Database) -> None:
    """Claims per (photo, inspector) replace m003's one per photo; every answer is kept."""
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


def _queue_events(db: sqlite_utils.Database) -> None:
    """The event history of the queue (claims, answers, skips, undos, ...)."""
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


def _gold_consensus_and_reliability(db: sqlite_utils.Database) -> None:
    """Gold items, the consensus per photo and each inspector's reliability."""
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


def _queue_snapshots(db: sqlite_utils.Database) -> None:
    """Queue-size snapshots over time."""
    db["queue_snapshots"].create(
        {"ts": float, "at": str, "queued": int, "by_reason": str},
        pk="ts",
    )


def _append_only_answers_and_events(db: sqlite_utils.Database) -> None:
    """Answers and queue events are append-only; ``active_answers`` leaves out undone answers."""
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

"""Migration 015: ``images.queue_rank``, the queue's order within a priority (``QUEUE_ORDER``)."""

from __future__ import annotations

import sqlite_utils

from db.migrations.m004_several_inspectors import QUEUE_ORDER

# the console's own time format (``services.core.clock``), read to the microsecond
CANONICAL = "-".join(["[0-9]" * 4, "[0-9]" * 2, "[0-9]" * 2]) + "T" + ":".join(["[0-9]" * 2] * 3) + "." + "[0-9]" * 6 + "Z"


def _epoch(time: str) -> str:
    """SQL for ``time`` in epoch seconds: to the microsecond in the console's format, else as SQLite reads it (to
    the millisecond); NULL when it is empty or not a time."""
    return (f"CASE WHEN {time} GLOB '{CANONICAL}' "
            f"THEN strftime('%s', substr({time}, 1, 19)) + CAST(substr({time}, 20, 7) AS REAL) "
            f"ELSE ROUND((julianday({time}) - 2440587.5) * 86400.0, 3) END")


def submitted_epoch(submitted: str = "submitted_at", created: str = "created_at") -> str:
    """SQL for a photo's submitted time in epoch seconds: ``submitted``, else ``created`` when that is empty or not
    a time, else 0 (first, as an empty time sorted before)."""
    return f"COALESCE({_epoch(submitted)}, {_epoch(created)}, 0.0)"


# The photo's own submitted time in epoch seconds, over the columns of ``images``.
SUBMITTED_EPOCH = submitted_epoch()


def m015_queue_rank(db: sqlite_utils.Database) -> None:
    """Order the queue within a priority by ``queue_rank`` (epoch seconds; lower is served first) instead of
    ``submitted_at``.

    A photo's rank is its submitted time, except for a low-confidence photo, whose routing (the classify job,
    re-scoring, SageMaker batch imports) may move it up to ``queue_value_hours`` earlier by what its label is
    worth to the model (``services.reviews.queue_value``). Triggers keep the rest: a new photo starts at its
    submitted time; a photo queued for any other reason (audit, re-review, no model, adjudication) goes back to
    it; a review whose time changes moves its photos' ranks by as much. Existing rows get their submitted time
    (to the microsecond, as ``submitted_at`` sorted; a photo without one, its created time), so their order is
    unchanged.
    """
    db.execute("ALTER TABLE images ADD COLUMN queue_rank REAL")
    db.execute(f"UPDATE images SET queue_rank = {SUBMITTED_EPOCH}")
    db.executescript(
        f"""
        DROP TRIGGER images_from_review;
        CREATE TRIGGER images_from_review AFTER INSERT ON images
        BEGIN UPDATE images SET
                  submitted_at = COALESCE(NEW.submitted_at, (SELECT submitted_at FROM reviews WHERE id = NEW.review_id)),
                  review_type = (SELECT review_type FROM reviews WHERE id = NEW.review_id)
              WHERE id = NEW.id;
              UPDATE images SET queue_rank = {SUBMITTED_EPOCH} WHERE id = NEW.id AND queue_rank IS NULL; END;
        DROP TRIGGER reviews_to_images;
        CREATE TRIGGER reviews_to_images AFTER UPDATE OF submitted_at, review_type ON reviews
        BEGIN UPDATE images SET
                  submitted_at = NEW.submitted_at,
                  review_type = NEW.review_type,
                  queue_rank = CASE WHEN submitted_at IS NEW.submitted_at AND queue_rank IS NOT NULL THEN queue_rank
                                    ELSE {submitted_epoch("NEW.submitted_at")}
                                         - {SUBMITTED_EPOCH} + COALESCE(queue_rank, {SUBMITTED_EPOCH}) END
              WHERE review_id = NEW.id; END;
        CREATE TRIGGER images_queue_rank_reset AFTER UPDATE OF queue_reason ON images
        WHEN NEW.queue_reason IS NOT NULL AND NEW.queue_reason != 'low_confidence'
        BEGIN UPDATE images SET queue_rank = {submitted_epoch("NEW.submitted_at", "NEW.created_at")}
              WHERE id = NEW.id; END;
        DROP INDEX idx_images_queue_order;
        CREATE INDEX idx_images_queue_order ON images ({QUEUE_ORDER}, queue_rank, id, queue_reason, review_type,
            pred_label, pred_confidence, required_answers, status) WHERE status = 'queued';
        """
    )

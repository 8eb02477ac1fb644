"""Migration 005: what the queue filters on, copied onto ``images``."""

from __future__ import annotations

import sqlite_utils

from db.migrations.m004_several_inspectors import QUEUE_ORDER


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

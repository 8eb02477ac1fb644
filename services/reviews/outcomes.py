"""Read models for the pages: overview figures, the reviews table, one review's detail."""

from __future__ import annotations

import json
from typing import Any

import sqlite_utils

from services.core.authz import require
from services.core.config import get_settings
from services.core.errors import NotFound
from services.reviews.credit_holds import HELD_SQL, hold_active
from services.reviews.decisions import review_outcomes
from services.reviews.rules import review_credit


def data_version(db: sqlite_utils.Database) -> tuple[Any, ...]:
    """A cheap fingerprint that changes whenever the overview's figures can: new photos, predictions,
    decisions, queue events (undo, flag), jobs and settings. Each part is an index lookup."""
    return tuple(db.execute(
        "SELECT (SELECT MAX(id) FROM images), (SELECT MAX(id) FROM predictions), (SELECT MAX(id) FROM decisions), "
        "(SELECT MAX(id) FROM queue_events), (SELECT MAX(id) FROM audit_log), "
        "(SELECT COUNT(*) FROM images WHERE status = 'failed')"
    ).fetchone())


def _credits(db: sqlite_utils.Database) -> tuple[int, int, dict[str, int]]:
    """(reviews granted a credit, reviews, credits granted per submission day), without a row per review in
    Python: SQLite reduces the reviews to groups of (type, day, any photo qualifies, any does not, any
    undecided), and each group's outcome follows ``review_credit`` (failed photos are left out, as there)."""
    rules = get_settings(db)["credit_rules"]
    reviews = db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]
    granted, per_day = 0, {}
    held = HELD_SQL if hold_active(db) else "0"  # credit held for reused photos counts as not granted
    groups = db.execute(
        f"""SELECT r.review_type, substr(r.submitted_at, 1, 10), x.q > 0, x.f > 0, x.p > 0, x.h > 0, COUNT(*)
           FROM (SELECT i.review_id, TOTAL(d.credit = 1) AS q, TOTAL(d.credit = 0) AS f, TOTAL(d.id IS NULL) AS p,
                        TOTAL({held}) AS h
                 FROM images i LEFT JOIN decisions d ON d.id = i.decision_id
                 WHERE i.status != 'failed' GROUP BY i.review_id) x
           JOIN reviews r ON r.id = x.review_id GROUP BY 1, 2, 3, 4, 5, 6"""
    ).fetchall()
    for rtype, day, has_yes, has_no, has_pending, is_held, n in groups:
        results = [True] * has_yes + [False] * has_no + [None] * has_pending
        if not is_held and review_credit(review_type=rtype, photo_results=results, rules=rules)[0] is True:
            granted += n
            per_day[day] = per_day.get(day, 0) + n
    return granted, reviews, per_day


def overview(db: sqlite_utils.Database, *, actor: str) -> dict[str, Any]:
    """Totals and per-day counts that add up, each photo counted once by where it is now: photos in = decided
    automatically + decided by people + in the queue + waiting for classification + failed. An automatic
    decision sent to people as an audit is in the queue (``queued_audits`` of them) until they answer. Credits
    granted, in total and per submission day. Raises PermissionDenied for an actor without a role."""
    require(db, actor=actor, action="stats.read")
    totals = dict(db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
    auto, audits = db.execute(
        "SELECT TOTAL(i.status = 'decided' AND d.source = 'auto'), TOTAL(i.status = 'queued' AND d.source = 'auto') "
        "FROM images i JOIN decisions d ON d.id = i.decision_id").fetchone()
    auto, audits = int(auto), int(audits)
    human = totals.get("decided", 0) - auto  # people, adjudication, imported labels: any decided photo not automatic
    granted, reviews, credits_per_day = _credits(db)
    per_day = list(
        db.query(
            """
            SELECT substr(i.created_at, 1, 10) AS day, COUNT(*) AS photos_in,
                   TOTAL(i.status = 'decided' AND d.source = 'auto') AS decided_automatically,
                   TOTAL(i.status = 'decided' AND COALESCE(d.source, '') != 'auto') AS decided_by_people,
                   TOTAL(i.status = 'queued') AS in_queue,
                   TOTAL(i.status = 'pending') AS pending,
                   TOTAL(i.status = 'failed') AS failed
            FROM images i LEFT JOIN decisions d ON d.id = i.decision_id
            GROUP BY day ORDER BY day
            """
        )
    )
    return {
        "photos": sum(totals.values()),
        "pending": totals.get("pending", 0),
        "queued": totals.get("queued", 0),
        "decided": totals.get("decided", 0),
        "failed": totals.get("failed", 0),
        "decided_automatically": auto,
        "decided_by_people": human,
        "queued_audits": audits,
        "reviews": reviews,
        "credits_granted": granted,
        "per_day": per_day,
        "credits_per_day": [{"day": d, "credits_granted": n} for d, n in sorted(credits_per_day.items())],
    }


SORTABLE = {"submitted_at": "r.submitted_at", "review_id": "r.id", "confidence": "p.confidence", "label": "d.label",
            "status": "i.status"}


def list_images(
    db: sqlite_utils.Database,
    *,
    actor: str,
    review_type: str | None = None,
    status: str | None = None,
    label: str | None = None,
    source: str | None = None,
    search: str = "",
    sort: str = "submitted_at",
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """One row per photo with its review, latest prediction and decision; returns (page, total matches)."""
    require(db, actor=actor, action="reviews.read")
    where, params = [], []
    for column, value in (("r.review_type", review_type), ("i.status", status), ("d.label", label), ("d.source", source)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    if search:
        where.append("(r.id LIKE ? OR r.product LIKE ? OR r.user_id LIKE ?)")
        params += [f"%{search}%"] * 3
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    order = SORTABLE.get(sort, "r.submitted_at")
    base = f"""
        FROM images i JOIN reviews r ON r.id = i.review_id
        LEFT JOIN decisions d ON d.id = i.decision_id
        LEFT JOIN predictions p ON p.id = (SELECT MAX(id) FROM predictions WHERE image_id = i.id)
        {clause}
    """
    total = db.execute(f"SELECT COUNT(*) {base}", params).fetchone()[0]
    rows = list(
        db.query(
            f"""SELECT i.id AS image_id, r.id AS review_id, r.review_type, r.product, r.user_id, r.submitted_at,
                   i.uri, i.sha256, i.status, i.queue_reason, i.error, p.label AS predicted, p.confidence,
                   d.label, d.credit, d.reason, d.source
            {base} ORDER BY {order} {'DESC' if descending else 'ASC'}, i.id LIMIT ? OFFSET ?""",
            params + [limit, offset],
        )
    )
    return rows, total


def review_detail(db: sqlite_utils.Database, review_id: str, *, actor: str) -> dict[str, Any]:
    """A review, its photos with predictions and full decision history, and its credit outcome. Raises
    PermissionDenied, NotFound."""
    require(db, actor=actor, action="reviews.read")
    rows = list(db.query("SELECT * FROM reviews WHERE id = ?", [review_id]))
    if not rows:
        raise NotFound(f"review '{review_id}' does not exist")
    review = rows[0]
    photos = []
    for img in db.query("SELECT * FROM images WHERE review_id = ? ORDER BY id", [review_id]):
        preds = list(
            db.query(
                "SELECT p.*, mv.name AS model_version FROM predictions p JOIN model_versions mv "
                "ON mv.id = p.model_version_id WHERE image_id = ? ORDER BY p.id DESC",
                [img["id"]],
            )
        )
        for p in preds:
            p["probabilities"] = json.loads(p["probabilities"])
        history = list(db.query("SELECT * FROM decisions WHERE image_id = ? ORDER BY id DESC", [img["id"]]))
        photos.append({**img, "predictions": preds, "decisions": history})
    outcome = review_outcomes(db, review_ids=[review_id]).get(review_id, {"credit": None, "reason": ""})
    return {"review": review, "photos": photos, "outcome": outcome}

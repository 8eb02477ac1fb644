"""Routing and decisions: automatic when confident, the human queue otherwise; append-only history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlite_utils

from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, get_settings
from services.core.errors import InvalidInput, NotFound
from services.reviews.credit_holds import held_reviews
from services.reviews.rules import photo_qualifies, review_credit


@dataclass(frozen=True)
class Route:
    automatic: bool
    audit: bool
    queue_reason: str | None
    reason: str


def audit_rate_of(settings: dict[str, Any], label: str) -> float:
    """The share of a class's automatic decisions sent to people for audit (the audit watch raises it per class
    while evidence is thin)."""
    return float(settings.get("class_audit_rates", {}).get(label, settings["audit_rate"]))


def route(*, label: str, confidence: float, thresholds: dict[str, float], audit_rate: float, sha256: str) -> Route:
    """Decide automatically at or above the class threshold, else queue; sample audits deterministically.
    A threshold of 1.0 (a class the model is not certified for) never decides automatically.

    The audit draw hashes the photo's sha256, so a resumed job routes every photo as the first run did.
    """
    threshold = float(thresholds.get(label, 1.0))
    if threshold < 1.0 and confidence >= threshold:
        audit = int(sha256[:8], 16) / 0xFFFFFFFF < audit_rate
        return Route(True, audit, "audit" if audit else None, f"model: {label} at {confidence:.0%} (threshold {threshold:.0%})")
    return Route(
        False, False, "low_confidence", f"model: {label} at {confidence:.0%}, below the {threshold:.0%} threshold"
    )


def decide(
    db: sqlite_utils.Database,
    *,
    image_id: int,
    label: str,
    actor: str,
    source: str = "human",
    prediction_id: int | None = None,
    note: str = "",
    settings: dict[str, Any] | None = None,
    keep_queued: bool = False,
    authorised_by: str | None = None,
) -> dict[str, Any]:
    """Append a decision for one image, point the image at it (``images.decision_id``: the latest wins) and
    mark it decided. Returns the decision row.

    The role check (``reviews.label``) is on ``authorised_by`` when given (the console's own work that
    records under another name, e.g. ``system:consensus`` deciding as "consensus"), else on ``actor``.

    Raises PermissionDenied unless that principal may label photos, NotFound for an unknown image,
    InvalidInput for an unknown label or source.
    """
    require(db, actor=authorised_by or actor, action="reviews.label")
    if label not in CLASSES:
        raise InvalidInput(f"unknown label '{label}'; expected one of {', '.join(CLASSES)}")
    if source not in ("auto", "human"):
        raise InvalidInput(f"decision source must be 'auto' or 'human', not '{source}'")
    settings = settings or get_settings(db)
    row = db.execute(
        "SELECT images.id, reviews.review_type FROM images JOIN reviews ON reviews.id = images.review_id "
        "WHERE images.id = ?",
        [image_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"image {image_id} does not exist")
    ok, why = photo_qualifies(review_type=row[1], label=label, rules=settings["credit_rules"])
    reason = f"{note}; {why}" if note else why
    now = now_iso()
    with db.atomic():
        cur = db.execute(
            "INSERT INTO decisions (image_id, label, credit, reason, source, decided_by, decided_at, prediction_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [image_id, label, int(ok), reason, source, actor, now, prediction_id],
        )
        if keep_queued:
            db.execute("UPDATE images SET error = NULL, decision_id = ? WHERE id = ?", [cur.lastrowid, image_id])
        else:
            db.execute(
                "UPDATE images SET status = 'decided', queue_reason = NULL, error = NULL, decision_id = ? WHERE id = ?",
                [cur.lastrowid, image_id],
            )
        if source == "human":
            record(db, actor=actor, action="decision", target=f"image:{image_id}", detail={"label": label})
    return {
        "id": cur.lastrowid,
        "image_id": image_id,
        "label": label,
        "credit": ok,
        "reason": reason,
        "source": source,
        "decided_by": actor,
        "decided_at": now,
    }


def review_outcomes(db: sqlite_utils.Database, *, review_ids: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Credit outcome per review: {review_id: {"credit": True/False/None, "reason": str, "held": bool}}; a
    credit held for a reused photo (services.reviews.credit_holds) is None with the reason."""
    rules = get_settings(db)["credit_rules"]
    where, params = "", []
    if review_ids is not None:
        if not review_ids:
            return {}
        where = f"WHERE r.id IN ({','.join('?' * len(review_ids))})"
        params = list(review_ids)
    sql = (
        f"SELECT r.id, r.review_type, i.status, ld.credit FROM reviews r JOIN images i ON i.review_id = r.id "
        f"LEFT JOIN decisions ld ON ld.id = i.decision_id {where}"
    )
    grouped: dict[str, tuple[str, list[bool | None]]] = {}
    for rid, rtype, status, credit in db.execute(sql, params).fetchall():
        entry = grouped.setdefault(rid, (rtype, []))
        if status == "failed":
            continue  # a photo that cannot be read never qualifies and never blocks the others
        entry[1].append(None if credit is None else bool(credit))
    out = {}
    held = held_reviews(db, review_ids)
    for rid, (rtype, results) in grouped.items():
        if not results:
            out[rid] = {"credit": False, "reason": "no readable photo"}
            continue
        credit, reason = review_credit(review_type=rtype, photo_results=results, rules=rules)
        if credit and rid in held:
            credit, reason = None, f"{held[rid]} ({reason})"
        out[rid] = {"credit": credit, "reason": reason, "held": rid in held}
    return out

"""Inspectors' answers: submit a label for a claimed photo, or undo your last one.

Every answer is a row in ``answers`` (append-only). A photo that needs one answer is decided at once;
an overlap photo is consolidated (``services.hitl.consensus``) when its last inspector answers; a gold photo
only scores the inspector. Undo never edits a decision: it appends an ``undo`` event, points the photo
back at the decision it had before, and hands the photo back to the same inspector.
"""

from __future__ import annotations

import json
import time
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, get_settings
from services.core.errors import InvalidInput, NotFound
from services.hitl.consensus import consolidate
from services.hitl.history import record_event
from services.hitl.queue import LEASE_SECONDS
from services.reviews.decisions import decide
from services.reviews.rules import photo_qualifies


def _insert_answer(db: sqlite_utils.Database, **row: Any) -> int:
    row["answered_at"] = now_iso()
    cols = ", ".join(row)
    return int(db.execute(f"INSERT INTO answers ({cols}) VALUES ({', '.join('?' * len(row))})", list(row.values())).lastrowid)


def _decided_by(db: sqlite_utils.Database, image_id: int) -> str:
    last = db.execute("SELECT decided_by, decided_at FROM decisions WHERE id = (SELECT decision_id FROM images WHERE id = ?)",
                      [image_id]).fetchone()
    return f" by {last[0]} at {last[1]}" if last else ""


def submit(db: sqlite_utils.Database, *, image_id: int, label: str, actor: str) -> dict[str, Any]:
    """Record ``actor``'s label for a photo they were shown (confirm or override the model).

    Returns {image_id, label, credit, reason, answer_id, decision_id}; ``decision_id`` is None while an
    overlap photo waits for other inspectors (or went to adjudication) and for gold photos. The checks
    and writes share one write-locked transaction, so two inspectors cannot both decide one photo.
    Raises NotFound for a deleted photo, InvalidInput for an unknown label, a photo already decided, held
    by someone else, waiting for adjudication, or already answered by ``actor``.
    """
    require(db, actor=actor, action="reviews.label")
    if label not in CLASSES:
        raise InvalidInput(f"unknown label '{label}'; expected one of {', '.join(CLASSES)}")
    settings = get_settings(db)
    with immediate(db):
        img = db.execute("SELECT i.status, i.queue_reason, i.decision_id, i.required_answers, r.review_type "
                         "FROM images i JOIN reviews r ON r.id = i.review_id WHERE i.id = ?", [image_id]).fetchone()
        if img is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        status, reason, decision_id, required, review_type = img
        claim = db.execute("SELECT kind, claimed_ts FROM queue_claims WHERE image_id = ? AND inspector = ?",
                           [image_id, actor]).fetchone()
        now = time.time()
        seconds = None if claim is None or claim[1] is None else max(0.0, now - claim[1])
        pred = db.execute("SELECT id, label FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [image_id]).fetchone()
        if db.execute("SELECT 1 FROM active_answers WHERE image_id = ? AND inspector = ?", [image_id, actor]).fetchone():
            raise InvalidInput(f"you have already labelled image {image_id}; take the next photo")
        ok, why = photo_qualifies(review_type=review_type, label=label, rules=settings["credit_rules"])
        common = {"image_id": image_id, "inspector": actor, "label": label, "seconds": seconds,
                  "prediction_id": pred[0] if pred else None, "prev_decision_id": decision_id}
        if claim is not None and claim[0] == "gold" and db.execute(
                "SELECT 1 FROM gold_items WHERE image_id = ?", [image_id]).fetchone():
            answer_id = _insert_answer(db, kind="gold", queue_reason="low_confidence" if pred else "no_model", **common)
            _finish(db, image_id=image_id, actor=actor, label=label, seconds=seconds, answer_id=answer_id, detail=None)
            return {"image_id": image_id, "label": label, "credit": ok, "reason": why, "answer_id": answer_id,
                    "decision_id": None}
        if status == "decided":
            raise InvalidInput(f"image {image_id} was already decided{_decided_by(db, image_id)}; take the next photo")
        if status != "queued":
            raise InvalidInput(f"image {image_id} is {status}, not waiting for a decision")
        if reason == "adjudication":
            raise InvalidInput(f"image {image_id} is waiting for an admin to adjudicate; take the next photo")
        others = [r[0] for r in db.execute("SELECT inspector FROM queue_claims WHERE image_id = ? AND inspector != ? "
                                           "AND lease_expires >= ?", [image_id, actor, now]).fetchall()]
        answered = db.execute("SELECT COUNT(*) FROM active_answers WHERE image_id = ?", [image_id]).fetchone()[0]
        required = required or 1
        if required <= 1 and others:
            raise InvalidInput(f"image {image_id} is being inspected by {others[0]}; take the next photo instead")
        if required > 1 and claim is None and answered + len(others) >= required:
            raise InvalidInput(f"image {image_id} already has all the inspectors it needs; take the next photo")
        note = ""
        if pred:
            note = "inspector confirmed the model" if pred[1] == label else f"inspector overrode the model ({pred[1]})"
        if required <= 1:
            decision = decide(db, image_id=image_id, label=label, actor=actor, source="human",
                              prediction_id=pred[0] if pred else None, note=note, settings=settings)
            answer_id = _insert_answer(db, kind="single", queue_reason=reason, decision_id=decision["id"], **common)
            _finish(db, image_id=image_id, actor=actor, label=label, seconds=seconds, answer_id=answer_id, detail=None)
            return {"image_id": image_id, "label": label, "credit": decision["credit"], "reason": decision["reason"],
                    "answer_id": answer_id, "decision_id": decision["id"]}
        answer_id = _insert_answer(db, kind="overlap", queue_reason=reason, **common)
        detail = None
        if answered + 1 >= required:

            # reliability is re-estimated by the worker's housekeeping, never under this write lock
            result = consolidate(db, image_id=image_id, settings=settings, reestimate=False)
            detail = {"decision_id": result.get("decision_id"), "outcome": result.get("outcome")}
        _finish(db, image_id=image_id, actor=actor, label=label, seconds=seconds, answer_id=answer_id, detail=detail)
    return {"image_id": image_id, "label": label, "credit": ok, "reason": why, "answer_id": answer_id,
            "decision_id": (detail or {}).get("decision_id")}


def _finish(db: sqlite_utils.Database, *, image_id: int, actor: str, label: str, seconds: float | None,
            answer_id: int, detail: dict[str, Any] | None) -> None:
    db.execute("DELETE FROM queue_claims WHERE image_id = ? AND inspector = ?", [image_id, actor])
    record_event(db, image_id=image_id, inspector=actor, action="answer", label=label, seconds=seconds,
                 answer_id=answer_id, detail=detail)


def last_answer(db: sqlite_utils.Database, *, actor: str) -> dict[str, Any] | None:
    """``actor``'s latest answer that has not been undone (None if there is none)."""
    rows = list(db.query("SELECT * FROM active_answers WHERE inspector = ? AND kind IN ('single', 'overlap', 'gold') "
                         "ORDER BY id DESC LIMIT 1", [actor]))
    return rows[0] if rows else None


def undo_last(db: sqlite_utils.Database, *, actor: str, lease_seconds: float = LEASE_SECONDS) -> dict[str, Any]:
    """Undo ``actor``'s latest answer: the photo returns to the queue as it was (its earlier decision, if
    any, counts again) and ``actor`` holds it, so it is the next photo they see. The answer and decision
    stay in the history; an ``undo`` event withdraws them.

    Returns {image_id, label}. Raises InvalidInput when there is nothing to undo, or when the photo has
    been decided again since (by an admin or a consensus that included later answers).
    """
    require(db, actor=actor, action="reviews.label")
    with immediate(db):
        answer = last_answer(db, actor=actor)
        if answer is None:
            raise InvalidInput("nothing to undo: you have no labels left to take back")
        image_id = answer["image_id"]
        ev = db.execute("SELECT detail FROM queue_events WHERE answer_id = ? AND action = 'answer' ORDER BY id DESC LIMIT 1",
                        [answer["id"]]).fetchone()
        detail = json.loads(ev[0]) if ev and ev[0] else {}
        produced = answer["decision_id"] or detail.get("decision_id")
        img = db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = ?", [image_id]).fetchone()
        if img is None:
            raise NotFound(f"image {image_id} does not exist any more; nothing to undo")
        status, reason, current = img
        if answer["kind"] != "gold":
            if produced:
                stale = current != produced
            elif detail.get("outcome") == "adjudication":
                stale = status != "queued" or reason != "adjudication"
            else:
                stale = status != "queued"
            if stale:
                raise InvalidInput(f"image {image_id} was decided again{_decided_by(db, image_id)} after your label; "
                                   "it cannot be undone from the queue")
            db.execute("UPDATE images SET status = 'queued', queue_reason = ?, decision_id = ? WHERE id = ?",
                       [answer["queue_reason"], answer["prev_decision_id"], image_id])
            if produced or detail.get("outcome"):
                db.execute("DELETE FROM consensus WHERE image_id = ?", [image_id])
        record_event(db, image_id=image_id, inspector=actor, action="undo", label=answer["label"], answer_id=answer["id"])
        if produced:
            record(db, actor=actor, action="decision.undo", target=f"image:{image_id}",
                   detail={"decision_id": produced, "label": answer["label"]})
        now = time.time()
        for held, claimed_ts in db.execute("SELECT image_id, claimed_ts FROM queue_claims WHERE inspector = ? "
                                           "AND image_id != ?", [actor, image_id]).fetchall():
            record_event(db, image_id=held, inspector=actor, action="skip", detail={"why": "undo"},
                         seconds=None if claimed_ts is None else max(0.0, now - claimed_ts))  # handed back
        db.execute("DELETE FROM queue_claims WHERE inspector = ? OR (image_id = ? AND lease_expires < ?)",
                   [actor, image_id, now])
        db.execute("INSERT INTO queue_claims (image_id, inspector, kind, claimed_at, claimed_ts, lease_expires) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   [image_id, actor, "gold" if answer["kind"] == "gold" else "queue", now_iso(), now, now + lease_seconds])
        record_event(db, image_id=image_id, inspector=actor, action="claim", detail={"after": "undo"})
    return {"image_id": image_id, "label": answer["label"]}

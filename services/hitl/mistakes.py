"""Likely mistakes: decided photos worth a second look, and sending one back for an independent re-review.

Two kinds of suspects, both found from the (small) ``answers`` and ``consensus`` tables rather than by
scanning every image:

* ``model_disagrees``: the photo's current decision came from ONE inspector's answer and the model's
  latest prediction says another class with a confidence at or above that class's threshold (the
  confidence at which it would have decided on its own).
* ``inspectors_split``: several inspectors answered and did not all agree (consensus agreement < 1).

``requeue`` puts a photo back in the queue for exactly one more inspector, who has not answered it; their
answer is consolidated with the earlier ones (``services.hitl.answers.submit`` -> ``consensus.consolidate``).
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.config import CLASSES, get_settings
from services.core.errors import InvalidInput, NotFound
from services.hitl.history import record_event

KINDS = ("model_disagrees", "inspectors_split")
KIND_TITLES = {"model_disagrees": "model disagrees", "inspectors_split": "inspectors split"}

_LATEST_PREDICTION = "(SELECT MAX(id) FROM predictions WHERE image_id = {img})"


def _threshold_case(thresholds: dict[str, float]) -> tuple[str, list[Any]]:
    """SQL ``CASE p.label WHEN c THEN t ... ELSE 1.0 END`` (an unknown class decides only at 100%, as routing does)."""
    classes = [c for c in CLASSES if c in thresholds] + [c for c in thresholds if c not in CLASSES]
    if not classes:
        return "1.0", []
    sql = "CASE p.label " + " ".join("WHEN ? THEN ?" for _ in classes) + " ELSE 1.0 END"
    params: list[Any] = []
    for c in classes:
        params += [c, float(thresholds[c])]
    return sql, params


def _model_disagrees(db: sqlite_utils.Database, *, thresholds: dict[str, float], limit: int) -> list[dict[str, Any]]:
    case, params = _threshold_case(thresholds)
    sql = f"""
        SELECT a.image_id, a.inspector, a.label AS human_label, a.kind AS answer_kind,
               i.uri, i.sha256, i.review_id, r.review_type,
               d.label AS label, d.decided_by, d.decided_at,
               p.label AS model_label, p.confidence AS model_confidence, {case} AS threshold
        FROM active_answers a
        JOIN images i ON i.id = a.image_id AND i.decision_id = a.decision_id
        JOIN decisions d ON d.id = a.decision_id
        JOIN reviews r ON r.id = i.review_id
        JOIN predictions p ON p.id = {_LATEST_PREDICTION.format(img='a.image_id')}
        WHERE a.kind = 'single' AND a.decision_id IS NOT NULL AND i.status = 'decided'
          AND p.label != a.label AND p.confidence >= {case}
        ORDER BY p.confidence DESC, a.image_id
        LIMIT ?"""
    out = []
    for row in db.query(sql, [*params, *params, int(limit)]):
        answers = [{"inspector": row.pop("inspector"), "label": row.pop("human_label"), "kind": row.pop("answer_kind")}]
        out.append({**_base(row, kind="model_disagrees", answers=answers),
                    "threshold": row["threshold"], "agreement": None, "consensus_label": None,
                    "consensus_confidence": None, "outcome": None})
    return out


def _inspectors_split(db: sqlite_utils.Database, *, limit: int) -> list[dict[str, Any]]:
    sql = f"""
        SELECT c.image_id, c.label AS consensus_label, c.confidence AS consensus_confidence, c.agreement,
               c.outcome, i.uri, i.sha256, i.review_id, r.review_type,
               d.label AS label, d.decided_by, d.decided_at,
               p.label AS model_label, p.confidence AS model_confidence
        FROM consensus c
        JOIN images i ON i.id = c.image_id
        JOIN reviews r ON r.id = i.review_id
        LEFT JOIN decisions d ON d.id = i.decision_id
        LEFT JOIN predictions p ON p.id = {_LATEST_PREDICTION.format(img='c.image_id')}
        WHERE c.agreement < 1 AND i.status = 'decided'
        ORDER BY c.agreement, c.confidence, c.image_id
        LIMIT ?"""
    rows = list(db.query(sql, [int(limit)]))
    if not rows:
        return []
    ids = [r["image_id"] for r in rows]
    answers: dict[int, list[dict[str, Any]]] = {}
    for a in db.query(f"SELECT image_id, inspector, label, kind FROM active_answers "
                      f"WHERE image_id IN ({','.join('?' * len(ids))}) ORDER BY id", ids):
        answers.setdefault(a.pop("image_id"), []).append(a)
    return [{**_base(row, kind="inspectors_split", answers=answers.get(row["image_id"], [])),
             "threshold": None, "agreement": row["agreement"], "consensus_label": row["consensus_label"],
             "consensus_confidence": row["consensus_confidence"], "outcome": row["outcome"]} for row in rows]


def _base(row: dict[str, Any], *, kind: str, answers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "image_id": row["image_id"],
        "uri": row["uri"],
        "sha256": row["sha256"],
        "review_id": row["review_id"],
        "review_type": row["review_type"],
        "kind": kind,
        "label": row["label"],
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "answers": answers,
        "inspectors": [a["inspector"] for a in answers],
        "human_labels": ", ".join(f"{a['inspector']}: {a['label']}" for a in answers),
        "model_label": row["model_label"],
        "model_confidence": row["model_confidence"],
    }


def likely_mistakes(db: sqlite_utils.Database, *, limit: int = 200) -> list[dict[str, Any]]:
    """Decided photos worth re-reviewing: first ``model_disagrees`` (most confident model first), then
    ``inspectors_split`` (lowest agreement first), at most ``limit`` of each kind; photos back in the
    queue are left out (only status 'decided' is listed), and each photo appears once.

    Each row: image_id, uri, sha256, review_id, review_type, kind, label (current decision), decided_by,
    decided_at, answers [{inspector, label, kind}], inspectors, human_labels ("ann: product, ..."),
    model_label, model_confidence, threshold (model_disagrees), agreement, consensus_label,
    consensus_confidence, outcome (inspectors_split; else None). Reads only. Raises InvalidInput for a
    limit below 1.
    """
    if int(limit) < 1:
        raise InvalidInput("the list needs a limit of at least one photo")
    thresholds = get_settings(db)["thresholds"]
    out, seen = [], set()
    for row in [*_model_disagrees(db, thresholds=thresholds, limit=limit), *_inspectors_split(db, limit=limit)]:
        if row["image_id"] not in seen:
            seen.add(row["image_id"])
            out.append(row)
    return out


def requeue(db: sqlite_utils.Database, *, image_id: int, actor: str, reason: str) -> None:
    """Send a decided photo back to the queue for one more, independent inspector (queue_reason 'rereview').

    In one write-locked transaction: status 'queued', ``required_answers`` = active answers + 1 (the queue
    never offers a photo to an inspector who already answered it, and the new answer is consolidated with
    the earlier ones), any consensus row removed; ``images.decision_id`` is kept, so the earlier decision
    counts until the re-review decides. Records a 'requeue' queue event and an 'image.requeue' audit entry.

    Raises NotFound for an unknown photo; InvalidInput for an empty reason or actor, or a photo that is
    not decided (already back in the queue, pending, failed).
    """
    require(db, actor=actor, action="quality.manage")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("say why the photo needs another look (for example: the model disagrees)")
    if not actor or not actor.strip():
        raise InvalidInput("sending a photo for re-review needs the name of the person doing it")
    with immediate(db):
        row = db.execute("SELECT status, queue_reason FROM images WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        status, queue_reason = row
        if status == "queued":
            raise InvalidInput(f"image {image_id} is already in the queue ({queue_reason or 'queued'})")
        if status != "decided":
            raise InvalidInput(f"image {image_id} is {status}, not decided; only decided photos can be re-reviewed")
        answered = db.execute("SELECT COUNT(*) FROM active_answers WHERE image_id = ?", [image_id]).fetchone()[0]
        required = int(answered) + 1
        db.execute("UPDATE images SET status = 'queued', queue_reason = 'rereview', required_answers = ? WHERE id = ?",
                   [required, image_id])
        db.execute("DELETE FROM consensus WHERE image_id = ?", [image_id])
        record_event(db, image_id=image_id, inspector=actor, action="requeue", detail={"reason": reason})
        record(db, actor=actor, action="image.requeue", target=f"image:{image_id}",
               detail={"reason": reason, "required_answers": required})

"""Several inspectors per photo: a reliability-weighted vote (Dawid & Skene 1979) and adjudication.

The math is in ``services.hitl.dawid_skene``. Here: ``estimate_reliability`` stores one ``inspector_reliability`` row per
inspector, ``consolidate`` turns a photo's answers into a consensus (and a decision, or the
adjudication queue), ``adjudicate`` records an admin's final label.

Class priors: the consolidated vote of one photo uses *uniform* class priors. Dawid-Skene estimates
priors while it runs (they weight each inspector's stored ``accuracy``), but they are not persisted,
and letting the class mix of past photos outvote the inspectors on this one would bias consensus
toward the majority class. With uniform priors the posterior depends on the answers alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils

from db.database import immediate
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES
from services.core.errors import InvalidInput, NotFound
from services.hitl.dawid_skene import DawidSkene, dawid_skene, gold_confusion, item_posterior, symmetric_confusion
from services.reviews.decisions import decide

MIN_OVERLAP_ITEMS = 10  # items shared with other inspectors (or gold) before Dawid-Skene is trusted
MIN_GOLD = 3  # gold answers before gold accuracy is trusted
PRIOR_ACCURACY = 0.8  # assumed accuracy of an inspector we know nothing about
STALE_ANSWERS = 50  # re-estimate reliability after this many new answers
METHOD_RANK = {"prior": 0, "gold": 1, "dawid-skene": 2}


# ------------------------------------------------------------------------------------------ database


def _prior_matrix() -> np.ndarray:
    return symmetric_confusion(PRIOR_ACCURACY, len(CLASSES))


def estimate_reliability(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Estimate every answering inspector's confusion matrix and store it in ``inspector_reliability``.

    Dawid-Skene runs over the photos with active answers from at least two distinct inspectors, plus
    answered gold items (posterior fixed to the gold label). To stay a single cheap scan it considers
    photos with at least one non-'single' answer (overlap, gold, adjudication) or a gold label; two
    lone 'single' answers on one photo (a re-review) do not count as overlap. An inspector with at
    least MIN_OVERLAP_ITEMS such photos gets the Dawid-Skene matrix; else one with at least MIN_GOLD
    gold answers gets ``gold_confusion``; else the symmetric PRIOR_ACCURACY matrix. Joins an open transaction if any.
    Returns {inspector: row} with ``confusion`` as a nested list. Raises what the database raises.
    """
    inputs = _read_reliability_inputs(db)
    triples = _overlap_triples(inputs.candidate_answers, gold_labels=inputs.gold_labels)
    fitted = _fit_dawid_skene(triples, gold_labels=inputs.gold_labels)
    rows = _reliability_rows(inputs, triples=triples, fitted=fitted, now=now_iso())
    _store_reliability(db, rows=rows)
    return rows


@dataclass(frozen=True)
class _ReliabilityInputs:
    """What ``estimate_reliability`` reads from the database."""

    gold_labels: dict[Any, str]  # gold photo -> its label (known classes only)
    candidate_answers: list[tuple[Any, str, str]]  # (photo, inspector, label) on photos that may overlap
    answer_counts: dict[str, int]  # inspector -> answers not undone
    gold_stats: dict[str, tuple[int, int]]  # inspector -> (gold answers, gold answers right)


def _class_index() -> dict[str, int]:
    """{class: its index in CLASSES}. Raises nothing."""
    return {c: i for i, c in enumerate(CLASSES)}


def _read_reliability_inputs(db: sqlite_utils.Database) -> _ReliabilityInputs:
    """Gold labels, candidate overlap answers, answer counts and gold results per inspector.
    Raises what the database raises."""
    idx = _class_index()
    gold = {img: lbl for img, lbl in db.execute("SELECT image_id, label FROM gold_items").fetchall() if lbl in idx}
    # candidate photos: any answer that is not a lone 'single' one (overlap, gold, adjudication), or gold;
    # a scan of answers without row lookups for the (many) single answers elsewhere
    rows = db.execute(
        """SELECT image_id, inspector, label FROM active_answers
           WHERE image_id IN (SELECT image_id FROM answers WHERE kind != 'single' UNION SELECT image_id FROM gold_items)"""
    ).fetchall()
    per_inspector = dict(
        db.execute(  # covering index (inspector, id) plus one index probe per answer for undo
            "SELECT inspector, COUNT(*) FROM answers a WHERE NOT EXISTS "
            "(SELECT 1 FROM queue_events e WHERE e.answer_id = a.id AND e.action = 'undo') GROUP BY inspector"
        ).fetchall()
    )
    gold_stats: dict[str, tuple[int, int]] = {}
    for inspector, n, ok in db.execute(
        "SELECT a.inspector, COUNT(*), SUM(a.label = g.label) FROM gold_items g CROSS JOIN active_answers a "
        "ON a.image_id = g.image_id WHERE a.kind = 'gold' GROUP BY a.inspector"
    ).fetchall():
        gold_stats[inspector] = (int(n), int(ok or 0))
    return _ReliabilityInputs(
        gold_labels=gold, candidate_answers=rows, answer_counts=per_inspector, gold_stats=gold_stats
    )


def _overlap_triples(
    candidate_answers: list[tuple[Any, str, str]], *, gold_labels: dict[Any, str]
) -> list[tuple[Any, str, int]]:
    """(photo, inspector, class index) for the answers on photos with two or more distinct inspectors,
    or on gold; answers with an unknown label are left out. Raises nothing."""
    idx = _class_index()
    by_item: dict[Any, set[str]] = {}
    for img, insp, _lbl in candidate_answers:
        by_item.setdefault(img, set()).add(insp)
    rows = [r for r in candidate_answers if len(by_item[r[0]]) >= 2 or r[0] in gold_labels]
    return [(img, insp, idx[lbl]) for img, insp, lbl in rows if lbl in idx]


def _fit_dawid_skene(triples: list[tuple[Any, str, int]], *, gold_labels: dict[Any, str]) -> DawidSkene | None:
    """Dawid-Skene over the overlap answers, gold photos somebody answered fixed to their label;
    None without answers. Raises nothing (the class indices come from CLASSES)."""
    idx = _class_index()
    answered = {t[0] for t in triples}
    ds_gold = {img: idx[lbl] for img, lbl in gold_labels.items() if img in answered}  # gold nobody answered adds nothing
    return dawid_skene(triples, n_classes=len(CLASSES), gold=ds_gold, max_iter=50, tol=1e-4) if triples else None


def _reliability_rows(
    inputs: _ReliabilityInputs, *, triples: list[tuple[Any, str, int]], fitted: DawidSkene | None, now: str
) -> dict[str, dict[str, Any]]:
    """One ``inspector_reliability`` row per inspector with answers, sorted by inspector. Raises nothing."""
    overlap_items: dict[str, set[Any]] = {}
    for img, insp, _c in triples:
        overlap_items.setdefault(insp, set()).add(img)
    out: dict[str, dict[str, Any]] = {}
    for inspector in sorted(inputs.answer_counts):
        n_overlap = len(overlap_items.get(inspector, ()))
        g_n, g_ok = inputs.gold_stats.get(inspector, (0, 0))
        method, matrix, accuracy = _choose_confusion(
            inspector, fitted=fitted, n_overlap=n_overlap, gold_answers=g_n, gold_correct=g_ok
        )
        out[inspector] = {
            "inspector": inspector,
            "method": method,
            "accuracy": accuracy,
            "confusion": np.round(matrix, 6).tolist(),
            "n_answers": int(inputs.answer_counts[inspector]),
            "n_overlap_items": n_overlap,
            "gold_answers": g_n,
            "gold_correct": g_ok,
            "updated_at": now,
        }
    return out


def _choose_confusion(
    inspector: str, *, fitted: DawidSkene | None, n_overlap: int, gold_answers: int, gold_correct: int
) -> tuple[str, np.ndarray, float]:
    """(method, confusion matrix, accuracy): Dawid-Skene with enough overlap, else gold with enough gold
    answers, else the prior. Raises nothing."""
    if fitted is not None and n_overlap >= MIN_OVERLAP_ITEMS and inspector in fitted.confusions:
        matrix = fitted.confusions[inspector]
        return "dawid-skene", matrix, float(np.dot(fitted.priors, np.diag(matrix)))
    if gold_answers >= MIN_GOLD:
        matrix = gold_confusion(correct=gold_correct, total=gold_answers, n_classes=len(CLASSES))
        return "gold", matrix, float(matrix[0, 0])
    return "prior", _prior_matrix(), PRIOR_ACCURACY


def _store_reliability(db: sqlite_utils.Database, *, rows: dict[str, dict[str, Any]]) -> None:
    """Upsert the rows into ``inspector_reliability`` in one transaction (a savepoint inside an open one).
    Raises what the database raises."""
    with db.atomic():
        for row in rows.values():
            db.execute(
                "INSERT INTO inspector_reliability (inspector, method, accuracy, confusion, n_answers, n_overlap_items, "
                "gold_answers, gold_correct, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(inspector) DO UPDATE SET method = excluded.method, accuracy = excluded.accuracy, "
                "confusion = excluded.confusion, n_answers = excluded.n_answers, "
                "n_overlap_items = excluded.n_overlap_items, gold_answers = excluded.gold_answers, "
                "gold_correct = excluded.gold_correct, updated_at = excluded.updated_at",
                [row["inspector"], row["method"], row["accuracy"], json.dumps(row["confusion"]), row["n_answers"],
                 row["n_overlap_items"], row["gold_answers"], row["gold_correct"], row["updated_at"]],
            )


def reliabilities(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    """Stored ``inspector_reliability`` rows by inspector, ``confusion`` parsed to a nested list."""
    out = {}
    for row in db.query("SELECT * FROM inspector_reliability ORDER BY inspector"):
        row["confusion"] = json.loads(row["confusion"]) if row["confusion"] else None
        out[row["inspector"]] = row
    return out


def reliability_is_stale(db: sqlite_utils.Database) -> bool:
    """True when nothing is stored yet or more than STALE_ANSWERS answers came after the newest estimate.

    Cheap: reads only the STALE_ANSWERS + 1 newest answers (answers.id grows with answered_at).
    """
    newest = db.execute("SELECT MAX(updated_at) FROM inspector_reliability").fetchone()[0]
    if newest is None:
        return db.execute("SELECT 1 FROM answers LIMIT 1").fetchone() is not None
    newer = db.execute(
        "SELECT COUNT(*) FROM (SELECT answered_at FROM answers ORDER BY id DESC LIMIT ?) WHERE answered_at > ?",
        [STALE_ANSWERS + 1, newest],
    ).fetchone()[0]
    return newer > STALE_ANSWERS


def _latest_prediction_id(db: sqlite_utils.Database, image_id: int) -> int | None:
    row = db.execute("SELECT MAX(id) FROM predictions WHERE image_id = ?", [image_id]).fetchone()
    return row[0] if row else None


def consolidate(
    db: sqlite_utils.Database, *, image_id: int, settings: dict[str, Any], reestimate: bool = True
) -> dict[str, Any]:
    """Consolidate a photo's active answers into a consensus row; decide it when confident enough.

    Meant to run inside the caller's open (BEGIN IMMEDIATE) transaction; it never begins or commits one
    itself (nested writes use savepoints). Re-estimates reliability first when stale (``reestimate``;
    that reads every non-single answer and runs Dawid-Skene: about a second per 100k such answers, under
    the caller's write lock; pass False to use the stored rows and call ``estimate_reliability`` elsewhere).
    At or above
    ``settings["consensus_min_confidence"]`` it calls ``decide`` (actor "consensus") and the outcome is
    "decided"; else the photo stays queued with queue_reason 'adjudication'. Queue claims and events are
    the caller's business. Returns the consensus row (probabilities as a dict) plus ``decision_id``.

    Raises NotFound for an unknown photo, InvalidInput when it has no active answers.
    """
    answers = _read_photo_answers(db, image_id=image_id)
    with db.atomic():
        if reestimate and reliability_is_stale(db):
            estimate_reliability(db)
        consensus = _weighted_consensus(
            answers,
            reliability=reliabilities(db),
            min_confidence=float(settings.get("consensus_min_confidence", 0.8)),
        )
        now = now_iso()
        decision_id = _write_consensus(db, image_id=image_id, consensus=consensus, settings=settings, now=now)
    return {
        "image_id": image_id,
        "label": consensus.label,
        "confidence": consensus.confidence,
        "agreement": consensus.agreement,
        "n_answers": consensus.n_answers,
        "probabilities": consensus.probabilities,
        "method": consensus.method,
        "outcome": consensus.outcome,
        "updated_at": now,
        "decision_id": decision_id,
    }


@dataclass(frozen=True)
class _Consensus:
    """The weighted vote over one photo's answers."""

    label: str
    confidence: float
    agreement: float  # share of answers that chose ``label``
    n_answers: int
    n_inspectors: int
    probabilities: dict[str, float]  # class -> posterior, rounded to 6 places
    method: str  # the weakest reliability basis among the answering inspectors
    decided: bool  # confidence reached the threshold

    @property
    def outcome(self) -> str:
        return "decided" if self.decided else "adjudication"


def _read_photo_answers(db: sqlite_utils.Database, *, image_id: int) -> list[tuple[str, str]]:
    """(inspector, label) of the photo's active answers with a known label, oldest first.

    Raises NotFound for an unknown photo, InvalidInput when it has no such answers.
    """
    if db.execute("SELECT 1 FROM images WHERE id = ?", [image_id]).fetchone() is None:
        raise NotFound(f"image {image_id} does not exist")
    answers = db.execute(
        "SELECT inspector, label FROM active_answers WHERE image_id = ? ORDER BY id", [image_id]
    ).fetchall()
    idx = _class_index()
    answers = [(insp, lbl) for insp, lbl in answers if lbl in idx]
    if not answers:
        raise InvalidInput(f"image {image_id} has no answers to consolidate")
    return answers


def _weighted_consensus(
    answers: list[tuple[str, str]], *, reliability: dict[str, dict[str, Any]], min_confidence: float
) -> _Consensus:
    """Reliability-weighted vote with uniform class priors (inspectors without a stored matrix count at
    PRIOR_ACCURACY). Raises nothing for known labels."""
    idx = _class_index()
    confusions = {k: np.asarray(v["confusion"]) for k, v in reliability.items() if v["confusion"]}
    K = len(CLASSES)
    post = item_posterior(
        [(insp, idx[lbl]) for insp, lbl in answers],
        confusions=confusions,
        priors=np.full(K, 1.0 / K),
        default=_prior_matrix(),
    )
    best = int(np.argmax(post))
    label, confidence = CLASSES[best], float(post[best])
    # the weakest basis among the answering inspectors names the method
    method = min(
        (reliability[insp]["method"] if insp in reliability else "prior" for insp, _l in answers),
        key=METHOD_RANK.__getitem__,
    )
    return _Consensus(
        label=label,
        confidence=confidence,
        agreement=sum(lbl == label for _i, lbl in answers) / len(answers),
        n_answers=len(answers),
        n_inspectors=len({insp for insp, _l in answers}),
        probabilities={c: round(float(p), 6) for c, p in zip(CLASSES, post)},
        method=method,
        decided=confidence >= min_confidence,
    )


def _write_consensus(
    db: sqlite_utils.Database, *, image_id: int, consensus: _Consensus, settings: dict[str, Any], now: str
) -> int | None:
    """Upsert the photo's consensus row, then decide it (actor "consensus") or mark it for adjudication.
    Runs inside ``consolidate``'s transaction. Returns the decision id, None for adjudication.
    Raises what ``decide`` raises."""
    c = consensus
    db.execute(
        "INSERT INTO consensus (image_id, label, confidence, agreement, n_answers, probabilities, method, outcome, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET label = excluded.label, "
        "confidence = excluded.confidence, agreement = excluded.agreement, n_answers = excluded.n_answers, "
        "probabilities = excluded.probabilities, method = excluded.method, outcome = excluded.outcome, "
        "updated_at = excluded.updated_at",
        [image_id, c.label, c.confidence, c.agreement, c.n_answers, json.dumps(c.probabilities), c.method, c.outcome,
         now],
    )
    if not c.decided:
        db.execute("UPDATE images SET queue_reason = 'adjudication' WHERE id = ?", [image_id])
        return None
    decision = decide(
        db,
        image_id=image_id,
        label=c.label,
        actor="consensus",
        authorised_by="system:consensus",
        source="human",
        prediction_id=_latest_prediction_id(db, image_id),
        note=f"consensus of {c.n_inspectors} inspectors, agreement {c.agreement:.0%}, confidence {c.confidence:.0%}",
        settings=settings if "credit_rules" in settings else None,
    )
    return decision["id"]


def adjudication_items(db: sqlite_utils.Database, *, limit: int = 50) -> list[dict[str, Any]]:
    """Queued photos waiting for an admin (queue_reason 'adjudication'), oldest first, each with its review,
    latest prediction, consensus row (probabilities parsed) and active answers (inspector, label and that
    inspector's stored reliability accuracy and method)."""
    items = list(
        db.query(
            "SELECT i.id, i.review_id, i.uri, i.sha256, i.submitted_at, r.review_type, r.text "
            "FROM images i JOIN reviews r ON r.id = i.review_id "
            "WHERE i.status = 'queued' AND i.queue_reason = 'adjudication' ORDER BY i.submitted_at, i.id LIMIT ?",
            [int(limit)],
        )
    )
    if not items:
        return []
    rel = reliabilities(db)
    for item in items:
        cons = list(db.query("SELECT * FROM consensus WHERE image_id = ?", [item["id"]]))
        item["consensus"] = cons[0] if cons else None
        if item["consensus"]:
            item["consensus"]["probabilities"] = json.loads(item["consensus"]["probabilities"] or "{}")
        pred = list(
            db.query("SELECT id, label, confidence FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [item["id"]])
        )
        item["prediction"] = pred[0] if pred else None
        item["answers"] = [
            {
                **a,
                "accuracy": rel.get(a["inspector"], {}).get("accuracy", PRIOR_ACCURACY),
                "method": rel.get(a["inspector"], {}).get("method", "prior"),
            }
            for a in db.query(
                "SELECT id, inspector, label, kind, answered_at, seconds FROM active_answers WHERE image_id = ? ORDER BY id",
                [item["id"]],
            )
        ]
    return items


def adjudicate(db: sqlite_utils.Database, *, image_id: int, label: str, actor: str) -> dict[str, Any]:
    """An admin's final label for a photo waiting for adjudication: one BEGIN IMMEDIATE transaction that
    decides it, appends an 'adjudication' answer and an 'adjudicate' queue event, drops any claims on it
    and marks the consensus 'adjudicated'. Returns the decision (plus ``answer_id``).

    Raises NotFound for an unknown photo, InvalidInput for an unknown label, a missing actor, or a photo
    that is not waiting for adjudication (already decided, or queued for another reason).
    """
    require(db, actor=actor, action="quality.manage")
    if label not in CLASSES:
        raise InvalidInput(f"unknown label '{label}'; expected one of {', '.join(CLASSES)}")
    if not actor or not actor.strip():
        raise InvalidInput("an adjudication needs the name of the admin making it")
    with immediate(db):
        row = db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        status, reason, prev_decision_id = row
        if status != "queued" or reason != "adjudication":
            if status == "decided" and prev_decision_id is not None:
                by, lbl = db.execute(
                    "SELECT decided_by, label FROM decisions WHERE id = ?", [prev_decision_id]
                ).fetchone()
                raise InvalidInput(f"image {image_id} was already decided by {by} ({lbl}); it is not waiting for adjudication")
            raise InvalidInput(f"image {image_id} is not waiting for adjudication (status {status}, reason {reason or 'none'})")
        cons = db.execute("SELECT label, confidence FROM consensus WHERE image_id = ?", [image_id]).fetchone()
        note = f"adjudicated by {actor}"
        if cons:
            note += f" (consensus was {cons[0]} at {cons[1]:.0%})"
        prediction_id = _latest_prediction_id(db, image_id)
        decision = decide(
            db, image_id=image_id, label=label, actor=actor, source="human", prediction_id=prediction_id, note=note
        )
        now = now_iso()
        cur = db.execute(
            "INSERT INTO answers (image_id, inspector, label, kind, answered_at, seconds, prediction_id, queue_reason, "
            "prev_decision_id, decision_id) VALUES (?, ?, ?, 'adjudication', ?, NULL, ?, 'adjudication', ?, ?)",
            [image_id, actor, label, now, prediction_id, prev_decision_id, decision["id"]],
        )
        answer_id = cur.lastrowid
        db.execute(
            "INSERT INTO queue_events (at, ts, image_id, inspector, action, label, seconds, answer_id, detail) "
            "VALUES (?, ?, ?, ?, 'adjudicate', ?, NULL, ?, ?)",
            [now, time.time(), image_id, actor, label, answer_id, json.dumps({"decision_id": decision["id"]})],
        )
        db.execute("DELETE FROM queue_claims WHERE image_id = ?", [image_id])
        db.execute(
            "UPDATE consensus SET outcome = 'adjudicated', updated_at = ? WHERE image_id = ?", [now, image_id]
        )
    return {**decision, "answer_id": answer_id}

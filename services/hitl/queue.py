"""The human queue: which photo an inspector sees next, and the lease they hold on it.

Order: audit and re-review photos first, then low confidence, then photos waiting for a first model;
within a priority by ``images.queue_rank`` (one partial index, ``idx_images_queue_order``): the review's
submitted time, moved earlier for a low-confidence photo by what its label is worth to the model, by at most
``queue_value_hours`` (``services.reviews.queue_value``). Among the next few low-confidence candidates,
claim-next passes over photos near-identical to one answered minutes ago (``services.hitl.diversity``). An inspector
claims a photo with a lease (``claim_next``); nobody else is offered it until they answer, skip
(``release``) or the lease expires, unless the photo is one of the share labelled independently by
several inspectors (``overlap_rate``, ``overlap_k``). Gold photos with known answers are mixed in at
``gold_rate`` and look like any other photo. Answers are in ``services.hitl.answers``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import sqlite_utils

from db.database import immediate
from db.migrations import QUEUE_ORDER
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import InvalidInput, NotFound
from services.hitl.diversity import first_preferred, prefer_diverse
from services.hitl.history import record_event

LEASE_SECONDS = 300.0
SHORTLIST = 8  # candidates found before the write lock, re-checked under it
WORKING_WINDOW_SECONDS = 900.0  # inspectors with a claim, or queue activity this recent, are at work now
ORDER_BY = QUEUE_ORDER.replace("queue_reason", "i.queue_reason") + ", i.queue_rank, i.id"


def queue_counts(db: sqlite_utils.Database, *, review_type: str | None = None, label: str | None = None,
                 band: tuple[float, float] | None = None) -> dict[str, int]:
    """Queued photos per reason (audit, rereview, low_confidence, no_model, adjudication), of those matching the
    queue's filters when any is given (as ``claim_next`` reads them). Raises nothing of its own."""
    counts: dict[str, int] = {}
    extra, params = _filters(review_type, label, band)
    # unfiltered: grouped on idx_images_queue, no sort; filtered: read from the queue's partial index, which holds
    # the filtered columns (the table is not read)
    source = "images i INDEXED BY idx_images_queue_order" if extra else "images i"
    for reason, n in db.execute(f"SELECT i.queue_reason, COUNT(*) FROM {source} WHERE i.status = 'queued' {extra} "
                                "GROUP BY i.queue_reason", params).fetchall():
        counts[reason or "other"] = counts.get(reason or "other", 0) + n
    return counts


def out_of_reach(
    db: sqlite_utils.Database,
    *,
    inspector: str,
    skip: list[int] | tuple[int, ...] = (),
    review_type: str | None = None,
    label: str | None = None,
    band: tuple[float, float] | None = None,
) -> dict[str, int]:
    """Where the queued photos ``inspector`` cannot take now are (when the queue shows them none, the count above
    still includes these, but for ``filtered_out``: it counts the photos the filters let through):
    ``answered_by_you`` (waiting for other inspectors' independent answers), ``held_by_others`` (another
    inspector's lease, or answers that fill the photo's quota), ``skipped`` (this session), ``filtered_out``
    (outside the filters), ``adjudication`` (for an admin). Each photo is counted once,
    in that order. Reads only; raises PermissionDenied unless ``inspector`` may label."""
    require(db, actor=inspector, action="reviews.label")
    extra, params = _filters(review_type, label, band)
    now = time.time()
    rows = db.execute(
        f"""SELECT i.id, COALESCE(i.queue_reason, '') = 'adjudication',
                   EXISTS (SELECT 1 FROM active_answers a WHERE a.image_id = i.id AND a.inspector = ?),
                   (SELECT COUNT(*) FROM queue_claims c WHERE c.image_id = i.id AND c.inspector != ?
                                                          AND c.lease_expires >= ?)
                   + (SELECT COUNT(*) FROM active_answers a WHERE a.image_id = i.id) >= COALESCE(i.required_answers, 1),
                   1 {extra}
            FROM images i WHERE i.status = 'queued'""",
        [inspector, inspector, now, *params]).fetchall()
    out = dict.fromkeys(("adjudication", "answered_by_you", "skipped", "held_by_others", "filtered_out"), 0)
    skipped = set(skip)
    for image_id, adjudication, answered, held, matches in rows:
        key = ("adjudication" if adjudication else "answered_by_you" if answered else "skipped" if image_id in skipped
               else "held_by_others" if held else "filtered_out" if not matches else None)
        if key:
            out[key] += 1
    return out


def draw(*parts: object) -> float:
    """A uniform number in [0, 1) fixed by ``parts``: routing that a rerun or a resumed job repeats."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _filters(review_type: str | None, label: str | None, band: tuple[float, float] | None) -> tuple[str, list[Any]]:
    """Filters on columns copied onto ``images`` (review type, latest prediction): read from the queue index."""
    sql, params = "", []
    if review_type:
        sql += " AND i.review_type = ?"
        params.append(review_type)
    if label:
        sql += " AND i.pred_label = ?"
        params.append(label)
    if band:
        sql += " AND i.pred_confidence >= ? AND i.pred_confidence < ?"
        params += [float(band[0]), float(band[1])]
    return sql, params


def _not_in(ids: list[int] | tuple[int, ...]) -> str:
    return f" AND i.id NOT IN ({','.join('?' * len(ids))})" if ids else ""


def _details(db: sqlite_utils.Database, image_id: int, *, gold: bool) -> dict[str, Any]:
    item = next(db.query(
        "SELECT i.id, i.review_id, i.uri, i.sha256, i.queue_reason, r.review_type, r.product, r.user_id, "
        "r.submitted_at, r.text FROM images i JOIN reviews r ON r.id = i.review_id WHERE i.id = ?", [image_id]))
    pred = list(db.query("SELECT * FROM predictions WHERE image_id = ? ORDER BY id DESC LIMIT 1", [image_id]))
    item["prediction"] = pred[0] if pred else None
    if item["prediction"]:
        item["prediction"]["probabilities"] = json.loads(item["prediction"]["probabilities"] or "{}")
    if gold:  # shown exactly as a queued photo would be: nothing tells the inspector it is a check
        item["queue_reason"] = "low_confidence" if item["prediction"] else "no_model"
    item["other_photos"] = list(db.query(
        "SELECT id, uri, sha256, status FROM images WHERE review_id = ? AND id != ? ORDER BY id",
        [item["review_id"], image_id]))
    return item


def _eligible(db: sqlite_utils.Database, *, inspector: str, now: float, extra: str, params: list[Any],
              limit: int = 1, among: list[int] | None = None) -> list[int]:
    """Queued photos this inspector may take, in queue order: not answered by them, and fewer live claims by
    others plus answers than the photo needs (one, or ``overlap_k`` for an overlap photo). ``among``
    re-checks a shortlist by id instead of walking the queue index."""
    source = "images i INDEXED BY idx_images_queue_order"
    if among is not None:
        if not among:
            return []
        source = "images i"
        extra += f" AND i.id IN ({','.join(str(int(x)) for x in among)})"
    sql = f"""SELECT i.id FROM {source}
              WHERE i.status = 'queued' AND COALESCE(i.queue_reason, '') != 'adjudication' {extra}
                AND NOT EXISTS (SELECT 1 FROM active_answers a WHERE a.image_id = i.id AND a.inspector = ?)
                AND (SELECT COUNT(*) FROM queue_claims c WHERE c.image_id = i.id AND c.inspector != ?
                                                          AND c.lease_expires >= ?)
                    + (SELECT COUNT(*) FROM active_answers a WHERE a.image_id = i.id)
                    < COALESCE(i.required_answers, 1)
              ORDER BY {ORDER_BY} LIMIT {int(limit)}"""
    return [r[0] for r in db.execute(sql, [*params, inspector, inspector, now]).fetchall()]


def _own_claim(db: sqlite_utils.Database, *, inspector: str, now: float, skip: list[int] | tuple[int, ...],
               extra: str, params: list[Any]) -> tuple[int, str] | None:
    """The inspector's live claim if it is still theirs to answer (and matches the filters); stale ones go."""
    for image_id, kind in db.execute("SELECT image_id, kind FROM queue_claims WHERE inspector = ? AND lease_expires >= ? "
                                     "ORDER BY claimed_ts DESC", [inspector, now]).fetchall():
        if kind == "gold":
            ok = image_id not in skip and db.execute(
                f"SELECT 1 FROM gold_items g JOIN images i ON i.id = g.image_id WHERE g.image_id = ? {extra} AND NOT EXISTS "
                "(SELECT 1 FROM active_answers a WHERE a.image_id = g.image_id AND a.inspector = ?)",
                [image_id, *params, inspector]).fetchone()
        else:
            ok = image_id not in skip and db.execute(
                f"SELECT 1 FROM images i WHERE i.id = ? AND i.status = 'queued' "
                f"AND COALESCE(i.queue_reason, '') != 'adjudication' {extra} AND NOT EXISTS "
                "(SELECT 1 FROM active_answers a WHERE a.image_id = i.id AND a.inspector = ?)",
                [image_id, *params, inspector]).fetchone()
        if ok:
            return image_id, kind
        db.execute("DELETE FROM queue_claims WHERE image_id = ? AND inspector = ?", [image_id, inspector])
    return None


def _gold_candidate(db: sqlite_utils.Database, *, inspector: str, rate: float, skip: list[int] | tuple[int, ...],
                    extra: str, params: list[Any]) -> int | None:
    """A gold photo this inspector has not answered, drawn for ``rate`` of their claims (None otherwise)."""
    if rate <= 0:
        return None
    last = db.execute("SELECT MAX(id) FROM answers WHERE inspector = ?", [inspector]).fetchone()[0] or 0
    if draw("gold", inspector, last) >= rate:
        return None
    row = db.execute(
        f"""SELECT g.image_id FROM gold_items g JOIN images i ON i.id = g.image_id
            WHERE NOT EXISTS (SELECT 1 FROM active_answers a WHERE a.image_id = g.image_id AND a.inspector = ?)
            {_not_in(skip)} {extra}
            ORDER BY (g.image_id * 2654435761 + ?) % 4294967296 LIMIT 1""",
        [inspector, *skip, *params, last]).fetchone()
    return row[0] if row else None


def _required_answers(db: sqlite_utils.Database, *, image_id: int, sha256: str | None, inspector: str,
                      settings: dict[str, Any], now: float) -> int:
    """How many independent answers a photo needs, fixed at its first claim: ``overlap_k`` (capped at the
    number of inspectors working now, so a lone inspector is never left waiting) for an ``overlap_rate``
    share, else one."""
    if draw("overlap", sha256 or image_id) >= settings["overlap_rate"]:
        return 1
    since = now - WORKING_WINDOW_SECONDS
    working = {r[0] for r in db.execute(
        "SELECT inspector FROM queue_claims WHERE lease_expires >= ? UNION "
        "SELECT DISTINCT inspector FROM queue_events WHERE ts >= ?", [since, since]).fetchall()} | {inspector}
    return max(1, min(int(settings["overlap_k"]), len(working)))


def claim_next(
    db: sqlite_utils.Database,
    *,
    inspector: str,
    skip: list[int] | tuple[int, ...] = (),
    review_type: str | None = None,
    label: str | None = None,
    band: tuple[float, float] | None = None,
    lease_seconds: float = LEASE_SECONDS,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Claim the next photo for ``inspector`` with a lease (their own live claim first); None when empty.

    Returns the photo with its review, latest prediction and the review's other photos. Two inspectors
    are never offered the same photo while a lease lives, unless it is an overlap photo that still needs
    answers. Of the next ``SHORTLIST`` candidates, a low-confidence photo near-identical to one answered in the
    last minutes is passed over for the next low-confidence one (``services.hitl.diversity``). ``label`` and ``band`` filter on the model's latest prediction
    (class; confidence in [low, high)). Raises InvalidInput for an empty inspector name.
    """
    require(db, actor=inspector, action="reviews.label")
    if not inspector:
        raise InvalidInput("an inspector name is needed to claim from the queue")
    settings = settings or get_settings(db)
    extra, params = _filters(review_type, label, band)
    now = time.time()
    shortlist, preferred = None, list[int]()
    if not db.execute("SELECT 1 FROM queue_claims WHERE inspector = ? AND lease_expires >= ? LIMIT 1",
                      [inspector, now]).fetchone():
        # look for candidates before taking the write lock: a filter that matches little walks much of the
        # queue, and must not hold up other inspectors' decisions while it does
        shortlist = _eligible(db, inspector=inspector, now=now, extra=_not_in(skip) + extra, params=[*skip, *params],
                              limit=SHORTLIST)
        preferred = prefer_diverse(db, candidates=shortlist, now=now)  # read outside the lock too
    with immediate(db):
        own = _own_claim(db, inspector=inspector, now=now, skip=skip, extra=extra, params=params)
        if own is not None:
            image_id, kind = own
            db.execute("UPDATE queue_claims SET lease_expires = ? WHERE image_id = ? AND inspector = ?",
                       [now + lease_seconds, image_id, inspector])
        else:
            kind = "gold"
            image_id = _gold_candidate(db, inspector=inspector, rate=float(settings["gold_rate"]), skip=skip,
                                       extra=extra, params=params)
            if image_id is None:
                kind = "queue"
                found = [] if shortlist is None else _eligible(db, inspector=inspector, now=now, extra=extra,
                                                                 params=params, among=shortlist, limit=SHORTLIST)
                if not found and (shortlist is None or shortlist):  # no shortlist, or others took it meanwhile
                    found = _eligible(db, inspector=inspector, now=now, extra=_not_in(skip) + extra,
                                      params=[*skip, *params])
                if not found:
                    return None
                image_id = first_preferred(found, preferred)
                _take_over_expired(db, image_id=image_id, now=now)
                required, sha = db.execute("SELECT required_answers, sha256 FROM images WHERE id = ?", [image_id]).fetchone()
                if required is None:
                    db.execute("UPDATE images SET required_answers = ? WHERE id = ?",
                               [_required_answers(db, image_id=image_id, sha256=sha, inspector=inspector,
                                                  settings=settings, now=now), image_id])
            db.execute("DELETE FROM queue_claims WHERE inspector = ?", [inspector])  # one photo at a time
            db.execute("INSERT INTO queue_claims (image_id, inspector, kind, claimed_at, claimed_ts, lease_expires) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [image_id, inspector, kind, now_iso(), now, now + lease_seconds])
            record_event(db, image_id=image_id, inspector=inspector, action="claim")
        item = _details(db, image_id, gold=kind == "gold")
    item["lease_expires"] = now + lease_seconds
    return item


def peek_next(
    db: sqlite_utils.Database,
    *,
    inspector: str,
    skip: list[int] | tuple[int, ...] = (),
    review_type: str | None = None,
    label: str | None = None,
    band: tuple[float, float] | None = None,
    limit: int = 1,
) -> list[dict[str, Any]]:
    """The photos ``inspector`` would be offered next (id, uri, sha256), in queue order, without claiming them:
    for loading the next photo ahead of time (claim-next may still pass one over for diversity). Reads only."""
    require(db, actor=inspector, action="reviews.label")
    extra, params = _filters(review_type, label, band)
    ids = _eligible(db, inspector=inspector, now=time.time(), extra=_not_in(skip) + extra, params=[*skip, *params],
                    limit=limit)
    if not ids:
        return []
    rows = {r["id"]: r for r in db.query(f"SELECT id, uri, sha256 FROM images WHERE id IN ({','.join('?' * len(ids))})", ids)}
    return [rows[i] for i in ids]


def _take_over_expired(db: sqlite_utils.Database, *, image_id: int, now: float) -> None:
    for holder, claimed_ts in db.execute("SELECT inspector, claimed_ts FROM queue_claims WHERE image_id = ? "
                                         "AND lease_expires < ?", [image_id, now]).fetchall():
        record_event(db, image_id=image_id, inspector=holder, action="lease_expired",
                     seconds=None if claimed_ts is None else now - claimed_ts)
    db.execute("DELETE FROM queue_claims WHERE image_id = ? AND lease_expires < ?", [image_id, now])


def _drop_claim(db: sqlite_utils.Database, *, image_id: int, inspector: str) -> float | None:
    """Remove the inspector's claim; return the seconds they held it (None if they held none)."""
    row = db.execute("SELECT claimed_ts FROM queue_claims WHERE image_id = ? AND inspector = ?",
                     [image_id, inspector]).fetchone()
    if row is None:
        return None
    db.execute("DELETE FROM queue_claims WHERE image_id = ? AND inspector = ?", [image_id, inspector])
    return None if row[0] is None else max(0.0, time.time() - row[0])


def release(db: sqlite_utils.Database, *, image_id: int, inspector: str) -> None:
    """Skip: give a claimed photo back to the queue. Only the holder's claim is removed; the skip is recorded."""
    require(db, actor=inspector, action="reviews.label")
    with immediate(db):
        seconds = _drop_claim(db, image_id=image_id, inspector=inspector)
        if seconds is not None:
            record_event(db, image_id=image_id, inspector=inspector, action="skip", seconds=seconds)


def flag(db: sqlite_utils.Database, *, image_id: int, inspector: str, reason: str) -> None:
    """Flag a photo that cannot be inspected (it fails to load, or is not a photo at all): it leaves the
    queue as failed, with the reason, and is retried by the next import. Raises NotFound, InvalidInput."""
    require(db, actor=inspector, action="reviews.label")
    reason = reason.strip()
    if not reason:
        raise InvalidInput("say why the photo is flagged (for example: it does not load)")
    with immediate(db):
        row = db.execute("SELECT status FROM images WHERE id = ?", [image_id]).fetchone()
        if row is None:
            raise NotFound(f"image {image_id} does not exist (it may have been deleted)")
        if row[0] != "queued":
            raise InvalidInput(f"image {image_id} is {row[0]}, not in the queue")
        seconds = _drop_claim(db, image_id=image_id, inspector=inspector)
        db.execute("DELETE FROM queue_claims WHERE image_id = ?", [image_id])
        db.execute("UPDATE images SET status = 'failed', error = ? WHERE id = ?",
                   [f"flagged in the queue by {inspector}: {reason}", image_id])
        record_event(db, image_id=image_id, inspector=inspector, action="flag", seconds=seconds,
                     detail={"reason": reason})
        record(db, actor=inspector, action="image.flag", target=f"image:{image_id}", detail={"reason": reason})

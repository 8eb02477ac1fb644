"""Yes/no checks: the images a dataset filter was unsure about (confidence in its human band).

A filter job opens one ``filter_checks`` row per band image. An inspector claims the next open check
with a lease (two inspectors never hold the same check; an abandoned lease expires), and answers:
yes copies the image to the job's output like a kept image and puts it in the manifest (rewritten at
once when the job has already finished, else at its end); no records the answer.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import sqlite_utils

from db.database import immediate
from services.core import jobs
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.errors import ConsoleError, InvalidInput, NotFound
from services.core.storage import ObjectStore
from services.dataset_filter import job as dataset_filter

LEASE_SECONDS = 300


def _check(db: sqlite_utils.Database, check_id: int) -> dict[str, Any]:
    rows = list(db.query("SELECT * FROM filter_checks WHERE id = ?", [check_id]))
    if not rows:
        raise NotFound(f"yes/no check {check_id} does not exist")
    return rows[0]


def _with_question(check: dict[str, Any]) -> dict[str, Any]:
    label = check["label"] or ""
    article = "an" if label[:1].lower() in "aeiou" else "a"
    return {**check, "question": f"Does this image show {article} {label}?"}


def claim_next_check(db: sqlite_utils.Database, *, inspector: str, lease_seconds: float = LEASE_SECONDS,
                     skip: Collection[int] = (), job_id: int | None = None,
                     now: float | None = None) -> dict[str, Any] | None:
    """The check this inspector should answer now, leased to them for ``lease_seconds``; None when none waits.

    An open check the inspector already holds comes back first (a page reload shows the same image); then
    the oldest open check that nobody holds or whose lease expired. ``skip``: check ids this inspector
    passed over. The row gets a ``question`` ("Does this image show a bird?"). Raises InvalidInput.
    """
    require(db, actor=inspector, action="reviews.label")
    if not inspector or not inspector.strip():
        raise InvalidInput("an inspector name is needed to claim a check")
    if lease_seconds <= 0:
        raise InvalidInput("lease_seconds must be positive")
    now = time.time() if now is None else now
    skip_ids = [int(i) for i in skip]
    where = f" AND id NOT IN ({','.join('?' * len(skip_ids))})" if skip_ids else ""
    if job_id is not None:
        where += " AND job_id = ?"
    extra: list[Any] = [*skip_ids, *([job_id] if job_id is not None else [])]
    with immediate(db):
        row = db.execute(
            f"SELECT id FROM filter_checks WHERE status = 'open' AND claimed_by = ? AND lease_expires >= ?{where} "
            "ORDER BY id LIMIT 1", [inspector, now, *extra]).fetchone()
        if row is None:
            row = db.execute(
                "SELECT id FROM filter_checks WHERE status = 'open' AND (claimed_by IS NULL OR lease_expires IS NULL "
                f"OR lease_expires < ?){where} ORDER BY id LIMIT 1", [now, *extra]).fetchone()
        if row is None:
            return None
        db.execute("UPDATE filter_checks SET claimed_by = ?, lease_expires = ? WHERE id = ?",
                   [inspector, now + lease_seconds, row[0]])
    return _with_question(_check(db, row[0]))


def release_check(db: sqlite_utils.Database, *, check_id: int, inspector: str) -> None:
    """Give a claimed check back (skip) so another inspector can take it. Raises NotFound."""
    require(db, actor=inspector, action="reviews.label")
    _check(db, check_id)
    with db.atomic():
        db.execute("UPDATE filter_checks SET claimed_by = NULL, lease_expires = NULL "
                   "WHERE id = ? AND claimed_by = ? AND status = 'open'", [check_id, inspector])


def answer_check(db: sqlite_utils.Database, *, check_id: int, yes: bool, actor: str, store: ObjectStore,
                 now: float | None = None) -> dict[str, Any]:
    """Record a person's answer. Yes copies the image to ``destination/<name>/<key>`` (server-side inside
    S3) and adds it to the manifest (rewritten now if the job is done); no records the answer.

    Returns the answered check. Raises NotFound (no such check), InvalidInput (already answered, or leased
    to another inspector), StorageError/NotFound (the copy failed: the check stays open).
    """
    require(db, actor=actor, action="reviews.label")
    if not actor or not actor.strip():
        raise InvalidInput("an inspector name is needed to answer a check")
    now = time.time() if now is None else now
    with immediate(db):
        check = _check(db, check_id)
        if check["status"] != "open":
            raise InvalidInput(f"check {check_id} was already answered {check['status']} by {check['answered_by']}")
        if check["claimed_by"] not in (None, actor) and (check["lease_expires"] or 0) >= now:
            raise InvalidInput(f"check {check_id} is being answered by {check['claimed_by']}")
        # take the answer first (status leaves 'open'), so a concurrent answer cannot copy a second time
        db.execute("UPDATE filter_checks SET status = ?, claimed_by = ?, answered_by = ?, answered_at = ? WHERE id = ?",
                   ["yes" if yes else "no", actor, actor, now_iso(), check_id])
        if not yes:
            record(db, actor=actor, action="filter_check.answer", target=f"filter_check:{check_id}",
                   detail={"job_id": check["job_id"], "uri": check["uri"], "answer": "no"})
    job = jobs.get_job(db, check["job_id"])
    copied_to = None
    if yes:
        try:
            copied_to = dataset_filter.destination_for(job["params"], check["uri"])
            dataset_filter.copy_image(store, check["uri"], copied_to)
        except ConsoleError:
            with db.atomic():  # the copy failed: the check is open again for a later try
                db.execute("UPDATE filter_checks SET status = 'open', answered_by = NULL, answered_at = NULL "
                           "WHERE id = ?", [check_id])
            raise
        with db.atomic():
            db.execute("UPDATE filter_checks SET copied_to = ? WHERE id = ?", [copied_to, check_id])
            db.execute("UPDATE filter_results SET copied_to = ? WHERE job_id = ? AND uri = ?",
                       [copied_to, check["job_id"], check["uri"]])
            record(db, actor=actor, action="filter_check.answer", target=f"filter_check:{check_id}",
                   detail={"job_id": check["job_id"], "uri": check["uri"], "answer": "yes", "copied_to": copied_to})
        if job["state"] == "done" and not job["params"].get("dry_run"):
            dataset_filter.write_outputs(db, job_id=check["job_id"], store=store)
    return _with_question(_check(db, check_id))


def checks_summary(db: sqlite_utils.Database, *, job_id: int | None = None, now: float | None = None) -> dict[str, Any]:
    """Counts of checks: {open, claimed (open and leased now), yes, no, total, by_job: {job_id: {...}}}."""
    now = time.time() if now is None else now
    where, args = ("WHERE job_id = ?", [job_id]) if job_id is not None else ("", [])
    out: dict[str, Any] = {"open": 0, "claimed": 0, "yes": 0, "no": 0, "total": 0, "by_job": {}}
    for jid, status, claimed, n in db.execute(
        "SELECT job_id, status, claimed_by IS NOT NULL AND lease_expires >= ?, COUNT(*) FROM filter_checks "
        f"{where} GROUP BY 1, 2, 3", [now, *args]):
        per = out["by_job"].setdefault(jid, {"open": 0, "claimed": 0, "yes": 0, "no": 0, "total": 0})
        for bucket in (out, per):
            bucket[status] = bucket.get(status, 0) + n
            bucket["total"] += n
            if status == "open" and claimed:
                bucket["claimed"] += n
    return out


def list_checks(db: sqlite_utils.Database, *, job_id: int | None = None, status: str | None = None,
                limit: int = 500) -> list[dict[str, Any]]:
    """Checks, oldest first, filtered by job and status. Raises InvalidInput for an unknown status."""
    if status not in (None, "open", "yes", "no"):
        raise InvalidInput(f"unknown check status '{status}': use open, yes or no")
    sql, args = "SELECT * FROM filter_checks WHERE 1 = 1", []
    if job_id is not None:
        sql, args = sql + " AND job_id = ?", [*args, job_id]
    if status:
        sql, args = sql + " AND status = ?", [*args, status]
    return [_with_question(r) for r in db.query(sql + " ORDER BY id LIMIT ?", [*args, limit])]

"""The one background job runner every job kind uses.

A job is a row (kind, parameters, state, progress, heartbeat, lease, error) plus one ``job_items`` row
per work item (pending, done, failed with its reason). A worker claims a job with a lease, works
through the pending items in batches and records each batch in one transaction with the kind's own
writes, so a job killed halfway resumes where it stopped and never repeats finished items.

A job kind supplies: ``list_items`` (once, at first start), ``load`` (I/O for a batch; the runner
prefetches the next batch while the current one computes), ``compute`` (no database writes),
``write`` (inside the batch transaction; returns each item's error or None) and ``finish``.
Cancel is a state the worker checks between batches.

Several processes may run workers on one database (``./run.sh --processes N`` runs one worker service, but
``cli work`` or ``cli classify`` may run beside it): a claim is one ``BEGIN IMMEDIATE`` transaction, so one
worker gets a job; its lease is renewed by a heartbeat thread while it runs (a batch may take longer than the
lease), and every batch and the end are written only while the worker still holds the lease (fenced by its
owner), so a worker that lost its lease (paused past it, its job taken over) stops without writing anything.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import Workspace
from services.core.errors import ConsoleError, InvalidInput, JobCancelled, NotFound

LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = LEASE_SECONDS / 4  # the running worker renews its lease this often
ACTIVE_STATES = ("queued", "running", "cancelling")


@dataclass
class JobContext:
    ws: Workspace
    db: sqlite_utils.Database
    job_id: int
    params: dict[str, Any]
    actor: str
    state: dict[str, Any] = field(default_factory=dict)  # per-run scratch space for the kind


class JobKind(Protocol):
    name: str
    batch_size: int

    def start(self, ctx: JobContext) -> None: ...  # on the worker thread, before the first batch
    def list_items(self, ctx: JobContext) -> list[str]: ...
    def load(self, ctx: JobContext, items: list[str]) -> Any: ...  # on the loader thread: no ctx.db here
    def compute(self, ctx: JobContext, loaded: Any) -> Any: ...
    def write(self, ctx: JobContext, computed: Any) -> dict[str, str | None]: ...
    def finish(self, ctx: JobContext) -> dict[str, Any]: ...
    def so_far(self, ctx: JobContext) -> dict[str, Any] | None: ...  # a cancelled run's result, from items done
    def close(self, ctx: JobContext) -> None: ...  # always, after the run ends however it ends


class BaseKind:
    """Defaults for a job kind: no set-up, no I/O stage, nothing to close."""

    name = ""
    batch_size = 1

    def start(self, ctx: JobContext) -> None:
        return None

    def load(self, ctx: JobContext, items: list[str]) -> Any:
        return items

    def so_far(self, ctx: JobContext) -> dict[str, Any] | None:
        """A cancelled run's result: none, unless the kind can say what its finished items hold."""
        return None

    def close(self, ctx: JobContext) -> None:
        return None


class SingleTaskKind(BaseKind, ABC):
    """A job of one task (an import, a training run): subclasses implement ``run``.

    ``run`` returns the job's result; a ConsoleError it raises fails the item and the job with that message.
    """

    @abstractmethod
    def items_for(self, ctx: JobContext) -> list[str]:
        """The job's single work item (its source)."""
    @abstractmethod
    def run(self, ctx: JobContext, item: str) -> dict[str, Any]:
        """Do the task; return the job's result. Raises ConsoleError."""
    def list_items(self, ctx: JobContext) -> list[str]:
        return self.items_for(ctx)

    def compute(self, ctx: JobContext, items: list[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for item in items:
            try:
                ctx.state["result"] = self.run(ctx, item)
                out[item] = None
            except ConsoleError as exc:
                out[item] = ctx.state["error"] = str(exc)
        return out

    def write(self, ctx: JobContext, computed: dict[str, str | None]) -> dict[str, str | None]:
        return computed

    def finish(self, ctx: JobContext) -> dict[str, Any]:
        if "error" in ctx.state:
            raise ConsoleError(ctx.state["error"])
        return ctx.state.get("result") or {}


KINDS: dict[str, JobKind] = {}
def register(kind: JobKind) -> JobKind:
    """Make a job kind known to the runner (``services.worker.kinds`` wires every kind of the console)."""
    KINDS[kind.name] = kind
    return kind


def active_job(db: sqlite_utils.Database, *, kind: str) -> int | None:
    """The id of a job of ``kind`` that is queued, running or being cancelled, if any."""
    marks = ", ".join("?" * len(ACTIVE_STATES))
    row = db.execute(f"SELECT id FROM jobs WHERE kind = ? AND state IN ({marks}) ORDER BY id LIMIT 1",
                     [kind, *ACTIVE_STATES]).fetchone()
    return int(row[0]) if row else None


def create_job(db: sqlite_utils.Database, *, kind: str, params: dict[str, Any], actor: str) -> int:
    """Queue a job. Raises InvalidInput for an unknown kind."""
    require(db, actor=actor, action="jobs.manage")
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind '{kind}'")
    with db.atomic():
        cur = db.execute(
            "INSERT INTO jobs (kind, params, state, total, done, failed, created_by, created_at) "
            "VALUES (?, ?, 'queued', 0, 0, 0, ?, ?)",
            [kind, json.dumps(params), actor, now_iso()],
        )
        job_id = int(cur.lastrowid)
        record(db, actor=actor, action="job.launch", target=f"job:{job_id}", detail={"kind": kind, "params": params})
    return job_id


def get_job(db: sqlite_utils.Database, job_id: int) -> dict[str, Any]:
    """The job row with decoded params/result. Raises NotFound."""
    rows = list(db.query("SELECT * FROM jobs WHERE id = ?", [job_id]))
    if not rows:
        raise NotFound(f"job {job_id} does not exist")
    job = rows[0]
    job["params"] = json.loads(job["params"] or "{}")
    job["result"] = json.loads(job["result"]) if job["result"] else None
    return job


def list_jobs(db: sqlite_utils.Database, *, limit: int = 50, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The newest jobs first (only those of ``kinds`` when given), each as ``get_job`` returns it."""
    if kinds is None:
        rows = db.execute("SELECT id FROM jobs ORDER BY id DESC LIMIT ?", [limit])
    else:
        marks = ", ".join("?" * len(kinds))
        rows = db.execute(f"SELECT id FROM jobs WHERE kind IN ({marks}) ORDER BY id DESC LIMIT ?", [*kinds, limit])
    return [get_job(db, r[0]) for r in rows.fetchall()]


def job_ids(db: sqlite_utils.Database, *, kind: str, actor: str, limit: int = 50) -> list[int]:
    """The ids of the newest jobs of ``kind``, newest first. Raises PermissionDenied."""
    require(db, actor=actor, action="jobs.manage")
    rows = db.execute("SELECT id FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT ?", [kind, limit])
    return [int(r[0]) for r in rows.fetchall()]


def set_current(db: sqlite_utils.Database, *, job_id: int, text: str, share: float | None = None) -> None:
    """Say what the running job is doing inside the item in hand (``jobs.current``; the page shows it under the
    progress bar) and, when known, the share of that item done (``jobs.current_share``, 0 to 1: the bar and the
    time left count it). Both are cleared when the item is recorded or the job ends. Raises nothing of its own."""
    share = None if share is None else min(1.0, max(0.0, float(share)))
    with db.atomic():
        db.execute("UPDATE jobs SET current = ?, current_share = ? WHERE id = ? AND state IN ('running', "
                   "'cancelling')", [text, share, job_id])


def job_choices(db: sqlite_utils.Database, *, kind: str, actor: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest jobs of ``kind``, newest first, as a picker lists them: id, created_at and the source they read
    (their ``source`` parameter, "" when they have none); not their state, which goes stale in a picker. Raises
    PermissionDenied."""
    require(db, actor=actor, action="jobs.manage")
    rows = db.execute("SELECT id, created_at, params FROM jobs WHERE kind = ? ORDER BY id DESC LIMIT ?",
                      [kind, limit]).fetchall()
    out = []
    for job_id, created_at, params in rows:
        try:
            source = json.loads(params or "{}").get("source") or ""
        except (ValueError, AttributeError):
            source = ""
        out.append({"id": int(job_id), "created_at": created_at, "source": str(source)})
    return out


def is_active(job: dict[str, Any]) -> bool:
    """Whether a job (as ``get_job`` returns it) is queued, running or being cancelled."""
    return job["state"] in ACTIVE_STATES


def cancel_requested(db: sqlite_utils.Database, *, job_id: int) -> bool:
    """Whether someone asked the running job to stop (its state is 'cancelling'). Raises nothing of its own."""
    return _state(db, job_id) == "cancelling"


PACE_SHARE = 0.1  # with no item finished, the whole run's pace is told once this share of the item in hand is done


def progress(job: dict[str, Any]) -> float:
    """Items finished, done or failed, plus the share of the item in hand (``current_share``) when known."""
    return (job["done"] or 0) + (job["failed"] or 0) + (job.get("current_share") or 0.0)


def time_left(db: sqlite_utils.Database, *, job_id: int, now: float | None = None, recent: int = 200) -> float | None:
    """Seconds until a running job is likely done, at the pace of its last ``recent`` finished items (items written
    together count as one step), the share of the item in hand counted as done; before two steps, at the pace of
    the whole run when the item in hand gives its share (a long video). None otherwise, or unless it is running.
    Raises NotFound."""
    job = get_job(db, job_id)
    remaining = (job["total"] or 0) - progress(job)
    if job["state"] != "running" or remaining <= 0:
        return None
    now = time.time() if now is None else now
    steps = db.execute("SELECT updated_at, COUNT(*) FROM (SELECT updated_at FROM job_items WHERE job_id = ? "
                       "AND state IN ('done', 'failed') ORDER BY updated_at DESC LIMIT ?) GROUP BY updated_at "
                       "ORDER BY updated_at", [job_id, int(recent)]).fetchall()
    if len(steps) < 2:
        if (job.get("current_share") or 0.0) < PACE_SHARE or not job["started_at"]:
            return None  # before a tenth of the item, start-up (models loading) would weigh on the pace
        started = datetime.fromisoformat(job["started_at"].replace("Z", "+00:00")).timestamp()
        return max(0.0, (now - started) * remaining / progress(job)) if now > started else None
    first, last = (datetime.fromisoformat(steps[i][0].replace("Z", "+00:00")).timestamp() for i in (0, -1))
    if last <= first:
        return None
    rate = sum(n for _, n in steps[1:]) / (last - first)  # items a second since the first step
    since_last = 0.0 if job.get("current_share") else max(0.0, now - last)  # the share says where it is
    return max(0.0, remaining / rate - since_last)


def failed_items(db: sqlite_utils.Database, job_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
    return list(
        db.query(
            "SELECT item, error, updated_at FROM job_items WHERE job_id = ? AND state = 'failed' LIMIT ?",
            [job_id, limit],
        )
    )


def cancel_job(db: sqlite_utils.Database, *, job_id: int, actor: str) -> None:
    """Ask a job to stop between batches (a queued job stops at once). Raises NotFound."""
    require(db, actor=actor, action="jobs.manage")
    job = get_job(db, job_id)
    with db.atomic():
        if job["state"] == "queued":
            db.execute("UPDATE jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", [now_iso(), job_id])
        elif job["state"] == "running":
            db.execute("UPDATE jobs SET state = 'cancelling' WHERE id = ? AND state = 'running'", [job_id])
        else:
            return
        record(db, actor=actor, action="job.cancel", target=f"job:{job_id}")


def resume_job(db: sqlite_utils.Database, *, job_id: int, actor: str) -> None:
    """Queue a failed or cancelled job again; finished items are not redone. Raises NotFound, InvalidInput."""
    require(db, actor=actor, action="jobs.manage")
    job = get_job(db, job_id)
    if job["state"] not in ("failed", "cancelled"):
        raise InvalidInput(f"job {job_id} is {job['state']}; only failed or cancelled jobs can be resumed")
    with db.atomic():
        db.execute("UPDATE jobs SET state = 'queued', error = NULL, finished_at = NULL, result = NULL WHERE id = ?",
                   [job_id])  # a cancelled run's report on its part is not the resumed job's
        record(db, actor=actor, action="job.resume", target=f"job:{job_id}")


def _claim(db: sqlite_utils.Database, *, owner: str, job_id: int | None) -> int | None:
    """Take the lease of a runnable job: queued, or running/cancelling with an expired lease."""
    now = time.time()
    with immediate(db):
        sql = (  # queued, or claimed by a worker whose lease ran out
            "SELECT id FROM jobs WHERE (state = 'queued' OR (state IN ('running', 'cancelling') "
            "AND (lease_expires IS NULL OR lease_expires < ?)))"
        )
        params: list[Any] = [now]
        if job_id is not None:
            sql += " AND id = ?"
            params.append(job_id)
        row = db.execute(sql + " ORDER BY id LIMIT 1", params).fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE jobs SET state = CASE state WHEN 'queued' THEN 'running' ELSE state END, lease_owner = ?, "
            "lease_expires = ?, heartbeat_at = ?, started_at = COALESCE(started_at, ?) WHERE id = ?",
            [owner, now + LEASE_SECONDS, now_iso(), now_iso(), row[0]],
        )
    return int(row[0])


def run_job(ws: Workspace, *, job_id: int | None = None, owner: str | None = None) -> int | None:
    """Claim one runnable job (``job_id`` or the oldest) and run it to the end. Returns its id or None.

    Opens its own database connection, so it can run on any thread or in any process.
    """
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    db = ws.db()
    try:
        claimed = _claim(db, owner=owner, job_id=job_id)
        if claimed is None:
            return None
        _run_claimed(ws, db, claimed, owner)
        return claimed
    finally:
        db.close()


class LeaseLost(ConsoleError):
    """This worker's lease on a job ran out and another worker holds it now: stop, writing nothing more."""


def renew_lease(db: sqlite_utils.Database, *, job_id: int, owner: str, now: float | None = None) -> bool:
    """Extend ``owner``'s lease on job ``job_id`` by ``LEASE_SECONDS``; False when ``owner`` no longer holds it.
    Raises sqlite3.Error if the database cannot be written."""
    now = time.time() if now is None else now
    cur = db.execute("UPDATE jobs SET lease_expires = ?, heartbeat_at = ? WHERE id = ? AND lease_owner = ? "
                     "AND state IN ('running', 'cancelling')", [now + LEASE_SECONDS, now_iso(), job_id, owner])
    return cur.rowcount == 1


class _Heartbeat:
    """A daemon thread that renews a running job's lease every ``HEARTBEAT_SECONDS`` on its own connection."""

    def __init__(self, ws: Workspace, *, job_id: int, owner: str) -> None:
        self._stop = threading.Event()
        self._args = (ws, job_id, owner)
        self._thread = threading.Thread(target=self._loop, name=f"job{job_id}-lease", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        ws, job_id, owner = self._args
        db = None
        try:
            while not self._stop.wait(HEARTBEAT_SECONDS):
                db = db or ws.db()  # opened at the first renewal: most jobs end before one is due
                if not renew_lease(db, job_id=job_id, owner=owner):
                    return  # taken over or finished: the batch write will find out (fenced)
        except (sqlite3.Error, OSError):  # the database went away (a shutdown): the lease just expires
            traceback.print_exc()
        finally:
            if db is not None:
                db.close()


def _holds_lease(db: sqlite_utils.Database, job_id: int, owner: str) -> None:
    """Inside a write transaction: raise LeaseLost unless ``owner`` still holds job ``job_id``."""
    row = db.execute("SELECT lease_owner FROM jobs WHERE id = ?", [job_id]).fetchone()
    if row is None or row[0] != owner:
        raise LeaseLost(f"job {job_id} is held by {row[0] if row else 'nobody'} now, not {owner}")


def _run_claimed(ws: Workspace, db: sqlite_utils.Database, job_id: int, owner: str) -> None:
    with _Heartbeat(ws, job_id=job_id, owner=owner):
        try:
            _run_leased(ws, db, job_id, owner)
        except LeaseLost as exc:  # another worker runs it now; nothing of this run's last batch was written
            print(f"job {job_id}: {exc}", file=sys.stderr)


def _run_leased(ws: Workspace, db: sqlite_utils.Database, job_id: int, owner: str) -> None:
    job = get_job(db, job_id)
    if job["kind"] not in KINDS:  # a job queued by a newer or older version of the console
        _finish(db, job_id, owner, "failed", None, f"this console does not know jobs of kind '{job['kind']}'")
        return
    kind = KINDS[job["kind"]]
    ctx = JobContext(ws=ws, db=db, job_id=job_id, params=job["params"], actor=job["created_by"] or "system")
    try:
        kind.start(ctx)
        has_items = db.execute("SELECT 1 FROM job_items WHERE job_id = ? LIMIT 1", [job_id]).fetchone()
        if not has_items:
            items = kind.list_items(ctx)
            with db.atomic():
                db.conn.executemany(
                    "INSERT OR IGNORE INTO job_items (job_id, item, state) VALUES (?, ?, 'pending')",
                    [(job_id, it) for it in items],
                )
                db.execute("UPDATE jobs SET total = ? WHERE id = ?", [len(items), job_id])
        pending = [r[0] for r in db.execute("SELECT item FROM job_items WHERE job_id = ? AND state = 'pending' ORDER BY rowid", [job_id])]
        batches = [pending[i : i + kind.batch_size] for i in range(0, len(pending), kind.batch_size)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"job{job_id}-load") as loader:
            future = loader.submit(kind.load, ctx, batches[0]) if batches else None
            for i, batch in enumerate(batches):
                if cancel_requested(db, job_id=job_id):
                    break
                loaded = future.result()
                future = loader.submit(kind.load, ctx, batches[i + 1]) if i + 1 < len(batches) else None
                try:
                    computed = kind.compute(ctx, loaded)
                except JobCancelled:  # raised inside an item that takes long (a video), when cancel_requested
                    if not cancel_requested(db, job_id=job_id):
                        raise  # not a cancel after all: the job fails and says so
                    break  # the batch stays pending, done again on resume; the job ends cancelled below
                with db.atomic():
                    _holds_lease(db, job_id, owner)
                    outcome = kind.write(ctx, computed)
                    _record_items(db, job_id, batch, outcome, owner)
            if future is not None:
                future.cancel()
        if cancel_requested(db, job_id=job_id):
            _finish(db, job_id, owner, "cancelled", _so_far(kind, ctx), None)
            return
        result = kind.finish(ctx)
        _finish(db, job_id, owner, "done", result, None)
    except LeaseLost:
        raise
    except ConsoleError as exc:
        _finish(db, job_id, owner, "failed", None, str(exc))
    except Exception as exc:  # noqa: BLE001 - a job must record why it died, whatever the cause
        _finish(db, job_id, owner, "failed", None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}")
    finally:
        kind.close(ctx)


def _state(db: sqlite_utils.Database, job_id: int) -> str:
    return db.execute("SELECT state FROM jobs WHERE id = ?", [job_id]).fetchone()[0]


def _record_items(
    db: sqlite_utils.Database, job_id: int, batch: list[str], outcome: dict[str, str | None], owner: str
) -> None:
    now = now_iso()
    rows = [("failed" if outcome.get(it) else "done", outcome.get(it), now, job_id, it) for it in batch]
    db.conn.executemany("UPDATE job_items SET state = ?, error = ?, updated_at = ? WHERE job_id = ? AND item = ?", rows)
    n_failed = sum(1 for r in rows if r[0] == "failed")
    db.execute(
        "UPDATE jobs SET done = done + ?, failed = failed + ?, heartbeat_at = ?, lease_expires = ?, current = NULL, "
        "current_share = NULL "
        "WHERE id = ?",
        [len(rows) - n_failed, n_failed, now, time.time() + LEASE_SECONDS, job_id],
    )


def _so_far(kind: JobKind, ctx: JobContext) -> dict[str, Any] | None:
    """What a cancelled run's finished items hold (``kind.so_far``); None when the kind cannot say, or when saying
    fails: the cancel stands either way."""
    try:
        return kind.so_far(ctx)
    except ConsoleError:
        return None


def _finish(db: sqlite_utils.Database, job_id: int, owner: str, state: str, result: Any, error: str | None) -> None:
    """End the job, if ``owner`` still holds it. Raises LeaseLost when another worker took it over."""
    cur = db.execute(
        "UPDATE jobs SET state = ?, result = ?, error = ?, finished_at = ?, lease_expires = NULL, current = NULL, "
        "current_share = NULL "
        "WHERE id = ? AND lease_owner = ?",
        [state, json.dumps(result) if result is not None else None, error, now_iso(), job_id, owner],
    )
    if cur.rowcount != 1:
        raise LeaseLost(f"job {job_id} was taken over by another worker before {owner} finished it")

"""Job claims across OS processes (``./run.sh --processes N`` runs one worker service, but ``cli work`` may run
beside it): a job goes to one worker, each item is done once, and a worker whose lease was taken over writes
nothing more. Its lease is renewed while a long batch runs."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest

from services.core import jobs
from services.core.config import Workspace

PROCESSES = 3
JOBS = 9
ITEMS = 6
TIMEOUT = 120.0
_together: multiprocessing.synchronize.Barrier | None = None  # set in each worker process


class Tally(jobs.BaseKind):
    """Records which process did each item; the first batch of each process waits until every process holds
    a job, so the claims really overlap."""

    name = "test-tally"
    batch_size = 2

    def __init__(self) -> None:
        self.waited = False
        self.during_compute: object = None

    def start(self, ctx):
        ctx.db.execute("CREATE TABLE IF NOT EXISTS tally (job_id INTEGER, item TEXT, pid INTEGER)")

    def list_items(self, ctx):
        return [str(i) for i in range(ctx.params["n"])]

    def compute(self, ctx, items):
        if _together is not None and not self.waited:
            self.waited = True
            _together.wait(TIMEOUT)
        if callable(self.during_compute):
            self.during_compute(ctx)
        return items

    def write(self, ctx, items):
        for it in items:
            ctx.db.execute("INSERT INTO tally VALUES (?, ?, ?)", [ctx.job_id, it, os.getpid()])
        return dict.fromkeys(items)

    def finish(self, ctx):
        return {"pid": os.getpid()}


def _work(root: str, together: multiprocessing.synchronize.Barrier, ready: multiprocessing.synchronize.Barrier) -> None:
    """A worker process: run jobs until none is left to claim (as ``cli work`` does)."""
    global _together
    _together = together
    jobs.register(Tally())
    ws = Workspace.open(root)
    ready.wait(TIMEOUT)
    while jobs.run_job(ws) is not None:
        pass


@pytest.fixture
def tally():
    kind = jobs.register(Tally())
    yield kind
    jobs.KINDS.pop(kind.name, None)


def test_workers_in_several_processes_claim_each_job_once_and_do_each_item_once(ws, db, tally):
    ids = [jobs.create_job(db, kind=tally.name, params={"n": ITEMS}, actor="tester") for _ in range(JOBS)]
    ctx = multiprocessing.get_context("spawn")
    together, ready = ctx.Barrier(PROCESSES), ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_work, args=(str(ws.root), together, ready)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * PROCESSES

    assert [jobs.get_job(db, i)["state"] for i in ids] == ["done"] * JOBS
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT job_id || ':' || item) FROM tally").fetchone() == (
        JOBS * ITEMS, JOBS * ITEMS)  # nothing lost, nothing done twice
    per_job = db.execute("SELECT job_id, COUNT(DISTINCT pid) FROM tally GROUP BY job_id").fetchall()
    assert all(n == 1 for _, n in per_job)  # each job ran in one process
    pids = {r[0] for r in db.execute("SELECT DISTINCT pid FROM tally")}
    assert pids == {p.pid for p in procs}  # every process held a job at the same time (the barrier)
    assert {jobs.get_job(db, i)["result"]["pid"] for i in ids} == pids


def test_a_worker_whose_lease_was_taken_over_writes_nothing_more(ws, db, tally):
    job_id = jobs.create_job(db, kind=tally.name, params={"n": 4}, actor="tester")

    def taken_over(ctx):  # its lease ran out while it computed, and another worker claimed the job
        if ctx.db.execute("SELECT COUNT(*) FROM tally").fetchone()[0] == 2:
            ctx.db.execute("UPDATE jobs SET lease_owner = 'other-worker' WHERE id = ?", [ctx.job_id])

    tally.during_compute = taken_over
    assert jobs.run_job(ws, job_id=job_id, owner="slow-worker") == job_id
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"], job["lease_owner"]) == ("running", 2, "other-worker")  # not finished by it
    assert db.execute("SELECT COUNT(*) FROM tally").fetchone()[0] == 2  # the batch after the takeover: not written
    assert db.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ? AND state = 'pending'",
                      [job_id]).fetchone()[0] == 2  # left for the worker that holds it now


def test_the_lease_is_renewed_while_a_long_batch_runs_and_only_by_its_owner(ws, db, tally, monkeypatch):
    job_id = jobs.create_job(db, kind=tally.name, params={"n": 2}, actor="tester")
    renewed = threading.Event()
    real_renew = jobs.renew_lease

    def renew(db_, **kw):
        held = real_renew(db_, **kw)
        renewed.set()
        return held

    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.05)
    monkeypatch.setattr(jobs, "renew_lease", renew)
    seen = {}

    def long_batch(ctx):  # a batch that outlasts a heartbeat
        seen["before"] = ctx.db.execute("SELECT lease_expires FROM jobs WHERE id = ?", [ctx.job_id]).fetchone()[0]
        assert renewed.wait(30)
        seen["after"] = ctx.db.execute("SELECT lease_expires FROM jobs WHERE id = ?", [ctx.job_id]).fetchone()[0]

    tally.during_compute = long_batch
    jobs.run_job(ws, job_id=job_id, owner="me")
    assert seen["after"] > seen["before"]
    assert jobs.get_job(db, job_id)["state"] == "done"
    db.execute("UPDATE jobs SET state = 'running', lease_owner = 'me' WHERE id = ?", [job_id])
    assert real_renew(db, job_id=job_id, owner="me") is True
    assert real_renew(db, job_id=job_id, owner="someone-else") is False

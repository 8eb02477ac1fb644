import threading
import time

import pytest

from services.core import jobs
from services.core.errors import InvalidInput, NotFound
from services.worker import kinds
from services.worker.runner import Worker


class Squares(jobs.BaseKind):
    """A real kind for the runner's tests: squares numbers and stores them in a table."""

    name = "test-squares"
    batch_size = 3

    def __init__(self):
        self.fail_on = set()
        self.crash_at_batch = None
        self.batches = 0
        self.cancel_after_batches = None
        self.finished = threading.Event()

    def start(self, ctx):
        ctx.db.execute("CREATE TABLE IF NOT EXISTS squares (n INTEGER PRIMARY KEY, sq INTEGER)")

    def list_items(self, ctx):
        return [str(i) for i in range(ctx.params["n"])]

    def compute(self, ctx, items):
        self.batches += 1
        if self.crash_at_batch == self.batches:
            raise RuntimeError("power cut")
        return items

    def write(self, ctx, items):
        out = {}
        for it in items:
            if int(it) in self.fail_on:
                out[it] = f"item {it} is unreadable"
                continue
            ctx.db.execute("INSERT INTO squares (n, sq) VALUES (?, ?)", [int(it), int(it) ** 2])
            out[it] = None
        if self.cancel_after_batches == self.batches:
            jobs.cancel_job(ctx.db, job_id=ctx.job_id, actor="tester")
        return out

    def finish(self, ctx):
        self.finished.set()
        return {"sum": ctx.db.execute("SELECT SUM(sq) FROM squares").fetchone()[0]}


@pytest.fixture
def kind():
    k = Squares()
    jobs.KINDS[k.name] = k
    yield k
    jobs.KINDS.pop(k.name, None)


def test_job_runs_all_items_records_failures_and_result(ws, db, kind):
    kind.fail_on = {4}
    job_id = jobs.create_job(db, kind=kind.name, params={"n": 8}, actor="tester")
    assert jobs.run_job(ws, job_id=job_id) == job_id
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["total"], job["done"], job["failed"]) == ("done", 8, 7, 1)
    assert job["result"] == {"sum": sum(i * i for i in range(8)) - 16}
    assert jobs.failed_items(db, job_id)[0]["error"] == "item 4 is unreadable"
    assert db.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'job.launch'").fetchone()[0] == 1


def test_crashed_job_resumes_without_redoing_finished_items(ws, db, kind):
    kind.crash_at_batch = 2
    job_id = jobs.create_job(db, kind=kind.name, params={"n": 8}, actor="tester")
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    assert job["state"] == "failed" and "power cut" in job["error"] and job["done"] == 3
    jobs.resume_job(db, job_id=job_id, actor="tester")
    kind.crash_at_batch = None
    jobs.run_job(ws, job_id=job_id)  # a repeated insert of a finished item would violate the primary key
    job = jobs.get_job(db, job_id)
    assert (job["state"], job["done"]) == ("done", 8)
    assert db.execute("SELECT COUNT(*) FROM squares").fetchone()[0] == 8


def test_a_killed_worker_leaves_a_running_job_that_is_reclaimed_after_its_lease(ws, db, kind):
    job_id = jobs.create_job(db, kind=kind.name, params={"n": 4}, actor="tester")
    # a worker claimed it and died: state running, lease in the future, then expired
    db.execute("UPDATE jobs SET state = 'running', lease_owner = 'dead', lease_expires = ? WHERE id = ?",
               [time.time() + 100, job_id])
    assert jobs.run_job(ws, job_id=job_id) is None  # someone holds the lease
    db.execute("UPDATE jobs SET lease_expires = ? WHERE id = ?", [time.time() - 1, job_id])
    assert jobs.run_job(ws, job_id=job_id) == job_id
    assert jobs.get_job(db, job_id)["state"] == "done"


def test_cancel_between_batches_and_cancel_queued(ws, db, kind):
    kind.cancel_after_batches = 1
    job_id = jobs.create_job(db, kind=kind.name, params={"n": 9}, actor="tester")
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(db, job_id)
    assert job["state"] == "cancelled" and job["done"] == 3
    queued = jobs.create_job(db, kind=kind.name, params={"n": 9}, actor="tester")
    jobs.cancel_job(db, job_id=queued, actor="tester")
    assert jobs.get_job(db, queued)["state"] == "cancelled"
    assert jobs.run_job(ws, job_id=queued) is None


def test_unknown_kind_and_job(db):
    with pytest.raises(InvalidInput, match="unknown job kind"):
        jobs.create_job(db, kind="nope", params={}, actor="t")
    with pytest.raises(NotFound):
        jobs.get_job(db, 12345)
    with pytest.raises(InvalidInput):
        jobs.resume_job(db, job_id=jobs.create_job(db, kind="classify", params={}, actor="t"), actor="t")


def test_a_job_of_a_kind_this_console_does_not_know_fails_with_the_reason(ws, db):
    """A queued job left by another version of the console must not kill the worker."""
    db.execute("INSERT INTO jobs (kind, params, state, total, done, failed, created_by, created_at) "
               "VALUES ('retired-kind', '{}', 'queued', 0, 0, 0, 't', '2026-01-01')")
    job_id = db.execute("SELECT MAX(id) FROM jobs").fetchone()[0]
    assert jobs.run_job(ws, job_id=job_id) == job_id
    job = jobs.get_job(db, job_id)
    assert job["state"] == "failed" and "does not know jobs of kind 'retired-kind'" in job["error"]


def test_the_worker_wires_every_kind():
    kinds.install()
    assert {"grid-search", "sagemaker-train", "sagemaker-tune", "sagemaker-transform", "train", "rescore"} <= set(jobs.KINDS)


def test_worker_thread_runs_queued_jobs(ws, db, kind):
    worker = Worker(ws, poll_seconds=60).start()
    try:
        job_id = jobs.create_job(db, kind=kind.name, params={"n": 5}, actor="tester")
        worker.wake()
        assert kind.finished.wait(timeout=60)
    finally:
        worker.stop()
    assert jobs.get_job(db, job_id)["state"] == "done"


def test_listings_are_newest_first_and_can_keep_to_some_kinds(db, kind):
    squares = [jobs.create_job(db, kind=kind.name, params={"n": n}, actor="tester") for n in range(3)]
    classify = jobs.create_job(db, kind="classify", params={}, actor="tester")
    assert [j["id"] for j in jobs.list_jobs(db)] == [classify, *reversed(squares)]
    assert [j["id"] for j in jobs.list_jobs(db, limit=2)] == [classify, squares[2]]
    mine = jobs.list_jobs(db, kinds=[kind.name], limit=2)
    assert [j["id"] for j in mine] == [squares[2], squares[1]]
    assert mine[0]["params"] == {"n": 2} and mine[0]["result"] is None  # decoded, as get_job returns it
    assert [j["id"] for j in jobs.list_jobs(db, kinds=[kind.name, "classify"])] == [classify, *reversed(squares)]
    assert jobs.list_jobs(db, kinds=[]) == []
    assert jobs.job_ids(db, kind=kind.name, actor="tester") == list(reversed(squares))
    assert jobs.job_ids(db, kind=kind.name, actor="tester", limit=1) == [squares[2]]
    assert jobs.job_ids(db, kind="no-such-kind", actor="tester") == []


def test_a_job_is_active_while_queued_running_or_cancelling(ws, db, kind):
    assert jobs.ACTIVE_STATES == ("queued", "running", "cancelling")
    for state in jobs.ACTIVE_STATES:
        assert jobs.is_active({"state": state})
    for state in ("done", "failed", "cancelled"):
        assert not jobs.is_active({"state": state})
    job_id = jobs.create_job(db, kind=kind.name, params={"n": 2}, actor="tester")
    assert jobs.is_active(jobs.get_job(db, job_id))
    jobs.run_job(ws, job_id=job_id)
    assert not jobs.is_active(jobs.get_job(db, job_id))


def test_time_left_follows_the_pace_of_the_finished_items(db, kind):
    """Issue 20 item 7: the progress of a job says how long is left, from the pace so far (items written in one
    batch are one step); nothing is promised before two steps or once the job is not running."""
    from datetime import datetime

    job_id = jobs.create_job(db, kind=kind.name, params={"n": 10}, actor="tester")
    assert jobs.time_left(db, job_id=job_id) is None  # queued
    db.execute("UPDATE jobs SET state = 'running', total = 10, done = 3, failed = 1 WHERE id = ?", [job_id])
    for item, at in (("0", "2026-01-01T10:00:00.000000Z"), ("1", "2026-01-01T10:00:00.000000Z"),
                     ("2", "2026-01-01T10:00:10.000000Z"), ("3", "2026-01-01T10:00:10.000000Z")):
        db.execute("INSERT INTO job_items (job_id, item, state, updated_at) VALUES (?, ?, ?, ?)",
                   [job_id, item, "failed" if item == "3" else "done", at])
    last = datetime.fromisoformat("2026-01-01T10:00:10+00:00").timestamp()
    assert jobs.time_left(db, job_id=job_id, now=last) == pytest.approx(30.0)  # 6 left at 2 items in 10 s
    assert jobs.time_left(db, job_id=job_id, now=last + 5) == pytest.approx(25.0)
    assert jobs.time_left(db, job_id=job_id, now=last + 99) == 0.0
    db.execute("DELETE FROM job_items WHERE item IN ('2', '3')")
    assert jobs.time_left(db, job_id=job_id, now=last) is None  # one step: no pace yet
    db.execute("UPDATE jobs SET state = 'done' WHERE id = ?", [job_id])
    assert jobs.time_left(db, job_id=job_id) is None


def test_time_left_counts_the_share_of_a_long_item_in_hand(db, kind):
    """A job of one long video has no finished item to take a pace from: the share of its frames written does."""
    from datetime import datetime

    job_id = jobs.create_job(db, kind=kind.name, params={"n": 1}, actor="tester")
    db.execute("UPDATE jobs SET state = 'running', total = 2, started_at = '2026-01-01T10:00:00.000000Z' "
               "WHERE id = ?", [job_id])
    start = datetime.fromisoformat("2026-01-01T10:00:00+00:00").timestamp()
    assert jobs.time_left(db, job_id=job_id, now=start + 60) is None  # nothing finished, no share: no pace
    jobs.set_current(db, job_id=job_id, text="talk.mp4: frame 100 of about 2,000", share=0.05)
    assert jobs.time_left(db, job_id=job_id, now=start + 60) is None  # start-up still weighs: no pace yet
    jobs.set_current(db, job_id=job_id, text="talk.mp4: frame 500 of about 2,000", share=0.25)
    assert jobs.progress(jobs.get_job(db, job_id)) == 0.25
    assert jobs.time_left(db, job_id=job_id, now=start + 60) == pytest.approx(60 * 1.75 / 0.25)  # 0.25 a minute
    jobs.set_current(db, job_id=job_id, text="beyond its end", share=3.0)
    assert jobs.get_job(db, job_id)["current_share"] == 1.0  # a share is 0 to 1


def test_durations_are_said_in_words():
    from services.core.wording import duration_text

    assert [duration_text(s) for s in (None, 20, 90, 3599, 3600, 4800)] == [
        None, "under a minute", "about 2 min", "about 1 h", "about 1 h", "about 1 h 20 min"]

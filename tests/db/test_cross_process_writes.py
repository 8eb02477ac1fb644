"""Writes from several OS processes on one database file (``./run.sh --processes N``): the in-process write lock
does not reach another process, so ``db.atomic()`` and ``immediate(db)`` begin with ``BEGIN IMMEDIATE`` and wait
for SQLite's lock. Read-then-write steps from real processes, released together, lose and double nothing."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from db.database import begin_immediate, connect, immediate

PROCESSES = 3
STEPS = 200
TIMEOUT = 120.0


def _increment(path: str, start: multiprocessing.synchronize.Barrier, use_atomic: bool) -> None:
    """Read the counter, then write it plus one, STEPS times, in a transaction each (a process of its own),
    once every process is ready (a barrier: processes start one after another, and one alone races nobody)."""
    db = connect(path, migrate=False)
    start.wait(TIMEOUT)
    for _ in range(STEPS):
        with db.atomic() if use_atomic else immediate(db):
            (value,) = db.execute("SELECT value FROM counter WHERE id = 1").fetchone()
            db.execute("UPDATE counter SET value = ? WHERE id = 1", [value + 1])
            db.execute("INSERT INTO steps (value) VALUES (?)", [value + 1])
    db.close()


def _run_processes(path: Path, *, use_atomic: bool) -> list[int]:
    ctx = multiprocessing.get_context("spawn")  # real interpreters, nothing shared but the file
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_increment, args=(str(path), start, use_atomic)) for _ in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT)
    alive = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert not alive, f"processes still running after {TIMEOUT} s: {alive}"
    return [p.exitcode for p in procs]


@pytest.fixture
def counter_db(tmp_path):
    path = tmp_path / "shared.db"
    db = connect(path, migrate=False)
    db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("CREATE TABLE steps (value INTEGER PRIMARY KEY)")  # a doubled value would violate the key
    db.execute("INSERT INTO counter VALUES (1, 0)")
    yield path, db
    db.close()


@pytest.mark.parametrize("use_atomic", [True, False], ids=["atomic", "immediate"])
def test_read_then_write_from_several_processes_loses_and_doubles_nothing(counter_db, use_atomic):
    path, db = counter_db
    assert _run_processes(path, use_atomic=use_atomic) == [0] * PROCESSES  # no 'database is locked' anywhere
    assert db.execute("SELECT value FROM counter").fetchone()[0] == PROCESSES * STEPS
    assert db.execute("SELECT COUNT(*), MIN(value), MAX(value) FROM steps").fetchone() == (
        PROCESSES * STEPS, 1, PROCESSES * STEPS)


def test_atomic_takes_the_write_lock_up_front_and_nests_as_savepoints(tmp_path):
    db = connect(tmp_path / "a.db", migrate=False)
    other = sqlite3.connect(str(tmp_path / "a.db"), timeout=0, isolation_level=None)
    db.execute("CREATE TABLE t (x)")
    with db.atomic():
        db.execute("SELECT COUNT(*) FROM t").fetchone()  # only a read so far, yet the write lock is held
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        with pytest.raises(ValueError), db.atomic():  # nested: a savepoint, rolled back alone
            db.execute("INSERT INTO t VALUES (2)")
            raise ValueError
        db.execute("INSERT INTO t VALUES (1)")
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
    other.execute("BEGIN IMMEDIATE")  # released at commit
    other.execute("ROLLBACK")


def test_begin_immediate_retries_a_bounded_number_of_times_then_says_locked(tmp_path):
    path = tmp_path / "b.db"
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    tries = []
    waiter.set_trace_callback(tries.append)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        begin_immediate(waiter, attempts=3)
    assert tries == ["BEGIN IMMEDIATE"] * 3
    holder.execute("COMMIT")
    begin_immediate(waiter)  # free again: the first try takes it
    assert waiter.in_transaction
    waiter.execute("ROLLBACK")


def test_a_failed_commit_or_error_inside_leaves_no_open_transaction(tmp_path):
    db = connect(tmp_path / "c.db", migrate=False)
    db.execute("CREATE TABLE t (x UNIQUE)")
    with pytest.raises(sqlite3.IntegrityError), immediate(db):
        db.execute("INSERT INTO t VALUES (1)")
        db.execute("INSERT INTO t VALUES (1)")
    assert not db.conn.in_transaction
    assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 0

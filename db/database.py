"""Open the workspace database: one connection per thread, WAL, busy timeout, foreign keys.

Multi-step writes use ``db.atomic()`` (sqlite-utils): one transaction, savepoints when nested.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

from db.migrations import apply_migrations

BUSY_TIMEOUT_MS = 30_000
_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()
FILE_MODE = 0o600  # the database holds reviews and password hashes: this account only (issue 19 item 9)


def _make_private(path: Path) -> None:
    """Make the database file and its -wal/-shm 0600 (regular files only; missing ones are skipped)."""
    for name in (str(path), f"{path}-wal", f"{path}-shm"):
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(name)
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE:
                os.chmod(name, FILE_MODE)


def _write_lock(path: Path) -> threading.RLock:
    """One lock per database file in this process (every Streamlit session is a thread of one process)."""
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


def connect(path: str | Path, *, migrate: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    The connection belongs to the calling thread; open one per run, job or thread. The file and its
    -wal/-shm are made 0600 (a new one is created so: SQLite gives its -wal/-shm the file's mode).
    Raises sqlite3.Error if the file cannot be opened, OSError if its mode cannot be set.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    _make_private(path)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    db = sqlite_utils.Database(conn)
    db._write_lock = _write_lock(path)  # type: ignore[attr-defined]
    if migrate:
        apply_migrations(db)
    _make_private(path)
    return db


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE).

    Use it for read-then-write steps that must not interleave across connections (claiming a job or a
    queue item): a deferred transaction that reads first can fail to upgrade when another writer wins.
    Threads of this process queue for the database on a lock first, so they wait their turn instead of
    sleeping in SQLite's busy handler (which backs off up to 100 ms a try); other processes still meet
    at SQLite's lock. Inside an open transaction it adds nothing (the outer one already holds what it holds).
    """
    if db.conn.in_transaction:
        yield db
        return
    lock = getattr(db, "_write_lock", None) or threading.RLock()
    with lock:
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")

"""Open the workspace database: one connection per thread, WAL, busy timeout, foreign keys.

Several processes may share one database file (``./run.sh --processes N``: app processes behind a proxy and one
worker), so every multi-step write takes SQLite's write lock up front: ``db.atomic()`` and ``immediate(db)`` both
begin with ``BEGIN IMMEDIATE`` (savepoints when nested). A deferred transaction that reads first would fail to
upgrade, at once and without waiting, when another process wrote meanwhile (SQLITE_BUSY_SNAPSHOT). Threads of one
process first queue on a lock of their own (SQLite's busy handler backs off up to 100 ms a try); other processes
meet at SQLite's lock, waited for up to ``BUSY_TIMEOUT_MS`` and retried ``BEGIN_ATTEMPTS`` times.
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
BEGIN_ATTEMPTS = 3  # BEGIN IMMEDIATE tries (each waits up to the busy timeout) before SQLITE_BUSY is raised
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
    db = ConsoleDatabase(conn)
    db._write_lock = _write_lock(path)
    if migrate:
        apply_migrations(db)
    _make_private(path)
    return db


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds the lock (Python says 'database is locked')."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def begin_immediate(conn: sqlite3.Connection, *, attempts: int = BEGIN_ATTEMPTS) -> None:
    """``BEGIN IMMEDIATE`` on ``conn``, tried up to ``attempts`` times while another connection (of any process)
    holds the write lock past the busy timeout. Raises sqlite3.OperationalError (database is locked) after the
    last try, or at once for any other error."""
    for attempt in range(1, attempts + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if attempt == attempts or not _is_busy(exc):
                raise


@contextmanager
def immediate(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """A write transaction that takes the write lock up front (BEGIN IMMEDIATE), committed at the end and rolled
    back on any exception.

    Use it for read-then-write steps that must not interleave across connections (claiming a job or a
    queue item): a deferred transaction that reads first can fail to upgrade when another writer wins.
    Threads of this process queue for the database on a lock first, so they wait their turn instead of
    sleeping in SQLite's busy handler (which backs off up to 100 ms a try); other processes still meet
    at SQLite's lock (``begin_immediate``: busy timeout, bounded retry). Inside an open transaction it adds
    nothing (the outer one already holds what it holds). Raises sqlite3.OperationalError when the lock cannot
    be had (see ``begin_immediate``), and whatever the block raises.
    """
    if db.conn.in_transaction:
        yield db
        return
    lock = getattr(db, "_write_lock", None) or threading.RLock()
    with lock:
        begin_immediate(db.conn)
        try:
            yield db
        except BaseException:
            if db.conn.in_transaction:  # an error may already have ended it
                db.conn.execute("ROLLBACK")
            raise
        try:
            db.conn.execute("COMMIT")
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise


class ConsoleDatabase(sqlite_utils.Database):
    """sqlite-utils' Database whose ``atomic()`` is a write transaction safe across processes: the outermost
    block is ``immediate`` (BEGIN IMMEDIATE under this process's write lock), nested ones are savepoints."""

    _write_lock: threading.RLock | None = None

    @contextmanager
    def atomic(self) -> Iterator[ConsoleDatabase]:  # type: ignore[override]
        """One transaction (a savepoint inside an open one). Raises sqlite3.OperationalError when the write lock
        cannot be had (``begin_immediate``), and whatever the block raises (after rolling it back)."""
        if self.conn.in_transaction:
            with super().atomic():
                yield self
            return
        with immediate(self):
            yield self

"""Apply the migrations of the registry that a database has not recorded yet.

Each migration runs once, in its own ``BEGIN IMMEDIATE`` transaction, and is recorded by name in
``_migrations`` in that same transaction: a failing migration is rolled back and recorded nowhere, and the
next run resumes with it. ``registry.MIGRATIONS`` is read at each call (tests substitute a shorter list).
"""

from __future__ import annotations

import sqlite_utils

from db.migrations import registry


def apply_migrations(db: sqlite_utils.Database) -> list[str]:
    """Apply every migration not yet recorded in ``_migrations``; return the names applied.

    Raises sqlite3.Error if a migration fails (that migration is rolled back).
    """
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    applied = []
    for name, fn in registry.MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # another process may have applied it while we waited for the lock
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", [name]).fetchone():
                conn.execute("COMMIT")
                continue
            fn(db)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, datetime('now'))", [name]
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        applied.append(name)
    return applied

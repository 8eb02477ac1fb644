"""m017: the throttle table, and existing accounts get a unique normalised key (the oldest of look-alikes)."""

from __future__ import annotations

import pytest

from db.database import connect
from db.migrations import MIGRATIONS, apply_migrations
from services.access.accounts import authenticate, create_user
from services.core.errors import InvalidInput

GOOD = "correct horse battery staple"


def test_existing_look_alike_accounts_keep_working_and_no_new_one_can_be_made(tmp_path, monkeypatch):
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", [(n, fn) for n, fn in MIGRATIONS if n < "m017"])
    db = connect(tmp_path / "c.db")
    from services.access.accounts import _HASHER

    hashed = _HASHER.hash(GOOD)
    for name, created in (("admin", "2026-01-01"), ("ADMIN", "2026-02-01"), ("Bob", "2026-01-05")):
        db.execute("INSERT INTO users (username, password_hash, roles, disabled, failed_count, locked_until, "
                   "created_at, created_by) VALUES (?, ?, '[\"admin\"]', 0, 0, 0, ?, 'cli:root')", [name, hashed, created])
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS)
    assert apply_migrations(db)[0] == "m017_sign_in_throttle"
    assert dict(db.execute("SELECT username, name_key FROM users").fetchall()) == {
        "admin": "admin", "ADMIN": None, "Bob": "bob"}
    assert db.execute("SELECT count(*) FROM sign_in_failures").fetchone() == (0,)
    assert authenticate(db, username="Admin", password=GOOD, source="x", now=1.0)["username"] == "admin"
    assert authenticate(db, username="ADMIN", password=GOOD, source="x", now=1.0)["username"] == "admin"
    assert authenticate(db, username="BOB", password=GOOD, source="x", now=1.0)["username"] == "Bob"
    for taken in ("Admin", "bob"):
        with pytest.raises(InvalidInput, match="already exists"):
            create_user(db, username=taken, password="another long passphrase", roles=["ops"], actor="cli:root")

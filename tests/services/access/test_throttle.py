"""Sign-in throttling (issue 19 item 4): per (account, address) and per address, so a remote guesser cannot
lock the real user out, a blocked address costs no password hash, and unknown names cost what known ones do."""

from __future__ import annotations

import pytest

from services.access import accounts, throttle
from services.access.accounts import authenticate, create_user, set_password
from services.core.errors import PermissionDenied

GOOD = "correct horse battery staple"
ATTACKER, OFFICE = "203.0.113.9", "10.0.0.2"


class CountingHasher:
    """The real hasher, counting the password checks (each one is an argon2 computation)."""

    def __init__(self, real):
        self.real, self.verifies = real, 0

    def verify(self, hashed, password):
        self.verifies += 1
        return self.real.verify(hashed, password)

    def __getattr__(self, name):
        return getattr(self.real, name)


@pytest.fixture
def hasher(monkeypatch):
    counting = CountingHasher(accounts._HASHER)
    monkeypatch.setattr(accounts, "_HASHER", counting)
    return counting


def _fail(db, *, name="admin", source=ATTACKER, now, match="wrong user name or password"):
    with pytest.raises(PermissionDenied, match=match):
        authenticate(db, username=name, password="not the password", source=source, now=now, sleep=_no_sleep)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"slowed by {seconds} s where no slow-down was due")


def test_a_remote_guesser_cannot_lock_the_admin_out_of_another_address(db):
    create_user(db, username="admin", password=GOOD, roles=["admin"], actor="cli:root")
    t = 1_000_000.0
    for i in range(accounts.FREE_FAILURES):
        _fail(db, now=t + i)
    _fail(db, now=t + 10, match="too many failed sign-ins: try again in")  # the attacker's address is locked out
    slept: list[float] = []
    # One wrong password each time the lock ends, for hours: the admin, elsewhere, is slowed and never locked.
    for _ in range(8):
        until = db.execute("SELECT blocked_until FROM sign_in_failures WHERE account = 'admin' AND address = ?",
                           [ATTACKER]).fetchone()[0]
        t = until + 0.5
        _fail(db, now=t)
        signed = authenticate(db, username="admin", password=GOOD, source=OFFICE, now=t + 0.1, sleep=slept.append)
        assert signed == {"username": "admin", "roles": ["admin"]}
    assert slept and all(s == throttle.ACCOUNT_SLOW_SECONDS for s in slept)
    # The admin's success does not free the attacker, even with the right password from its address.
    with pytest.raises(PermissionDenied, match="try again in"):
        authenticate(db, username="admin", password=GOOD, source=ATTACKER, now=t + 1, sleep=_no_sleep)
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'sign_in.locked'").fetchone()[0] == 2


def test_an_address_failing_across_names_is_blocked_before_any_hash_is_computed(db, hasher):
    create_user(db, username="ann", password=GOOD, roles=["ops"], actor="cli:root")
    t = 2_000_000.0
    for i in range(throttle.ADDRESS_FREE_FAILURES):
        _fail(db, name=f"guess{i}", now=t + i)
    assert hasher.verifies == throttle.ADDRESS_FREE_FAILURES
    for i in range(50):  # a burst while blocked: refused, audited, and not one hash
        _fail(db, name=f"other{i}", now=t + 30 + i / 10, match="from this address: try again in")
    with pytest.raises(PermissionDenied, match="from this address"):  # the right password does not help either
        authenticate(db, username="ann", password=GOOD, source=ATTACKER, now=t + 40, sleep=_no_sleep)
    assert hasher.verifies == throttle.ADDRESS_FREE_FAILURES
    assert db.execute("SELECT count(*) FROM audit_log WHERE action = 'sign_in.blocked'").fetchone()[0] == 51
    # Another address is not concerned; after the block the address may try again (and is blocked longer).
    assert authenticate(db, username="ann", password=GOOD, source=OFFICE, now=t + 41, sleep=_no_sleep)["username"] == "ann"
    after = t + throttle.ADDRESS_FREE_FAILURES - 1 + throttle.ADDRESS_BASE_SECONDS + 1
    _fail(db, name="again", now=after)
    _fail(db, name="again2", now=after + 1, match=f"try again in {int(2 * throttle.ADDRESS_BASE_SECONDS)} s")


def test_unknown_names_take_the_same_path_as_known_ones(db, hasher):
    create_user(db, username="ann", password=GOOD, roles=["ops"], actor="cli:root")
    t = 3_000_000.0
    _fail(db, name="ann", now=t)
    _fail(db, name="nobody", now=t)
    assert hasher.verifies == 2  # an unknown name is checked against a dummy hash: the same work
    for i in range(1, accounts.FREE_FAILURES):
        _fail(db, name="nobody", now=t + i)
    _fail(db, name="nobody", now=t + 9, match="too many failed sign-ins: try again in")  # locked like a real name
    assert hasher.verifies == 1 + accounts.FREE_FAILURES


def test_a_new_password_lifts_every_address_lock_of_the_account(db):
    create_user(db, username="ann", password=GOOD, roles=["ops"], actor="cli:root")
    t = 4_000_000.0
    for i in range(accounts.FREE_FAILURES):
        _fail(db, name="ann", now=t + i)
    set_password(db, username="ann", password="another long passphrase", actor="cli:root")
    assert authenticate(db, username="ann", password="another long passphrase", source=ATTACKER, now=t + 6,
                        sleep=_no_sleep)["username"] == "ann"
    assert db.execute("SELECT failed_count FROM users").fetchone()[0] == 0

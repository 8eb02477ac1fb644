"""Issue 19 item 6, the server's side: a hand-off code opens one session once; the cookie is signed and only its
hash is stored; the session ends on the server at sign-out, idle time, role change, password change and disable."""

from __future__ import annotations

import pytest

from services.access import sessions
from services.access.accounts import create_user, set_disabled, set_password, set_roles
from services.core.errors import PermissionDenied

PASSWORD = "correct horse battery staple"
IDLE = 1800.0


@pytest.fixture
def ann(db):
    create_user(db, username="root", password=PASSWORD, roles=["admin"], actor="cli:test")
    create_user(db, username="ann", password=PASSWORD, roles=["inspector"], actor="cli:test")
    return db


def _open(db, now: float = 1000.0) -> str:  # type: ignore[no-untyped-def]
    return sessions.redeem(db, code=sessions.begin(db, username="ann", now=now), now=now)


def test_a_code_opens_one_session_once_and_expires(ann):
    code = sessions.begin(ann, username="ann", now=1000.0)
    cookie = sessions.redeem(ann, code=code, now=1001.0)
    with pytest.raises(PermissionDenied, match="used up or has expired"):
        sessions.redeem(ann, code=code, now=1002.0)
    late = sessions.begin(ann, username="ann", now=1000.0)
    with pytest.raises(PermissionDenied, match="used up or has expired"):
        sessions.redeem(ann, code=late, now=1000.0 + sessions.HANDOFF_SECONDS + 1)
    found = sessions.resume(ann, cookie=cookie, idle_seconds=IDLE, now=1010.0)
    assert found["username"] == "ann" and found["roles"] == ["inspector"]
    token = cookie.split(".")[0]
    assert not ann.execute("SELECT 1 FROM web_sessions WHERE id_hash = ?", [token]).fetchone()  # hashed only


def test_a_forged_or_altered_cookie_is_no_session(ann):
    cookie = _open(ann)
    token, signature = cookie.split(".")
    other = "B" if token[-1] == "A" else "A"  # a real change: the token may already end in "A"
    flipped = "0" if signature[0] != "0" else "1"
    for forged in (f"{token}.{'0' * 64}", f"{token[:-1]}{other}.{signature}", f"{token}.{flipped}{signature[1:]}",
                   token, "", "x.y"):
        assert forged != cookie
        assert sessions.resume(ann, cookie=forged, idle_seconds=IDLE, now=1001.0) is None


def test_sign_out_and_idle_time_end_the_session_on_the_server(ann):
    cookie = _open(ann)
    sid = sessions.resume(ann, cookie=cookie, idle_seconds=IDLE, now=1001.0)["session"]
    assert sessions.check(ann, session=sid, idle_seconds=IDLE, touch=True, now=1000.0 + IDLE) is None  # used
    assert sessions.check(ann, session=sid, idle_seconds=IDLE, touch=False, now=1000.0 + 2 * IDLE - 1) is None
    sessions.revoke(ann, session=sid, reason="sign-out")
    assert sessions.check(ann, session=sid, idle_seconds=IDLE, touch=True, now=1001.0) == "You signed out."
    assert sessions.resume(ann, cookie=cookie, idle_seconds=IDLE, now=1001.0) is None
    idle = _open(ann, now=5000.0)
    assert sessions.resume(ann, cookie=idle, idle_seconds=IDLE, now=5000.0 + IDLE + 1) is None
    assert sessions.resume(ann, cookie=idle, idle_seconds=IDLE, now=5001.0) is None  # revoked, not only late


@pytest.mark.parametrize("change", [
    lambda db: set_roles(db, username="ann", roles=["inspector", "ops"], actor="root"),
    lambda db: set_password(db, username="ann", password="another long passphrase", actor="root"),
    lambda db: set_disabled(db, username="ann", disabled=True, actor="root"),
], ids=["roles", "password", "disabled"])
def test_an_account_change_ends_every_session_of_it(ann, change):
    import time

    now = time.time()
    cookies = [_open(ann, now=now), _open(ann, now=now)]  # two browsers
    create_user(ann, username="bob", password=PASSWORD, roles=["inspector"], actor="cli:test")
    bob = sessions.redeem(ann, code=sessions.begin(ann, username="bob", now=now), now=now)
    change(ann)
    assert all(sessions.resume(ann, cookie=c, idle_seconds=IDLE, now=now + 1) is None for c in cookies)
    assert sessions.resume(ann, cookie=bob, idle_seconds=IDLE, now=now + 1)["username"] == "bob"


def test_a_disabled_account_gets_no_code_and_no_session(ann):
    code = sessions.begin(ann, username="ann", now=1000.0)
    set_disabled(ann, username="ann", disabled=True, actor="root")
    with pytest.raises(PermissionDenied):
        sessions.redeem(ann, code=code, now=1001.0)
    with pytest.raises(PermissionDenied):
        sessions.begin(ann, username="ann", now=1001.0)

"""Look-alike user names (issue 19 item 11): normalised (NFKC, case-folded), one script, no invisible
characters, unique once normalised; sign-in matches the normalised name."""

from __future__ import annotations

import pytest

from services.access.accounts import authenticate, create_user
from services.access.names import normalise_username
from services.core.errors import InvalidInput, PermissionDenied

GOOD = "correct horse battery staple"


@pytest.mark.parametrize(("name", "why"), [
    ("Admin", "already exists"),
    ("ADMIN", "already exists"),
    ("ａｄｍｉｎ", "already exists"),  # fullwidth
    ("\u0430dmin", "mix scripts"),  # Cyrillic a
    ("adm\u0456n", "mix scripts"),  # Cyrillic i
    ("ad\u200bmin", "invisible"),  # zero-width space
    ("\u202enimda", "invisible"),  # right-to-left override
    ("admin\uff1aops", "colon"),  # fullwidth colon
    ("adm in", "space"),
    ("ad\u00a0min", "space"),  # no-break space
    ("ad<min>", "'<'"),
    ("\u0430\u0440\u0435", "look like Latin"),  # all-Cyrillic "ape"
])
def test_look_alike_names_are_refused_beside_admin(db, name, why):
    create_user(db, username="admin", password=GOOD, roles=["admin"], actor="cli:root")
    with pytest.raises(InvalidInput, match=why):
        create_user(db, username=name, password="a different long passphrase", roles=["ops"], actor="admin")
    assert [r[0] for r in db.execute("SELECT username FROM users")] == ["admin"]


def test_plain_names_in_one_script_are_kept_normalised():
    assert normalise_username("  Ann.Smith@Example.COM ") == "ann.smith@example.com"
    assert normalise_username("José") == "josé" and normalise_username("Jose\u0301") == "josé"  # NFKC
    assert normalise_username("Straße") == "strasse"
    assert normalise_username("Иван") == "иван" and normalise_username("山田たろう") == "山田たろう"
    assert normalise_username("ＪＯＨＮ_2") == "john_2"


def test_sign_in_matches_the_normalised_name(db):
    create_user(db, username="Ann", password=GOOD, roles=["ops"], actor="cli:root")
    assert db.execute("SELECT username, name_key FROM users").fetchone() == ("ann", "ann")
    for typed in ("ann", "ANN", "ＡＮＮ", " Ann "):
        assert authenticate(db, username=typed, password=GOOD, source="x", now=1.0) == {"username": "ann", "roles": ["ops"]}
    with pytest.raises(PermissionDenied, match="wrong user name or password"):  # an invalid name is just unknown
        authenticate(db, username="a\u200bnn", password=GOOD, source="x", now=2.0)

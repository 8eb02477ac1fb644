"""Single sign-on: identities and groups mapped to roles, SSO accounts, refusals, audit."""

from __future__ import annotations

import json

import pytest

from services.access import accounts, sso
from services.core import authz
from services.core.errors import InvalidInput, PermissionDenied
from tests.conftest import REPO

GOOD = "correct horse battery staple"
OKTA = {"is_logged_in": True, "email": "Ines@Example.com", "name": "Ines", "iss": "https://example.okta.com",
        "sub": "00u1", "groups": ["qa-team", "everyone"]}


def _audit(db, action):
    return list(db.query("SELECT actor, target, detail FROM audit_log WHERE action = ? ORDER BY id", [action]))


def test_providers_read_from_the_auth_secrets_section():
    base = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "s"}
    assert sso.providers(None) == [] and sso.providers({}) == []
    assert sso.providers({**base}) == []  # no client configured
    assert sso.providers({**base, "client_id": "c", "client_secret": "x", "server_metadata_url": "https://i/.well-known"}) == [None]
    assert sso.providers({**base, "okta": {"client_id": "c"}, "cognito": {"client_id": "d"}}) == ["cognito", "okta"]
    assert sso.providers({"okta": {"client_id": "c"}}) == []  # redirect_uri and cookie_secret are required


def test_a_mapped_group_signs_in_with_its_roles_and_an_account_row(db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    got = sso.sign_in(db, claims=OKTA, source="10.1.2.3")
    assert got == {"username": "ines@example.com", "roles": ["inspector"]}
    row = db.execute("SELECT auth, password_hash, roles, sso_groups FROM users WHERE username = 'ines@example.com'").fetchone()
    assert row[0] == "oidc" and row[1] is None and json.loads(row[2]) == ["inspector"]
    assert json.loads(row[3]) == ["everyone", "qa-team"]
    detail = json.loads(_audit(db, "sign_in")[0]["detail"])
    assert detail == {"from": "10.1.2.3", "method": "oidc", "issuer": "https://example.okta.com", "roles": ["inspector"]}
    assert authz.allowed(db, actor="ines@example.com", action="reviews.label")
    assert not authz.allowed(db, actor="ines@example.com", action="settings.change")


def test_identity_and_group_mappings_add_up_and_changes_count_at_once(db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    sso.set_mapping(db, kind="identity", subject="INES@example.com", roles=["ops"], actor="cli:root")
    assert sso.sign_in(db, claims=OKTA, source="x")["roles"] == ["inspector", "ops"]
    sso.remove_mapping(db, kind="group", subject="qa-team", actor="cli:root")
    assert authz.roles_of(db, "ines@example.com") == {"ops"}  # recomputed from the stored groups, no new sign-in
    sso.remove_mapping(db, kind="identity", subject="ines@example.com", actor="cli:root")
    assert authz.roles_of(db, "ines@example.com") == frozenset()
    assert [e["target"] for e in _audit(db, "sso.unmap")] == ["group:qa-team", "identity:ines@example.com"]


def test_cognito_groups_claim_is_configurable(db):
    claims = {"email": "bo@example.com", "cognito:groups": ["ops-floor"], "iss": "https://cognito-idp"}
    sso.set_mapping(db, kind="group", subject="ops-floor", roles=["ops"], actor="cli:root")
    with pytest.raises(PermissionDenied, match="no role"):
        sso.sign_in(db, claims=claims, source="x")  # the default claim "groups" is absent
    assert sso.sign_in(db, claims=claims, source="x", groups_claim="cognito:groups")["roles"] == ["ops"]


def test_refusals_are_audited_and_say_what_to_do(db):
    accounts.create_user(db, username="ada@example.com", password=GOOD, roles=["admin"], actor="cli:root")
    with pytest.raises(PermissionDenied, match="ask an admin to map"):
        sso.sign_in(db, claims=OKTA, source="10.0.0.1")  # nothing mapped to Ines
    sso.set_mapping(db, kind="group", subject="everyone", roles=["inspector"], actor="ada@example.com")
    with pytest.raises(PermissionDenied, match="local account"):  # the provider cannot take over a local account
        sso.sign_in(db, claims={**OKTA, "email": "ada@example.com"}, source="10.0.0.1")
    with pytest.raises(PermissionDenied, match="usable 'email' claim"):
        sso.sign_in(db, claims={"sub": "x", "groups": ["everyone"]}, source="10.0.0.1")
    with pytest.raises(PermissionDenied, match="usable"):
        sso.sign_in(db, claims={"email": "cli:root", "groups": ["everyone"]}, source="10.0.0.1")  # no system names
    sso.sign_in(db, claims=OKTA, source="10.0.0.1")
    accounts.set_disabled(db, username="ines@example.com", disabled=True, actor="ada@example.com")
    with pytest.raises(PermissionDenied, match="disabled"):
        sso.sign_in(db, claims=OKTA, source="10.0.0.1")
    refused = [json.loads(e["detail"])["why"] for e in _audit(db, "sign_in.refused")]
    assert len(refused) == 3 and "disabled" in refused[-1]


def test_sso_accounts_have_no_password_and_their_roles_come_from_mappings(db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    sso.sign_in(db, claims=OKTA, source="x")
    with pytest.raises(PermissionDenied, match="wrong user name or password"):
        accounts.authenticate(db, username="ines@example.com", password="", source="x")
    with pytest.raises(InvalidInput, match="single sign-on"):
        accounts.set_password(db, username="ines@example.com", password=GOOD, actor="cli:root")
    with pytest.raises(InvalidInput, match="SSO role"):
        accounts.set_roles(db, username="ines@example.com", roles=["admin"], actor="cli:root")
    assert [u["auth"] for u in accounts.list_users(db, actor="cli:root")] == ["oidc"]


def test_mappings_are_validated_and_a_mapping_ends_set_up_mode(db):
    assert authz.setup_mode(db)
    for kind, subject, roles, why in (("team", "x", ["ops"], "identity or a group"), ("group", " ", ["ops"], "which group"),
                                      ("group", "x", [], "at least one role"), ("group", "x", ["boss"], "unknown: boss")):
        with pytest.raises(InvalidInput, match=why):
            sso.set_mapping(db, kind=kind, subject=subject, roles=roles, actor="cli:root")
    sso.set_mapping(db, kind="group", subject="admins", roles=["admin"], actor="cli:root")
    assert not authz.setup_mode(db)
    assert [m["subject"] for m in sso.mappings(db, actor="cli:root")] == ["admins"]


def test_the_first_admins_group_is_mapped_from_the_command_line(ws, db, capsys):
    from services.cli import main as cli

    assert cli.main(["--data-dir", str(ws.root), "sso-map", "--group", "console-admins", "--role", "admin"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["roles"] == ["admin"]
    assert sso.sign_in(db, claims={"email": "ada@example.com", "groups": ["console-admins"]}, source="x")["roles"] == ["admin"]
    with pytest.raises(SystemExit):  # argparse: an unknown role is a usage error
        cli.main(["--data-dir", str(ws.root), "sso-map", "--group", "nobody-here", "--role", "boss"])
    assert cli.main(["--data-dir", str(ws.root), "sso-map", "--group", "nobody-here"]) == 1  # no role: the message
    assert cli.main(["--data-dir", str(ws.root), "sso-map", "--group", "console-admins", "--remove"]) == 0
    assert cli.main(["--data-dir", str(ws.root), "sso-mappings"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mappings"] == []


def test_the_secrets_example_configures_every_provider_it_documents():
    import tomllib

    example = REPO / ".streamlit" / "secrets.toml.example"
    auth = tomllib.loads(example.read_text())["auth"]
    assert sso.providers(auth) == ["cognito", "entra", "okta"]
    assert all(auth[p]["server_metadata_url"].startswith("https://") for p in ("cognito", "entra", "okta"))


def test_single_sign_on_accounts_are_not_password_accounts(db):
    sso.set_mapping(db, kind="group", subject="qa-team", roles=["inspector"], actor="cli:root")
    sso.sign_in(db, claims=OKTA, source="x")
    assert not accounts.has_password_accounts(db)  # the sign-in page offers single sign-on only
    accounts.create_user(db, username="ann", password=GOOD, roles=["ops"], actor="cli:root")
    assert accounts.has_password_accounts(db)

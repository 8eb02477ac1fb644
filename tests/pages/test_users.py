"""Users and audit page: create an account, change roles, disable and enable, filter and export the log."""

from __future__ import annotations

from services.access.accounts import create_user
from tests.pages.helpers import start_app
from tests.pages.markdown_check import shown_text

GOOD = "correct horse battery staple"


def signed_in_admin(db):
    create_user(db, username="root", password=GOOD, roles=["admin"], actor="cli")
    at = start_app()
    at.text_input(key="signin_user").set_value("root")
    at.text_input(key="signin_password").set_value(GOOD)
    at.button(key="signin_submit").click().run()
    at.switch_page("pages/users.py").run()
    assert not at.exception, at.exception
    return at


def test_an_admin_creates_changes_and_disables_accounts(ws, db):
    at = signed_in_admin(db)
    at.text_input(key="us_new_name").set_value("ann")
    at.text_input(key="us_new_password").set_value("short")
    at.multiselect(key="us_new_roles").set_value(["inspector"])
    at.button(key="us_create_submit").click().run()
    assert any("at least 12" in e.value for e in at.error)  # the policy's message
    at.text_input(key="us_new_name").set_value("ann")
    at.text_input(key="us_new_password").set_value("another long passphrase")
    at.multiselect(key="us_new_roles").set_value(["inspector"])
    at.button(key="us_create_submit").click().run()
    assert [s.value for s in at.success] == ["Created ann (inspector)."]
    at.multiselect(key="us_roles_ann").set_value(["inspector", "ops"])
    at.button(key="us_save_ann").click().run()
    at.button(key="us_toggle_ann").click().run()
    assert db.execute("SELECT roles, disabled FROM users WHERE username = 'ann'").fetchone() == ('["inspector", "ops"]', 1)
    at.button(key="us_toggle_ann").click().run()
    assert db.execute("SELECT disabled FROM users WHERE username = 'ann'").fetchone() == (0,)
    at.button(key="us_toggle_root").click().run()  # an admin cannot lock themselves out
    assert any("your own account" in e.value for e in at.error)


def test_the_audit_log_filters_and_exports(ws, db):
    at = signed_in_admin(db)
    at.text_input(key="us_audit_action").set_value("sign_in").run()
    table = at.dataframe[-1].value  # a read-only table has no widget key in AppTest: the audit tab's is the last
    assert list(table["action"]) == ["sign_in"] and list(table["actor"]) == ["root"]
    at.text_input(key="us_audit_action").set_value("nothing.like.this").run()
    assert any(c.value.startswith("0 entries") for c in at.caption)


def test_an_admin_maps_a_group_to_roles_and_removes_it(ws, db):
    at = signed_in_admin(db)
    assert any("Single sign-on is off" in i.value for i in at.info)
    at.selectbox(key="us_sso_kind").set_value("group")
    at.text_input(key="us_sso_subject").set_value("qa-team")
    at.multiselect(key="us_sso_roles").set_value(["inspector"])
    at.button(key="us_sso_submit").click().run()
    assert [shown_text(s.value) for s in at.success] == ["group qa-team → inspector."]  # as shown
    assert db.execute("SELECT kind, subject, roles FROM sso_roles").fetchall() == [("group", "qa-team", '["inspector"]')]
    at.selectbox(key="us_sso_remove").set_value("group: qa-team").run()
    at.button(key="us_sso_remove_submit").click().run()
    assert db.execute("SELECT COUNT(*) FROM sso_roles").fetchone()[0] == 0
    assert [r[0] for r in db.execute("SELECT action FROM audit_log WHERE action LIKE 'sso.%' ORDER BY id")] == [
        "sso.map", "sso.unmap"]

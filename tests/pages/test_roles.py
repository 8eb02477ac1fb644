"""Per role: the navigation lists exactly the pages the role may use, each of them opens, and every other
page, run around the router (as a deep link to a page file would be), shows a refusal and nothing else."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from services.access.accounts import create_user
from services.core.authz import PERMISSIONS
from tests.pages.helpers import ROOT, file_pages, start_app, texts
from tests.pages.markdown_check import shown_text
from tests.pages.test_sign_in import GOOD, sign_in

PAGE_ACTIONS = {
    "overview": "stats.read", "reviews": "reviews.read", "queue": "reviews.label", "checks": "reviews.label",
    "dashboard": "stats.read", "lines": "lines.read", "quality": "quality.manage", "reused": "quality.manage",
    "dataset_filter": "jobs.manage", "face_blur": "jobs.manage",
    "jobs": "jobs.manage", "models": "models.manage", "sagemaker": "models.manage", "settings": "settings.change",
    "users": "users.manage",
}
PEOPLE = {"ines": ["inspector"], "otto": ["ops"], "ada": ["admin"]}


def test_every_page_file_is_covered():
    helpers = {"common", "__init__", "network", "session", "session_routes", "photos", "run_scope", "markup",
               "label_editor", "job_panel"}  # not pages
    files = {p.stem for p in (ROOT / "pages").glob("*.py")} - helpers
    assert files == set(PAGE_ACTIONS)


@pytest.mark.parametrize("person", sorted(PEOPLE))
def test_each_role_gets_its_pages_and_is_refused_the_rest(ws, db, person):
    for name, roles in PEOPLE.items():
        create_user(db, username=name, password=GOOD, roles=roles, actor="cli:root")
    roles = set(PEOPLE[person])
    mine = {page for page, action in PAGE_ACTIONS.items() if PERMISSIONS[action] & roles}
    assert mine and mine != set(PAGE_ACTIONS) or "admin" in roles

    at = start_app()
    sign_in(at, person, GOOD)
    assert file_pages(at) == {f"{page}.py" for page in mine}
    for page in sorted(mine):
        at.switch_page(f"pages/{page}.py")
        at.run()
        assert not at.exception, (page, at.exception)
        assert not [e for e in texts(at.error) if "may not" in e], page

    for page in sorted(set(PAGE_ACTIONS) - mine):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(f"pages/{page}.py")  # not registered for this session: the router never serves it
        direct = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=60)
        direct.session_state["auth_user"] = {"username": person, "roles": PEOPLE[person], "last_seen": time.time()}
        direct.run()
        assert not direct.exception, (page, direct.exception)
        errors = texts(direct.error)
        assert len(errors) == 1 and f"{person} may not" in errors[0] and "role" in errors[0], (page, errors)
        assert not (direct.button or direct.text_input or direct.selectbox or direct.dataframe), page


def test_a_role_taken_away_counts_on_the_next_run(ws, db):
    from services.access.accounts import set_roles

    create_user(db, username="ada", password=GOOD, roles=["admin"], actor="cli:root")
    at = start_app()
    sign_in(at, "ada", GOOD)
    at.switch_page("pages/settings.py")
    at.run()
    assert "Settings" in texts(at.title)
    set_roles(db, username="ada", roles=["ops"], actor="cli:root")
    at.run()  # the same address now answers with the role it needs, and nothing of the page
    assert texts(at.title) == ["Settings"] and "Confidence routing" not in texts(at.subheader)
    assert "ada may not change settings: that needs the admin role" in shown_text(texts(at.error)[0])
    assert "settings.py" not in file_pages(at) and "lines.py" in file_pages(at)
    assert db.execute("SELECT target FROM audit_log WHERE action = 'access.refused'").fetchall() == [("page:Settings",)]


def test_parts_of_a_page_follow_the_permission_of_what_they_do(ws, db):
    """The empty Overview links to Jobs for those who may run jobs; the line targets editor is for those who
    may set targets (the same declared permissions as the pages and services, not a role named in the page)."""
    from tests.pages.test_lines import seed

    seed(db)  # lines and a target, in set-up mode
    for name, roles in PEOPLE.items():
        create_user(db, username=name, password=GOOD, roles=roles, actor="cli:root")
    for person, may_run_jobs in (("otto", False), ("ada", True)):
        at = start_app()
        sign_in(at, person, GOOD)
        at.switch_page("pages/overview.py")
        at.run()
        assert not at.exception, at.exception
        assert [p.proto.page for p in at.page_link] == (["jobs"] if may_run_jobs else []), person
        at.switch_page("pages/lines.py")
        at.run()
        assert not at.exception, at.exception
        assert at.button(key="lines_target_save"), person  # ops and admins set line targets

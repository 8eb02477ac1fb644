"""app.py: navigation over the pages, sidebar identity, first-run guidance on an empty workspace."""

from __future__ import annotations

import pytest

from tests.pages.helpers import start_app

PAGES = {
    "pages/overview.py": "Overview",
    "pages/reviews.py": "Reviews",
    "pages/queue.py": "Review queue",
    "pages/jobs.py": "Jobs",
    "pages/settings.py": "Settings",
}


def test_navigation_registers_every_page_and_each_one_renders(ws):
    at = start_app()
    assert at.title[0].value == "Overview"  # the first page is the default
    # the helper module beside the pages is not in the navigation (AppTest lists the known pages)
    with pytest.raises(ValueError, match="Could not find a navigation page") as err:
        at.switch_page("pages/common.py")
    for path in PAGES:
        assert path in str(err.value)
    for path, title in PAGES.items():
        at.switch_page(path).run()
        assert not at.exception, (path, at.exception)
        assert [t.value for t in at.title] == [title], path


def test_sidebar_names_the_user_and_the_workspace(ws):
    at = start_app()
    captions = [c.value for c in at.sidebar.caption]
    assert any("local operator" in c and "admin" in c for c in captions), captions
    assert any(str(ws.root) in c for c in captions), captions


def test_only_admins_see_the_workspace_path(ws, db):
    """Issue 20 item 2: the workspace's server path is for admins; Overview stays the home page whatever section
    comes first for the role (item 8; the order and the whole navigation at once are checked in Chromium by
    tests/e2e/test_walk.py)."""
    from services.access.accounts import create_user
    from tests.pages.test_sign_in import GOOD, sign_in

    create_user(db, username="otto", password=GOOD, roles=["ops"], actor="cli:root")
    at = start_app()
    sign_in(at, "otto", GOOD)
    assert not at.exception and [t.value for t in at.title] == ["Overview"]
    captions = [c.value for c in at.sidebar.caption]
    assert any("otto" in c for c in captions) and not any(str(ws.root) in c for c in captions), captions


def test_empty_workspace_shows_first_step_and_no_model_warning(ws):
    at = start_app()
    assert len(at.info) == 1
    assert "First step" in at.info[0].value and "Jobs page" in at.info[0].value
    assert len(at.warning) == 1
    assert "No model has been trained yet" in at.warning[0].value
    assert {m.label: m.value for m in at.metric}["Photos in"] == "0"
    assert [(p.proto.page, p.proto.label) for p in at.page_link] == [("jobs", "Go to Jobs to import")]

"""Issue 19 item 5: a page that refreshes itself (``@st.fragment(run_every=...)``) is not activity; only a
person's actions keep a session alive, and the idle timeout signs the user out while the fragment runs."""

from __future__ import annotations

import dataclasses

import pytest
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import local_script_runner

from services.access.accounts import create_user
from tests.pages.helpers import start_app
from tests.pages.test_lines import seed
from tests.pages.test_sign_in import GOOD, captions, sign_in


def timer_rerun(at, monkeypatch) -> None:
    """Run only the page's self-refreshing fragments, as the browser's timer asks (``is_auto_rerun``)."""
    fragment_ids = list(at._fragment_storage._fragments)
    assert fragment_ids, "the page has no fragment"

    def auto_rerun(**kwargs):  # type: ignore[no-untyped-def]
        return dataclasses.replace(RerunData(**kwargs), fragment_id_queue=fragment_ids, is_auto_rerun=True)

    with monkeypatch.context() as patch:
        patch.setattr(local_script_runner, "RerunData", auto_rerun)
        at.run()


@pytest.mark.parametrize("page", ["pages/jobs.py", "pages/lines.py"])
def test_self_refreshing_page_is_not_activity_and_the_idle_timeout_still_signs_out(ws, db, monkeypatch, page):
    seed(db)  # with lines, Line throughput refreshes its figures
    create_user(db, username="ann", password=GOOD, roles=["admin"], actor="root")
    at = start_app()
    sign_in(at, "ann", GOOD)
    at.switch_page(page).run()
    assert not at.exception and any("**ann**" in c for c in captions(at))

    idle_since = at.session_state["auth_user"]["last_seen"] - 29 * 60  # 29 minutes without a person's action
    at.session_state["auth_user"]["last_seen"] = idle_since
    timer_rerun(at, monkeypatch)
    assert not at.exception, at.exception
    assert at.session_state["auth_user"]["last_seen"] == idle_since  # the refresh did not count

    at.session_state["auth_user"]["last_seen"] = idle_since - 2 * 60  # now 31 minutes
    timer_rerun(at, monkeypatch)
    assert not at.exception, at.exception
    assert "auth_user" not in at.session_state
    at.run()  # whatever the fragment rerun showed, the next run is the sign-in page
    assert "Sign in" in [t.value for t in at.title] and not captions(at)


def test_a_persons_action_still_counts_as_activity(ws, db):
    create_user(db, username="ann", password=GOOD, roles=["admin"], actor="root")
    at = start_app()
    sign_in(at, "ann", GOOD)
    at.switch_page("pages/jobs.py").run()
    at.session_state["auth_user"]["last_seen"] -= 29 * 60
    before = at.session_state["auth_user"]["last_seen"]
    at.run()  # a full rerun, as a widget or navigation asks for
    assert at.session_state["auth_user"]["last_seen"] > before

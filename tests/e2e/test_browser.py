"""End to end in a real browser: the app served by streamlit, driven by Playwright in Debian's Chromium."""

from __future__ import annotations

import json
import os

import pytest
from PIL import Image

from services.core.storage import ObjectStore
from services.reviews.ingest import ingest_manifest
from tests.e2e.console import CHROMIUM, SETUP, console_env, serve

pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium not found (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def photos_queued() -> int:
    return 2


@pytest.fixture
def accounts() -> list[tuple[str, str, list[str]]]:
    """Local accounts to create before the server starts (none: set-up mode, the local operator)."""
    return []


@pytest.fixture
def server(ws, tmp_path, photos_queued, accounts):
    from services.access.accounts import create_user

    db = ws.db()
    for username, password, roles in accounts:
        create_user(db, username=username, password=password, roles=roles, actor="cli:test")
    photos = []
    for i, color in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)][:photos_queued]):
        path = tmp_path / f"p{i}.jpg"
        Image.new("RGB", (320, 240), color).save(path)
        photos.append(path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"review_id": f"r{i}", "review_type": "product", "image_uris": [str(p)],
                                            "text": "great **product**"}) + "\n" for i, p in enumerate(photos)))
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    db.execute("UPDATE images SET status = 'queued', queue_reason = 'no_model'")
    with serve(console_env(ws.root)) as url:
        yield url, db


def _browser(p):  # type: ignore[no-untyped-def]
    return p.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync"],
    )


def test_inspector_labels_queued_photos_by_mouse_and_keyboard(server):
    url, db = server
    with pw.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/queue" + SETUP)
        page.get_by_text("2 photos waiting").wait_for(timeout=60_000)
        page.get_by_text("No model prediction: no model had been trained").wait_for()  # (the queue reason says it too)
        page.get_by_text("great **product**").wait_for()  # customer text shown verbatim, not as markdown
        page.get_by_role("radiogroup").get_by_text("product", exact=True).click()
        page.get_by_text("Credit rule: photo is a product shot").first.wait_for()
        page.get_by_role("button", name="Submit label").click()
        page.get_by_text("1 photo waiting").wait_for(timeout=30_000)
        page.get_by_text("Keyboard: 1–4").first.wait_for()  # a rerun may briefly show two
        page.mouse.click(5, 5)  # focus the page, not a widget
        page.keyboard.press("1")  # "1 · package": decides the second photo at once
        page.get_by_text("The queue is empty").wait_for(timeout=30_000)
        page.goto(url + "/" + SETUP)
        page.get_by_text("Decided by people", exact=True).wait_for(timeout=60_000)
        browser.close()
    rows = db.execute("SELECT label, source, credit FROM decisions").fetchall()
    assert rows == [("product", "human", 1), ("package", "human", 0)]


@pytest.mark.parametrize("photos_queued", [3])
def test_three_photos_labelled_with_the_keyboard_only(server):
    url, db = server
    with pw.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/queue" + SETUP)
        page.get_by_text("3 photos waiting").wait_for(timeout=60_000)
        # a deep link as the fresh server's first visit still runs through app.py (navigation, identity)
        page.get_by_text("Signed in as").wait_for()
        page.get_by_role("link", name="Label quality").wait_for()
        ready = page.get_by_role("button", name="4 · half length").first  # a rerun may briefly show two
        for key, waiting in (("2", "2 photos waiting"), ("4", "1 photo waiting"), ("U", "2 photos waiting"),
                             ("3", "1 photo waiting")):
            ready.wait_for(timeout=30_000)  # the shortcuts exist once their buttons are drawn
            page.mouse.click(5, 5)  # focus the page, not a widget
            page.keyboard.press(key)
            page.get_by_text(waiting).wait_for(timeout=30_000)
            if key == "U":
                page.get_by_text("Undid your half length").wait_for()
        ready.wait_for(timeout=30_000)
        page.mouse.click(5, 5)
        page.keyboard.press("1")
        page.get_by_text("The queue is empty").wait_for(timeout=30_000)
        browser.close()
    current = db.execute("SELECT r.id, d.label, d.decided_by FROM images i JOIN reviews r ON r.id = i.review_id "
                         "JOIN decisions d ON d.id = i.decision_id ORDER BY r.id").fetchall()
    assert current == [("r0", "product", "local operator"), ("r1", "full_length", "local operator"),
                       ("r2", "package", "local operator")]
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 4  # the undone one is kept, not current
    kinds = db.execute("SELECT action, COUNT(*) FROM queue_events GROUP BY action ORDER BY action").fetchall()
    # the undone photo is claimed again; the one held meanwhile goes back as a skip
    assert kinds == [("answer", 4), ("claim", 5), ("skip", 1), ("undo", 1)]
    assert db.execute("SELECT COUNT(*) FROM active_answers WHERE seconds > 0").fetchone()[0] == 3


def _sign_in(page, username: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.parametrize("accounts", [[("ann", "correct horse battery staple", ["inspector"])]])
def test_sign_in_refuses_a_wrong_password_and_an_inspector_sees_only_inspector_pages(server):
    url, db = server
    with pw.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page()
        page.goto(url + "/settings")  # an admin page by its URL, before signing in: only the sign-in form
        page.get_by_label("User name").wait_for(timeout=60_000)
        assert page.get_by_text("Confidence routing").count() == 0
        _sign_in(page, "ann", "wrong password here")
        page.get_by_text("wrong user name or password").wait_for(timeout=30_000)
        _sign_in(page, "ann", "correct horse battery staple")
        page.get_by_text("(inspector)").wait_for(timeout=30_000)
        nav = page.get_by_test_id("stSidebarNav")
        nav.get_by_text("Review queue").wait_for(timeout=30_000)  # the navigation may draw after the caption
        assert nav.get_by_text("Review queue").count() == 1
        for admin_page in ("Settings", "Jobs", "Label quality", "Dataset filter", "Line throughput"):
            assert nav.get_by_text(admin_page, exact=True).count() == 0, admin_page
        page.goto(url + "/settings")  # by its URL as an inspector (the session cookie keeps her signed in): not served
        page.get_by_text("(inspector)").wait_for(timeout=60_000)
        page.get_by_text("ann may not change settings: that needs the admin role").wait_for(timeout=30_000)
        assert page.get_by_text("Confidence routing").count() == 0
        browser.close()
    actions = [r[0] for r in db.execute("SELECT action FROM audit_log WHERE action LIKE 'sign_in%' ORDER BY id")]
    assert actions == ["sign_in.failed", "sign_in"]
    refused = db.execute("SELECT actor, target FROM audit_log WHERE action = 'access.refused'").fetchall()
    assert ("ann", "page:Settings") in refused  # the deep link, answered after each sign-in


def test_an_admin_starts_a_grid_search_and_reads_its_report(server, ws, samples):
    """The Models page in a real browser: a head grid search started by mouse, run by the job runner (here on
    the test's thread: the server's worker is off), then its table, chart and per-point report."""
    from services.core import jobs
    from services.models.training import import_folder

    url, db = server
    import_folder(db, root=str(samples), store=ObjectStore(), actor="cli:test")
    with pw.sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(url + "/models" + SETUP)
        page.get_by_text("No grid search yet.").wait_for(timeout=60_000)
        page.get_by_role("button", name="Start grid search").click()
        page.get_by_text("grid search #").first.wait_for(timeout=30_000)
        job_id = db.execute("SELECT id FROM jobs WHERE kind = 'grid-search'").fetchone()[0]
        assert jobs.run_job(ws, job_id=job_id) == job_id
        page.goto(url + "/models" + SETUP)  # a new page load is a new session: it presents the token again
        page.get_by_text("Cross-validated macro-F1").first.wait_for(timeout=60_000)
        page.get_by_text("Grid point").wait_for()
        page.get_by_role("button", name="Train a version from this point").wait_for()
        browser.close()
    assert db.execute("SELECT COUNT(*) FROM grid_points").fetchone()[0] == 4  # C = 0.1, 0.3, 1, 3

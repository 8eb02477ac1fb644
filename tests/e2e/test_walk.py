"""A new user's walk (issue 20): each role signs in, in Chromium at 1440 x 900, and opens every page it has. A page
fails the walk on exception text, raw Python reprs (``{'``, ``[{'``), a caption naming a server path, or a metric
label cut off. Every page is saved as a screenshot under ``SCREENSHOTS/test_every_role_walks_every_page/`` (set
REVIEW_CONSOLE_SCREENSHOTS to put them elsewhere), so a reviewer can look at them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from services.core.authz import PERMISSIONS
from services.core.storage import ObjectStore
from services.reviews.ingest import Row, ingest_manifest, ingest_rows
from tests.e2e.console import CHROMIUM, ROOT, console_env, serve
from tests.pages.test_roles import PAGE_ACTIONS

pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip("Chromium not found (apt-get install chromium)", allow_module_level=True)

SCREENSHOTS = Path(os.environ.get("REVIEW_CONSOLE_SCREENSHOTS") or ROOT / "benchmarks" / "out" / "screenshots")
PASSWORD = "correct horse battery staple"
PEOPLE = {"ada": "admin", "ines": "inspector", "otto": "ops"}
TITLES = {"overview": "Overview", "reviews": "Reviews", "queue": "Review queue", "checks": "Yes/no checks",
          "dashboard": "Inspector dashboard", "lines": "Line throughput", "quality": "Label quality",
          "reused": "Reused & catalog photos", "dataset_filter": "Dataset filter", "face_blur": "Face blurring", "jobs": "Jobs",
          "models": "Models", "settings": "Settings", "sagemaker": "SageMaker", "users": "Users and audit"}
# an absolute path of two parts or more (not "1/2" or "km/h"), or a storage URI
SERVER_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+[\w.@+-]*|\b(?:s3|file)://\S+")
REPRS = ("{'", "[{'")
FIRST_SECTION = {"admin": "Administration", "inspector": "Inspection", "ops": "Operations"}
SETTLED = """() => {
    const app = document.querySelector('[data-testid="stApp"]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && Array.from(document.images).every(i => i.complete)
        && !document.querySelector('[data-testid="stSkeleton"]');  // widgets whose code is still loading
}"""
CUT_OFF = """() => Array.from(document.querySelectorAll('[data-testid="stMetricLabel"]')).filter(label =>
    [label, ...label.querySelectorAll('*')].some(e => {
        const s = getComputedStyle(e);
        return e.clientWidth > 0 && (s.overflowX === 'hidden' || s.textOverflow === 'ellipsis')
            && e.scrollWidth > e.clientWidth + 1;
    })).map(label => label.innerText)"""
CAPTIONS = ('[data-testid="stMain"] [data-testid="stCaptionContainer"], '
            '[data-testid="stMain"] [data-testid="stImageCaption"], [data-testid="stMain"] figcaption')


@pytest.fixture
def walked(trained_ws, tmp_path):
    """A trained workspace with reviews of every kind a new user meets: photos queued for people, one decided,
    one imported from a folder before ids were neutral (its id is its path), and the three roles' accounts."""
    from services.access.accounts import create_user
    from services.worker import kinds
    from tests.pages.helpers import run_kind_now

    kinds.install()
    db = trained_ws.db()
    folder = tmp_path / "reviews" / "full_length"  # a folder that names the answer
    photos = []
    for i, color in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]):
        photos.append(folder / f"p{i}.jpg")
        photos[-1].parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (640, 480) if i % 2 else (480, 640), color).save(photos[-1])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({"review_id": f"r{i}", "review_type": "product", "image_uris": [str(p)],
                                            "text": "great product", "user_id": f"u{i}"}) + "\n"
                                for i, p in enumerate(photos[:3])))
    ingest_manifest(db, uri=str(manifest), store=ObjectStore(), actor="cli:test")
    ingest_rows(db, rows=[Row(1, str(photos[3]), "style", [str(photos[3])])], store=ObjectStore(),
                batch=str(folder), actor="cli:test")  # the old folder import: the review id is the path
    run_kind_now(trained_ws, db, "classify")  # before the first account: set-up mode may run jobs
    for name, role in PEOPLE.items():
        create_user(db, username=name, password=PASSWORD, roles=[role], actor="cli:test")
    db.execute("UPDATE images SET status = 'queued', queue_reason = 'low_confidence', decision_id = NULL "
               "WHERE review_id != 'r0'")
    # a likely mistake: ines labels a photo against a model confident enough to decide it
    from services.core.config import CLASSES, set_setting
    from services.hitl.answers import submit
    from services.hitl.queue import claim_next

    set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 0.5), actor="cli:test")
    set_setting(db, key="overlap_rate", value=0.0, actor="cli:test")
    set_setting(db, key="gold_rate", value=0.0, actor="cli:test")
    first = claim_next(db, inspector="ines")
    submit(db, image_id=first["id"], label="package" if first["prediction"]["label"] != "package" else "product",
           actor="ines")
    yield trained_ws, db
    db.close()


def _sign_in(page, url: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(url + "/")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("Signed in as").wait_for(timeout=60_000)


def _problems(page, *, workspace: str) -> list[str]:  # type: ignore[no-untyped-def]
    """What is wrong on the page on screen."""
    found = []
    main = page.get_by_test_id("stMain").inner_text()
    if page.get_by_test_id("stException").count() or "Traceback (most recent call last)" in main:
        found.append("exception: " + main[:300])
    if page.get_by_text("Page not found").count():
        found.append("Streamlit answered 'Page not found'")
    found += [f"raw repr {r!r}: ...{main[max(0, main.index(r) - 60):main.index(r) + 60]}..." for r in REPRS if r in main]
    for caption in page.locator(CAPTIONS).all_inner_texts():
        if SERVER_PATH.search(caption) or workspace in caption:
            found.append(f"server path in a caption: {caption!r}")
    found += [f"metric label cut off: {label!r}" for label in page.evaluate(CUT_OFF)]
    return found


def _zoom(page, shots: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 20 item 4: Z fills the screen with the photo; 4x pans (the box scrolls both ways)."""
    page.mouse.click(700, 5)  # focus the page, not a widget
    page.keyboard.press("z")
    fit = page.locator('[data-zoom="fit"] img')
    fit.wait_for(timeout=30_000)
    page.wait_for_function(SETTLED, timeout=60_000)
    box = fit.bounding_box()
    assert box and box["height"] >= 0.8 * (900 - 140) and box["width"] >= 0.5 * 1000, box  # was 540 x 720 at most
    page.screenshot(path=str(shots / "inspector-queue-zoomed.png"))
    page.get_by_test_id("stMain").get_by_text("4×", exact=True).click()
    page.locator('[data-zoom="4x"]').wait_for(timeout=30_000)
    page.wait_for_function(SETTLED, timeout=60_000)
    pans = page.evaluate("""() => { const b = document.querySelector('[data-zoom="4x"]');
        b.scrollLeft = 300; b.scrollTop = 300;
        return [b.scrollWidth > b.clientWidth, b.scrollHeight > b.clientHeight, b.scrollLeft, b.scrollTop]; }""")
    assert pans == [True, True, 300, 300], pans
    page.screenshot(path=str(shots / "inspector-queue-zoomed-4x.png"))


def _cut_off_is_seen(page) -> bool:  # type: ignore[no-untyped-def]
    """The cut-off check itself finds a label too long for its box (so a pass means something)."""
    return page.evaluate("""(check) => {
        const probe = document.createElement('div');
        probe.setAttribute('data-testid', 'stMetricLabel');
        probe.style.cssText = 'width:40px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis';
        probe.innerText = 'Decided automatically by the model';
        document.body.appendChild(probe);
        const found = eval(check)();
        probe.remove();
        return found.includes('Decided automatically by the model');
    }""", CUT_OFF)


def test_every_role_walks_every_page(walked, request):
    ws, db = walked
    shots = SCREENSHOTS / request.node.name
    problems: dict[str, list[str]] = {}
    with serve(console_env(ws.root)) as url, pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        for username, role in PEOPLE.items():
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            _sign_in(page, url, username)
            assert _cut_off_is_seen(page)
            mine = [stem for stem, action in PAGE_ACTIONS.items() if role in PERMISSIONS[action]]
            assert mine, role
            # issue 20 item 8: every page of the role at once (no "View 5 more"), its daily section first
            nav = page.get_by_test_id("stSidebarNav")
            nav.get_by_text(TITLES[mine[0]], exact=True).wait_for(timeout=30_000)
            hidden = [TITLES[stem] for stem in mine if not nav.get_by_text(TITLES[stem], exact=True).is_visible()]
            if hidden or nav.get_by_test_id("stSidebarNavViewButton").count():
                problems[f"{role}: navigation"] = [f"not shown at once: {hidden}"]
            if page.get_by_test_id("stNavSectionHeader").count():
                assert page.get_by_test_id("stNavSectionHeader").first.inner_text() == FIRST_SECTION[role]
            if role != "admin" and str(ws.root) in page.get_by_test_id("stSidebar").inner_text():
                problems[f"{role}: sidebar"] = ["the workspace's server path is shown"]
            for stem in mine:
                page.goto(f"{url}/{'' if stem == 'overview' else stem}")  # the default page has no path of its own
                page.get_by_test_id("stMain").get_by_role("heading", name=TITLES[stem], exact=True).first.wait_for(
                    timeout=60_000)
                page.wait_for_function(SETTLED, timeout=60_000)
                if found := _problems(page, workspace=str(ws.root)):
                    problems[f"{role}: {TITLES[stem]}"] = found
                # the page scrolls inside the app, not the document: a viewport as tall as the page shows all of it
                tall = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                page.set_viewport_size({"width": 1440, "height": max(900, min(int(tall) + 40, 8000))})
                page.wait_for_function(SETTLED, timeout=60_000)
                shots.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shots / f"{role}-{stem}.png"))
                page.set_viewport_size({"width": 1440, "height": 900})
                if stem == "queue" and role == "inspector":
                    _zoom(page, shots)
                if stem == "quality":  # issue 20 item 11: the photos beside the likely mistakes
                    page.get_by_role("tab", name="Likely mistakes").click()
                    page.get_by_text("1 photo: a confident model against one inspector").wait_for(timeout=30_000)
                    page.wait_for_function(SETTLED, timeout=60_000)
                    page.screenshot(path=str(shots / "admin-quality-likely-mistakes.png"))
            context.close()
        browser.close()
    assert not problems, json.dumps(problems, indent=1)
    pages = sum(1 for role in PEOPLE.values() for action in PAGE_ACTIONS.values() if role in PERMISSIONS[action])
    assert len(list(shots.glob("*-*.png"))) == pages + 3  # every page, the zoomed queue twice, likely mistakes

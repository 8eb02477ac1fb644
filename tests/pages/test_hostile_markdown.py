"""Text from customers, files and users shows literally wherever a page renders markdown (issue 19): a photo path
with ``![x](...)`` (shown to admins in a code block, issue 20) makes no image the browser would fetch, a name with a link or a bare URL or e-mail address
makes no link, on Review queue, Review detail, Label quality and Users and audit."""

from __future__ import annotations

from services.core import audit
from services.hitl.answers import submit
from services.hitl.queue import claim_next
from tests.pages.helpers import classify_now, seed_reviews, start_app, texts
from tests.pages.markdown_check import live_parts, shown_text
from tests.pages.test_users import signed_in_admin

FOLDER = "![x](evil.example-p.png) see www.evil.example"  # a file-system path part: no slash
PRODUCT = "[click](javascript:alert(1)) https://evil.example/buy"
USER = "bob@evil.example"


def rendered(at) -> list[str]:
    """Every piece of markdown source the page sent: markdown, captions, alerts, headings, expander labels and
    image captions."""
    out = []
    for elements in (at.markdown, at.caption, at.error, at.warning, at.info, at.success, at.main.subheader, at.title):
        out += texts(elements)
    out += [e.label for e in at.expander]
    out += [c for image in at.image for c in image.captions]
    return out


def assert_inert(at) -> list[str]:
    assert not at.exception, at.exception
    sources = rendered(at)
    for source in sources:
        assert live_parts(source) == [], source
    return [shown_text(s) for s in sources]


def _seed(ws, db, tmp_path, n: int = 1) -> list[int]:
    seed_reviews(db, tmp_path / FOLDER, [
        {"review_id": f"r{k}", "review_type": "product", "product": PRODUCT, "user_id": USER} for k in range(n)])
    classify_now(ws, db)
    return [r[0] for r in db.execute("SELECT id FROM images ORDER BY review_id")]


def test_review_queue_and_review_detail_show_paths_and_names_literally(ws, db, tmp_path):
    _seed(ws, db, tmp_path)
    at = start_app("pages/queue.py")
    shown = assert_inert(at)
    assert any(PRODUCT in s and USER in s for s in shown), shown  # product and user shown, as they are
    # the photo's path is no caption any more (issue 20 item 2): for admins, a code block under Details, literal
    assert not any(FOLDER in s for s in shown), shown
    assert any(FOLDER in c.value for c in at.code), [c.value for c in at.code]

    at.switch_page("pages/reviews.py").run()
    at.selectbox(key="rv_detail").set_value("r0").run()
    shown = assert_inert(at)
    assert any(PRODUCT in s and USER in s for s in shown), shown
    assert not any(FOLDER in s for s in shown), shown
    assert any(FOLDER in c.value for c in at.code), [c.value for c in at.code]


def test_label_quality_adjudication_shows_the_photo_path_literally(ws, db, tmp_path):
    ids = _seed(ws, db, tmp_path, n=2)
    db.execute("UPDATE images SET required_answers = 2 WHERE id = ?", [ids[0]])
    for inspector, label in [("ann", "product"), ("cat", "package")]:
        item = claim_next(db, inspector=inspector, skip=ids[1:])
        assert item is not None and item["id"] == ids[0]
        submit(db, image_id=ids[0], label=label, actor=inspector)
    at = start_app("pages/quality.py")
    shown = assert_inert(at)
    assert not any(FOLDER in s for s in shown), shown  # under Details, in a code block (issue 20 item 2)
    assert any(FOLDER in c.value for c in at.code), [c.value for c in at.code]


def test_users_and_audit_show_user_names_literally(ws, db):
    at = signed_in_admin(db)
    for name in ("![x](//evil.example/u.png)", USER):  # an account from before names were checked; a valid e-mail
        db.execute("INSERT INTO users (username, password_hash, roles, disabled, failed_count, created_at, auth) "
                   "VALUES (?, 'x', '[\"inspector\"]', 0, 0, '2026-01-01T00:00:00Z', 'password')", [name])
    audit.record(db, actor="![y](//evil.example/a.png)", action="sign_in.failed", target=USER)
    at.run()
    shown = assert_inert(at)
    assert any(s.startswith("![x](//evil.example/u.png) · inspector") for s in shown), shown
    assert any(s.startswith(f"{USER} · inspector") for s in shown), shown


def test_an_error_naming_a_user_shows_the_name_literally(ws, db):
    at = signed_in_admin(db)
    for _ in range(2):  # the second time the name is taken: the error names it
        at.text_input(key="us_new_name").set_value(USER)
        at.text_input(key="us_new_password").set_value("another long passphrase")
        at.multiselect(key="us_new_roles").set_value(["inspector"])
        at.button(key="us_create_submit").click().run()
    shown = assert_inert(at)
    assert any(USER in s for s in shown if s not in texts(at.success)) and at.error, shown

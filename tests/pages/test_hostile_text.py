"""Customer-supplied text (product, user, review text, file names) is shown as text on every page that shows
it: never as HTML, never as a live markdown link."""

from __future__ import annotations

import re

from tests.pages.helpers import classify_now, seed_reviews, start_app, texts

SCRIPT = "<script>alert(1)</script>"
LINK = "[win a prize](javascript:alert(1))"
LIVE = [re.compile(r"(?<!\\)<(script|img)"), re.compile(r"(?<!\\)\]\(javascript")]  # unescaped markup


def rendered(at) -> list[str]:
    """Every piece of text a page rendered as markdown (markdown, captions, alerts)."""
    out = []
    for elements in (at.markdown, at.caption, at.error, at.warning, at.info, at.success, at.main.subheader, at.title):
        out += texts(elements)
    return out


def assert_inert(at) -> None:
    assert not at.exception, at.exception
    for text in rendered(at):
        for pattern in LIVE:
            assert not pattern.search(text), text


def test_hostile_fields_stay_text_on_the_reviews_and_queue_pages(ws, db, tmp_path):
    folder = tmp_path / "<img src=x onerror=alert(1)>"
    seed_reviews(db, folder, [
        {"review_id": "r1", "review_type": "product", "product": SCRIPT, "user_id": LINK, "text": f"{SCRIPT} {LINK}",
         "broken": 1},
    ])
    classify_now(ws, db)

    at = start_app("pages/reviews.py")
    assert_inert(at)
    at.selectbox(key="rv_detail").set_value("r1").run()
    assert_inert(at)
    assert f"{SCRIPT} {LINK}" in texts(at.text)  # the review text is there, verbatim
    assert any("Cannot show" in e for e in texts(at.error))  # the broken photo's error names its odd path, escaped

    at.switch_page("pages/queue.py")
    at.run()
    assert_inert(at)
    assert f"{SCRIPT} {LINK}" in texts(at.text)

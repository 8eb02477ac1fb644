"""Reviews page: the table, its filters, and one review's detail."""

from __future__ import annotations

import pandas as pd
import pytest

from services.hitl.answers import submit
from tests.pages.helpers import classify_now, seed_reviews, start_app

RISKY_TEXT = "**bold** <script>alert('x')</script> _under_ [link](http://example.com)"


@pytest.fixture
def seeded(ws, db, tmp_path):
    """r1 (product, decided by a person: credit), r2 (style, two queued photos), r3 (product, one queued, one broken)."""
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product", "product": "kettle", "user_id": "u1",
         "submitted_at": "2024-05-01T10:00:00Z", "text": RISKY_TEXT},
        {"review_id": "r2", "review_type": "style", "product": "coat", "user_id": "u2", "photos": 2,
         "submitted_at": "2024-05-02T10:00:00Z"},
        {"review_id": "r3", "review_type": "product", "product": "lamp", "user_id": "u3", "broken": 1,
         "submitted_at": "2024-05-03T10:00:00Z"},
    ])
    classify_now(ws, db)
    image_id = db.execute("SELECT id FROM images WHERE review_id = 'r1'").fetchone()[0]
    submit(db, image_id=image_id, label="product", actor="test")
    return ws


def table(at):
    assert not at.exception, at.exception
    # st.dataframe without selection carries no key in AppTest: the table is the page's first dataframe
    return at.dataframe[0].value if len(at.dataframe) else None


def test_table_lists_every_photo(seeded):
    at = start_app("pages/reviews.py")
    rows = table(at)
    assert len(rows) == 5
    assert sorted(rows["review"]) == ["r1", "r2", "r2", "r3", "r3"]
    assert list(rows["review"])[:1] == ["r3"]  # newest first by default
    by_review = rows.set_index(["review", "status"])
    assert by_review.loc[("r1", "decided"), "decision"] == "product"
    assert bool(by_review.loc[("r1", "decided"), "credit"]) is True
    assert by_review.loc[("r1", "decided"), "by"] == "a person"  # in words, not the key 'human'
    assert ("r3", "failed") in by_review.index
    # thumbnails for readable photos, none for the broken file
    photos = dict(zip(rows["status"], rows["photo"]))
    assert photos["decided"].startswith("data:image/jpeg;base64,")
    assert pd.isna(photos["failed"])
    assert "5 photos" in at.number_input(key="rv_page").label


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("rv_status", "decided", ["r1"]),
        ("rv_status", "queued", ["r2", "r2", "r3"]),
        ("rv_status", "failed", ["r3"]),
        ("rv_type", "style", ["r2", "r2"]),
        ("rv_type", "product", ["r1", "r3", "r3"]),
        ("rv_label", "product", ["r1"]),
        ("rv_source", "human", ["r1"]),
    ],
)
def test_filters_narrow_the_rows(seeded, key, value, expected):
    at = start_app("pages/reviews.py")
    at.selectbox(key=key).set_value(value).run()
    assert sorted(table(at)["review"]) == expected
    assert f"{len(expected)} photo{'s' if len(expected) != 1 else ''})" in at.number_input(key="rv_page").label


def test_filters_combine_and_an_empty_result_says_so(seeded):
    at = start_app("pages/reviews.py")
    at.selectbox(key="rv_type").set_value("style").run()
    at.selectbox(key="rv_label").set_value("product").run()
    assert table(at) is None
    assert "No photos match these filters." in at.info[0].value
    assert at.selectbox(key="rv_detail").options == []


def test_search_finds_product_and_user(seeded):
    at = start_app("pages/reviews.py")
    at.text_input(key="rv_search").input("kettle").run()
    assert list(table(at)["review"]) == ["r1"]
    at.text_input(key="rv_search").input("u3").run()
    assert sorted(table(at)["review"]) == ["r3", "r3"]


def test_detail_shows_credit_outcome_and_plain_customer_text(seeded):
    at = start_app("pages/reviews.py")
    assert at.selectbox(key="rv_detail").value is None
    assert sorted(at.selectbox(key="rv_detail").options) == ["r1", "r2", "r3"]
    at.selectbox(key="rv_detail").set_value("r1").run()
    assert not at.exception
    summary = [m.value for m in at.markdown if "review of" in m.value]
    assert len(summary) == 1
    assert "**product** review of **kettle** by **u1**" in summary[0]
    assert "**credit granted**" in summary[0] and "meet the rule" in summary[0]
    # the customer's text is shown verbatim as plain text, never interpreted as markdown or HTML
    assert [t.value for t in at.text] == [RISKY_TEXT]
    assert not any("<script>" in m.value for m in at.markdown)
    assert any("Status: **decided**" in m.value for m in at.markdown)
    assert " UTC: **credit granted**" in summary[0]  # the time as the app shows times
    history = [d.value for d in at.dataframe][1:]  # after the table: one decision history per decided photo
    assert len(history) == 1
    assert list(history[0]["label"]) == ["product"] and list(history[0]["by"]) == ["a person"]
    assert list(history[0].columns) == ["decided", "label", "credit", "by", "who", "reason"]
    assert all(t.endswith(" UTC") for t in history[0]["decided"])  # as the app shows times
    assert len(at.image) == 1


def test_detail_of_an_undecided_review_with_a_broken_photo(seeded):
    at = start_app("pages/reviews.py")
    at.selectbox(key="rv_detail").set_value("r3").run()
    assert not at.exception
    summary = [m.value for m in at.markdown if "review of" in m.value][0]
    assert "**undecided**" in summary
    assert not at.text  # no customer text given
    statuses = [m.value for m in at.markdown if m.value.startswith("Status:")]
    assert sorted(statuses) == ["Status: **failed**", "Status: **in the queue** (no model had been trained yet)"]
    assert len(at.image) == 1  # the readable photo
    assert len(at.error) == 1 and "Cannot show" in at.error[0].value


def test_pages_of_fifty_and_a_filter_that_leaves_fewer_pages(ws, db, tmp_path):
    seed_reviews(db, tmp_path / "many", [
        {"review_id": f"m{i:02d}", "review_type": "style" if i == 0 else "product",
         "submitted_at": f"2024-06-01T10:{i:02d}:00Z"}
        for i in range(51)
    ])
    at = start_app("pages/reviews.py")
    assert at.number_input(key="rv_page").label == "Page (of 2; 51 photos)"
    assert len(table(at)) == 50
    at.number_input(key="rv_page").set_value(2).run()
    assert list(table(at)["review"]) == ["m00"]  # the oldest, last when newest come first
    # on page 2, narrow to one photo: that photo is shown (page 1), not "no photos match"
    at.selectbox(key="rv_type").set_value("style").run()
    assert not at.info
    assert list(table(at)["review"]) == ["m00"]
    assert at.number_input(key="rv_page").value == 1
    assert at.number_input(key="rv_page").label == "Page (of 1; 1 photo)"


def test_detail_is_cleared_when_the_filters_hide_its_review(seeded):
    at = start_app("pages/reviews.py")
    at.selectbox(key="rv_detail").set_value("r1").run()
    assert at.text
    at.selectbox(key="rv_type").set_value("style").run()
    assert not at.exception
    assert at.selectbox(key="rv_detail").options == ["r2"]
    assert at.selectbox(key="rv_detail").value is None
    assert not at.text and not [m for m in at.markdown if "review of" in m.value]


def test_detail_shows_a_photo_with_label_boxes_as_published(seeded, db):
    from services.redaction.labels import LabelBox
    from services.redaction.store import save_found

    image_id = db.execute("SELECT id FROM images WHERE review_id = 'r1'").fetchone()[0]
    at = start_app("pages/reviews.py")
    at.selectbox(key="rv_detail").set_value("r1").run()
    assert not any("as published" in c for img in at.image for c in img.captions)  # nothing to hide
    save_found(db, image_id=image_id, boxes=[LabelBox("barcode", 2, 2, 30, 20, 1.0)])
    at.run()
    assert not at.exception, at.exception
    assert f"photo {image_id} as published · 1 label box hidden" in [c for img in at.image for c in img.captions]

"""Overview page: the headline figures follow the data seeded through the real services."""

from __future__ import annotations

from services.core.config import CLASSES, set_setting
from services.hitl.answers import submit
from tests.pages.helpers import classify_now, seed_reviews, start_app
from tests.pages.markdown_check import shown_text


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_metrics_without_a_model(ws, db, tmp_path):
    seed_reviews(db, tmp_path / "photos", [
        {"review_id": "r1", "review_type": "product", "product": "kettle"},
        {"review_id": "r2", "review_type": "style", "photos": 2},
        {"review_id": "r3", "review_type": "product", "broken": 1},
    ])
    classify_now(ws, db)  # no model: every readable photo goes to the queue
    image_id = db.execute("SELECT id FROM images WHERE review_id = 'r1'").fetchone()[0]
    submit(db, image_id=image_id, label="product", actor="test")  # r1 earns its credit
    seed_reviews(db, tmp_path / "later", [{"review_id": "r4", "review_type": "product"}], name="later.jsonl")

    at = start_app("pages/overview.py")
    assert metrics(at) == {
        "Photos in": "6",
        "Decided automatically": "0",
        "Decided by people": "1",
        "In the queue": "3",
        "Not classified yet": "1",
        "Failed": "1",
        "Reviews": "4",
        "Credits granted": "1",
    }
    assert not at.info  # not empty any more: no first-step guidance
    assert "No model has been trained yet" in at.warning[0].value
    assert ("6 photos in = 0 decided automatically + 1 decided by people + 3 in the queue + 1 not classified yet "
            "+ 1 failed.") in [c.value for c in at.caption]


def test_metrics_with_a_model_deciding_automatically(trained_ws, tmp_path):
    db = trained_ws.db()
    try:
        # every prediction decides, every automatic decision is also audited, every class earns a product credit
        set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 0.0), actor="test")
        set_setting(db, key="audit_rate", value=1.0, actor="test")
        set_setting(db, key="credit_rules", value={"product": {"classes": list(CLASSES), "mode": "any"}}, actor="test")
        seed_reviews(db, tmp_path / "photos", [
            {"review_id": "p1", "review_type": "product"},
            {"review_id": "p2", "review_type": "product", "photos": 2},
        ])
        classify_now(trained_ws, db)
    finally:
        db.close()

    at = start_app("pages/overview.py")
    assert not at.exception
    assert metrics(at) == {
        "Photos in": "3",
        "Decided automatically": "0",  # issue 20 item 5: each photo counted once, where it is now
        "Decided by people": "0",
        "In the queue": "3",
        "Not classified yet": "0",
        "Failed": "0",
        "Reviews": "2",
        "Credits granted": "2",
    }
    assert ("3 photos in = 0 decided automatically + 0 decided by people + 3 in the queue (3 of them automatic "
            "decisions being audited by people) + 0 not classified yet + 0 failed.") in [c.value for c in at.caption]
    per_day, credits = at.get("plotly_chart")
    import json

    legends = {trace["name"] for trace in json.loads(per_day.proto.spec)["data"]}
    assert legends == {"decided automatically", "decided by people", "in the queue", "not classified yet", "failed"}
    assert json.loads(credits.proto.spec)["layout"]["xaxis"]["type"] == "category"  # a bar per day, not a dot
    assert not at.warning and not at.info
    assert any(shown_text(c.value).startswith("Active model head-") for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # photos per day and credits per day

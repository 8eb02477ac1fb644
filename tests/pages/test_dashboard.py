"""Inspector dashboard page: empty workspace guidance, then the table and charts on seeded answers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from streamlit.elements.lib.utils import user_key_from_element_id

from tests.pages.helpers import start_app

CHARTS = {"dash_items_per_hour", "dash_median_seconds", "dash_quality", "dash_override_by_class", "dash_queue_size",
          "dash_auto_share"}


def chart_keys(at) -> set[str]:
    return {user_key_from_element_id(node.proto.id) for node in at.get("plotly_chart")}


def table_of(at):
    """The per-inspector table (a display-only st.dataframe has no element id, so its key is not in the tree)."""
    assert len(at.dataframe) == 1
    return at.dataframe[0].value


def seed(db, day: str) -> None:
    """Two inspectors answering on ``day``: a kept and an overridden prediction, overlap and gold answers."""
    at = f"{day}T10:00:00.000000Z"
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', 'product', ?)", [at])
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")
    for i, status in enumerate(["decided", "decided", "decided", "queued", "queued"], start=1):
        db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, 'r1', ?, ?, ?, ?)",
                   [i, f"{i}.jpg", f"{i:064x}", status, "low_confidence" if status == "queued" else None])
    for i, label in [(1, "product"), (2, "package")]:
        db.execute("INSERT INTO predictions (id, image_id, model_version_id, label, confidence, probabilities) "
                   "VALUES (?, ?, 1, ?, 0.9, '{}')", [i, i, label])
    db.execute("INSERT INTO consensus (image_id, label, outcome) VALUES (2, 'product', 'decided')")
    db.execute("INSERT INTO gold_items (image_id, label) VALUES (3, 'full_length')")
    for image_id, source in [(1, "auto"), (2, "human"), (3, "human")]:
        db.execute("INSERT INTO decisions (image_id, label, credit, reason, source, decided_by, decided_at) "
                   "VALUES (?, 'product', 1, 't', ?, 'x', ?)", [image_id, source, at])
    answers = [
        (1, "alice", "product", "single", 12.0, 1),  # keeps the prediction
        (2, "alice", "product", "overlap", 30.0, 2),  # overrides package, agrees with consensus
        (2, "bob", "package", "overlap", 20.0, 2),  # keeps, disagrees
        (3, "bob", "full_length", "gold", 8.0, None),  # gold correct
    ]
    for image_id, who, label, kind, seconds, pred in answers:
        db.execute("INSERT INTO answers (image_id, inspector, label, kind, answered_at, seconds, prediction_id) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", [image_id, who, label, kind, at, seconds, pred])


def test_empty_workspace_explains_what_will_appear(ws, db):
    at = start_app("pages/dashboard.py")
    assert at.title[0].value == "Inspector dashboard"
    assert "Nothing to show yet" in at.info[0].value
    assert not at.get("plotly_chart") and not at.error
    assert db.execute("SELECT COUNT(*) FROM queue_snapshots").fetchone()[0] == 0  # nothing written


def test_seeded_dashboard_table_charts_and_filters(ws, db):
    today = datetime.now(UTC).date()
    seed(db, today.isoformat())

    at = start_app("pages/dashboard.py")
    assert not at.info and not at.error
    table = table_of(at)
    assert list(table["inspector"]) == ["alice", "bob"]
    assert list(table["items"]) == [2, 2]
    alice = table.iloc[0]
    # issue 20 item 10: 2 answers in 42 s is no rate (it read 171.4 items/hour); the table says why instead
    assert alice["items_per_hour"] is None or alice["items_per_hour"] != alice["items_per_hour"]  # None or NaN
    assert alice["rate_note"] == "too little data: 2 answers in 42 s"
    assert alice["median_seconds"] == 21
    assert alice["agreement_with_consensus"] == 1.0 and alice["override_rate"] == 0.5
    assert table.iloc[1]["gold_accuracy"] == 1.0
    # one day of answers: no single-dot charts over days, the table holds the day's figures
    assert chart_keys(at) == CHARTS - {"dash_items_per_hour", "dash_median_seconds", "dash_quality", "dash_queue_size"}
    assert any(c.value.startswith("2 photos in the queue at ") for c in at.caption)  # one snapshot: a number, not a dot
    assert any(c.value.startswith("Charts over days appear once there are answers on two days") for c in at.caption)
    snapshot = db.execute("SELECT queued, by_reason FROM queue_snapshots").fetchall()
    assert snapshot == [(2, '{"low_confidence": 2}')]  # recorded on load so the queue chart has a point

    at.multiselect(key="dash_inspectors").set_value(["bob"]).run()
    assert not at.exception and not at.error
    assert list(table_of(at)["inspector"]) == ["bob"]
    assert db.execute("SELECT COUNT(*) FROM queue_snapshots").fetchone()[0] == 1  # the last one is fresh

    long_ago = date(2020, 1, 1)
    at.date_input(key="dash_range").set_value((long_ago, long_ago + timedelta(days=6))).run()
    assert not at.exception and not at.error
    assert table_of(at).empty
    assert not at.get("plotly_chart")
    assert any("No inspector answers in this period" in c.value for c in at.caption)

    at.date_input(key="dash_range").set_value((today,)).run()  # half-picked range: that one day
    assert not at.exception
    assert list(table_of(at)["inspector"]) == ["bob"]

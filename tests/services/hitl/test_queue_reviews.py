import pytest

from services.cli import demo
from services.core.config import Workspace
from services.core.errors import InvalidInput, NotFound
from services.hitl import export
from services.hitl.answers import submit
from services.hitl.queue import claim_next, peek_next, queue_counts
from services.reviews.outcomes import list_images, overview, review_detail


def _seed(db):
    rows = [  # review, type, submitted, image id, status, reason
        ("old", "product", "2026-01-01T00:00:00Z", 1, "queued", "no_model"),
        ("mid", "product", "2026-02-01T00:00:00Z", 2, "queued", "low_confidence"),
        ("new", "style", "2026-03-01T00:00:00Z", 3, "queued", "audit"),
        ("newer", "style", "2026-04-01T00:00:00Z", 4, "queued", "low_confidence"),
        ("done", "style", "2026-04-02T00:00:00Z", 5, "decided", None),
    ]
    for rid, rtype, at, iid, status, reason in rows:
        db.execute("INSERT INTO reviews (id, review_type, submitted_at, text) VALUES (?, ?, ?, 'hello')", [rid, rtype, at])
        db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", [iid, rid, f"{iid}.jpg", f"{iid:064x}", status, reason, at])


def test_queue_order_audit_then_low_confidence_oldest_first_then_no_model(db):
    _seed(db)
    order = []
    skip = []
    assert [p["id"] for p in peek_next(db, inspector="ann", limit=10)] == [3, 2, 4, 1]
    while (item := claim_next(db, inspector="ann", skip=skip)) is not None:
        order.append(item["id"])
        skip.append(item["id"])
    assert order == [3, 2, 4, 1]
    assert queue_counts(db) == {"audit": 1, "low_confidence": 2, "no_model": 1}


def test_queue_counts_follow_the_queues_filters(db):
    _seed(db)
    assert queue_counts(db, review_type="style") == {"audit": 1, "low_confidence": 1}
    assert queue_counts(db, review_type="product") == {"low_confidence": 1, "no_model": 1}
    assert queue_counts(db, review_type="no such type") == {}
    db.execute("UPDATE images SET pred_label = 'package', pred_confidence = 0.6 WHERE id IN (2, 4)")
    assert queue_counts(db, label="package", band=(0.5, 0.7)) == {"low_confidence": 2}
    assert queue_counts(db, label="package", band=(0.7, 1.0)) == {}


def test_submit_records_a_human_decision_and_leaves_the_queue(db):
    _seed(db)
    d = submit(db, image_id=3, label="full_length", actor="ann")
    assert d["credit"] is True
    assert db.execute("SELECT source, decided_by FROM decisions WHERE id = ?", [d["decision_id"]]).fetchone() == ("human", "ann")
    assert claim_next(db, inspector="ann")["id"] == 2
    with pytest.raises(NotFound):
        submit(db, image_id=99, label="product", actor="ann")
    db.execute("UPDATE images SET status = 'failed' WHERE id = 1")
    with pytest.raises(InvalidInput, match="failed"):
        submit(db, image_id=1, label="product", actor="ann")


def test_listing_filters_sorts_and_pages(db):
    _seed(db)
    rows, total = list_images(db, actor="tester", status="queued", sort="submitted_at", descending=False, limit=2)
    assert total == 4 and [r["review_id"] for r in rows] == ["old", "mid"]
    rows, total = list_images(db, actor="tester", review_type="style", search="new")
    assert total == 2 and {r["review_id"] for r in rows} == {"new", "newer"}
    rows, total = list_images(db, actor="tester", sort="not a column; DROP TABLE images")  # unknown sort falls back safely
    assert total == 5


def test_overview_and_detail(db):
    _seed(db)
    submit(db, image_id=2, label="product", actor="ann")
    stats = overview(db, actor="tester")
    # image 5 is seeded 'decided' with no decision row: not automatic, so it counts with people's (the figures add up)
    assert (stats["photos"], stats["queued"], stats["decided_by_people"], stats["credits_granted"]) == (5, 3, 2, 1)
    detail = review_detail(db, "mid", actor="tester")
    assert detail["outcome"]["credit"] is True and detail["photos"][0]["decisions"][0]["decided_by"] == "ann"
    with pytest.raises(NotFound):
        review_detail(db, "nope", actor="tester")
    text, n = export.to_csv(db, actor="tester")
    assert n == 5 and text.startswith("image_id,")


def test_demo_seeds_from_installed_packages_without_shared(tmp_path, backbone_onnx):
    ws = Workspace.open(tmp_path / "demo")
    (ws.models_dir / backbone_onnx.name).symlink_to(backbone_onnx)
    out = demo.seed(ws, actor="test")
    assert out["photos"] >= 5 and out["classify_job"] == "done"
    db = ws.db()
    assert db.execute("SELECT COUNT(*) FROM images WHERE status = 'queued' AND queue_reason = 'no_model'").fetchone()[0] == out["photos"]
    assert all("shared" not in uri for (uri,) in db.execute("SELECT uri FROM images"))
    assert out["lines"]["frames"] > 0 and db.execute("SELECT COUNT(DISTINCT line_id) FROM line_bins").fetchone()[0] == 3
    assert db.execute("SELECT COUNT(*) FROM line_targets").fetchone()[0] == 9  # three lines, three shifts
    again = demo.seed(ws, actor="test")  # seeding twice adds nothing
    assert again["ingest"]["images_added"] == 0 and again["lines"]["frames"] == 0


def test_workspace_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REVIEW_CONSOLE_DATA_DIR", str(tmp_path / "elsewhere"))
    ws = Workspace.open()
    assert ws.root == (tmp_path / "elsewhere").resolve() and ws.objects_dir.is_dir() and ws.models_dir.is_dir()

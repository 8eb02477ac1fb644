"""Weighted consensus: Dawid-Skene, gold weighting, consolidation into decisions or adjudication."""

from __future__ import annotations

import numpy as np
import pytest

from services.core.config import CLASSES
from services.core.errors import InvalidInput, NotFound
from services.hitl.consensus import (
    adjudicate,
    adjudication_items,
    consolidate,
    estimate_reliability,
    reliabilities,
    reliability_is_stale,
)
from services.hitl.dawid_skene import gold_confusion
from tests.services.hitl.test_dawid_skene import _synthetic

K = len(CLASSES)
SETTINGS = {"consensus_min_confidence": 0.8}


def _photo(db, image_id: int, *, status: str = "queued", reason: str | None = "low_confidence") -> None:
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?) ON CONFLICT DO NOTHING",
               [f"r{image_id}", f"2026-01-01T00:{image_id // 60 % 60:02d}:{image_id % 60:02d}Z"])
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, ?, ?)",
               [image_id, f"r{image_id}", f"{image_id}.jpg", f"{image_id:064x}", status, reason])


def _answer(db, image_id: int, inspector: str, label: str, kind: str = "overlap", at: str = "2026-01-02T00:00:00Z") -> int:
    return db.execute("INSERT INTO answers (image_id, inspector, label, kind, answered_at, queue_reason) "
                      "VALUES (?, ?, ?, ?, ?, 'low_confidence')", [image_id, inspector, label, kind, at]).lastrowid


def _decided_history(db, said: dict, n: int, first: int = 1000) -> None:
    """``n`` decided photos from ``first`` on, each answered by every inspector in ``said`` (class indexes)."""
    for i in range(n):
        _photo(db, first + i, status="decided", reason=None)
        for w in said:
            _answer(db, first + i, w, CLASSES[said[w][i]])


def test_consolidate_decides_with_dawid_skene_weights_for_the_reliable_minority(db):
    truth, said, _answers = _synthetic(seed=3, n=200)
    with db.atomic():
        _decided_history(db, said, 200)
        _photo(db, 1)
        ids = [_answer(db, 1, "rel", "product"), _answer(db, 1, "u1", "package"), _answer(db, 1, "u2", "package")]
    db.execute("BEGIN IMMEDIATE")  # the caller's transaction, as answers.submit holds it
    got = consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.6})
    db.execute("COMMIT")
    assert ids and got["label"] == "product" and got["outcome"] == "decided" and got["method"] == "dawid-skene"
    assert got["agreement"] == pytest.approx(1 / 3) and got["n_answers"] == 3
    assert got["probabilities"]["product"] == pytest.approx(got["confidence"], abs=1e-6)
    rel = reliabilities(db)
    assert {r["method"] for r in rel.values()} == {"dawid-skene"}
    assert rel["rel"]["accuracy"] > 0.85 > 0.55 > rel["u1"]["accuracy"]
    assert rel["rel"]["n_overlap_items"] == 201 and rel["rel"]["n_answers"] == 201
    d = db.execute("SELECT d.label, d.decided_by, d.source, d.reason, i.status FROM images i "
                   "JOIN decisions d ON d.id = i.decision_id WHERE i.id = 1").fetchone()
    assert d[:3] == ("product", "consensus", "human") and d[4] == "decided" and d[0] == got["label"]
    assert d[3].startswith("consensus of 3 inspectors, agreement 33%")
    assert got["decision_id"] == db.execute("SELECT decision_id FROM images WHERE id = 1").fetchone()[0]
    row = db.execute("SELECT label, outcome, n_answers FROM consensus WHERE image_id = 1").fetchone()
    assert row == ("product", "decided", 3)


def test_consolidate_uses_gold_accuracy_when_there_is_little_overlap(db):
    with db.atomic():
        for i in range(5):  # gold answered alone by each inspector: no overlap between them
            for j, (w, right) in enumerate((("rel", True), ("u1", i == 0), ("u2", i == 0))):
                img = 100 + 10 * i + j
                _photo(db, img, status="decided", reason=None)
                db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, 'package', 'admin', 'x')",
                           [img])
                _answer(db, img, w, "package" if right else "half_length", kind="gold")
        _photo(db, 1)
        _answer(db, 1, "rel", "full_length")
        _answer(db, 1, "u1", "half_length")
        _answer(db, 1, "u2", "half_length")
        _photo(db, 2)
        _answer(db, 2, "newbie", "product", kind="single")
    got = consolidate(db, image_id=1, settings=SETTINGS)
    # the reliable minority wins on gold accuracy alone
    assert got["label"] == "full_length" and got["method"] == "gold" and got["outcome"] == "decided"
    assert got["confidence"] >= 0.8 and got["agreement"] == pytest.approx(1 / 3)
    rel = reliabilities(db)
    assert rel["rel"]["method"] == "gold" and rel["rel"]["gold_correct"] == 5 and rel["rel"]["accuracy"] == pytest.approx(6 / 7)
    assert rel["u1"]["method"] == "gold" and (rel["u1"]["gold_answers"], rel["u1"]["gold_correct"]) == (5, 1)
    assert rel["u1"]["accuracy"] == pytest.approx(2 / 7) and rel["u1"]["n_overlap_items"] == 6  # 5 gold + this photo
    assert rel["newbie"]["method"] == "prior" and rel["newbie"]["accuracy"] == pytest.approx(0.8)
    assert np.allclose(np.asarray(rel["rel"]["confusion"]), gold_confusion(correct=5, total=5, n_classes=K), atol=1e-6)


def test_low_confidence_goes_to_adjudication_and_an_admin_decides_once(db):
    with db.atomic():
        _photo(db, 1)
        _photo(db, 2)
        db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")
        pred = db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                          "VALUES (1, 1, 'package', 0.5, '{}')").lastrowid
        for w, label in (("ann", "package"), ("bob", "product"), ("cat", "half_length")):
            _answer(db, 1, w, label)
        db.execute("INSERT INTO queue_claims (image_id, inspector, kind, claimed_at, claimed_ts, lease_expires) "
                   "VALUES (1, 'admin', 'queue', 'x', 0, 1e12)")
    got = consolidate(db, image_id=1, settings=SETTINGS)
    assert got["outcome"] == "adjudication" and got["decision_id"] is None and got["confidence"] < 0.8
    assert got["method"] == "prior" and got["agreement"] == pytest.approx(1 / 3)
    assert db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = 1").fetchone() == \
        ("queued", "adjudication", None)

    items = adjudication_items(db)
    assert [i["id"] for i in items] == [1]
    assert items[0]["consensus"]["probabilities"]["package"] == pytest.approx(got["probabilities"]["package"])
    assert [(a["inspector"], a["label"], a["method"]) for a in items[0]["answers"]] == \
        [("ann", "package", "prior"), ("bob", "product", "prior"), ("cat", "half_length", "prior")]
    assert items[0]["answers"][0]["accuracy"] == pytest.approx(0.8) and items[0]["prediction"]["id"] == pred

    decision = adjudicate(db, image_id=1, label="product", actor="admin")
    assert decision["label"] == "product" and decision["decided_by"] == "admin" and decision["source"] == "human"
    assert "adjudicated by admin" in decision["reason"]
    assert db.execute("SELECT status, queue_reason, decision_id FROM images WHERE id = 1").fetchone() == \
        ("decided", None, decision["id"])
    ans = db.execute("SELECT inspector, label, kind, queue_reason, prev_decision_id, decision_id, prediction_id "
                     "FROM answers WHERE id = ?", [decision["answer_id"]]).fetchone()
    assert ans == ("admin", "product", "adjudication", "adjudication", None, decision["id"], pred)
    ev = db.execute("SELECT inspector, action, label, answer_id FROM queue_events WHERE image_id = 1").fetchall()
    assert ev == [("admin", "adjudicate", "product", decision["answer_id"])]
    assert db.execute("SELECT outcome FROM consensus WHERE image_id = 1").fetchone()[0] == "adjudicated"
    assert db.execute("SELECT COUNT(*) FROM queue_claims WHERE image_id = 1").fetchone()[0] == 0
    assert adjudication_items(db) == []

    with pytest.raises(InvalidInput, match="already decided by admin"):
        adjudicate(db, image_id=1, label="package", actor="boss")
    with pytest.raises(InvalidInput, match="not waiting for adjudication"):
        adjudicate(db, image_id=2, label="package", actor="boss")
    with pytest.raises(NotFound):
        adjudicate(db, image_id=99, label="package", actor="boss")
    with pytest.raises(InvalidInput, match="unknown label"):
        adjudicate(db, image_id=2, label="nope", actor="boss")
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 1


def test_agreeing_inspectors_decide_and_undone_answers_do_not_count(db):
    with db.atomic():
        _photo(db, 1)
        for w in ("ann", "bob", "cat"):
            _answer(db, 1, w, "full_length")
        wrong = _answer(db, 1, "dan", "package")
        db.execute("INSERT INTO queue_events (at, ts, image_id, inspector, action, answer_id) "
                   "VALUES ('x', 0, 1, 'dan', 'undo', ?)", [wrong])
    got = consolidate(db, image_id=1, settings=SETTINGS)
    assert got["label"] == "full_length" and got["outcome"] == "decided" and got["agreement"] == 1.0
    assert got["n_answers"] == 3 and got["confidence"] > 0.99
    with pytest.raises(NotFound):
        consolidate(db, image_id=42, settings=SETTINGS)
    with db.atomic():
        _photo(db, 2)
    with pytest.raises(InvalidInput, match="no answers"):
        consolidate(db, image_id=2, settings=SETTINGS)


def test_reliability_goes_stale_after_enough_new_answers(db):
    assert not reliability_is_stale(db)  # no answers, nothing to estimate
    with db.atomic():
        _photo(db, 1)
        _answer(db, 1, "ann", "package", at="2026-01-01T00:00:00Z")
    assert reliability_is_stale(db)
    estimate_reliability(db)
    assert not reliability_is_stale(db)
    with db.atomic():
        for _ in range(50):
            _answer(db, 1, "ann", "package", at="2999-01-01T00:00:00Z")
    assert not reliability_is_stale(db)
    _answer(db, 1, "ann", "package", at="2999-01-01T00:00:00Z")
    assert reliability_is_stale(db)


def test_a_stored_asymmetric_confusion_is_applied_the_right_way_round(db):
    """c calls most full-length shots half length but never the reverse: c's lone "full_length" means full
    length, and the matrix stored for c keeps rows as the true class through the database round trip."""
    from tests.services.hitl.test_dawid_skene import FULL, HALF, _systematic

    answers, _truth = _systematic()
    with db.atomic():
        for i, w, cls in answers:
            if not db.execute("SELECT 1 FROM images WHERE id = ?", [1000 + i]).fetchone():
                _photo(db, 1000 + i, status="decided", reason=None)
            _answer(db, 1000 + i, w, CLASSES[cls])
        _photo(db, 1)
        _answer(db, 1, "c", "full_length")
        _answer(db, 1, "newbie", "half_length", kind="single")  # an unknown inspector at the prior's accuracy
    got = consolidate(db, image_id=1, settings={"consensus_min_confidence": 0.5})
    stored = np.asarray(reliabilities(db)["c"]["confusion"])
    assert stored[FULL, HALF] > 0.5 > 0.1 > stored[HALF, FULL]
    # hand-computed from the stored matrix: uniform priors x column FULL of c x column HALF of the prior matrix
    prior = np.full((K, K), 0.2 / (K - 1))
    np.fill_diagonal(prior, 0.8)
    raw = stored[:, FULL] * prior[:, HALF]
    assert got["probabilities"]["full_length"] == pytest.approx(raw[FULL] / raw.sum(), abs=1e-5)
    assert got["label"] == "full_length"

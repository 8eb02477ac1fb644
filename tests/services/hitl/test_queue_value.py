"""The queue served by value within the age limit, and diversity: a photo near-identical to one just answered waits."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from services.core.config import get_settings, set_setting
from services.hitl.answers import submit, undo_last
from services.hitl.diversity import near_recent_answers
from services.hitl.queue import claim_next, peek_next
from services.models.features import FeatureExtractor
from services.reviews.queue_value import rank_in_queue

CONFIDENT = [0.96, 0.02, 0.01, 0.01]  # value 0.06: 1.4 hours earlier at 24 hours
UNSURE = [0.40, 0.38, 0.12, 0.10]  # value 0.98: 23.5 hours earlier


@pytest.fixture(autouse=True)
def _one_inspector_per_photo(db):
    set_setting(db, key="overlap_rate", value=0.0, actor="admin")
    set_setting(db, key="gold_rate", value=0.0, actor="admin")
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")


def queue_photo(db, image_id: int, *, submitted: str, probabilities: list[float] | None,
                reason: str = "low_confidence") -> None:
    """A photo routed as classification routes it: prediction, queue reason and, for low confidence, its rank."""
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', ?)", [f"r{image_id}", submitted])
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status) VALUES (?, ?, ?, ?, 'pending')",
               [image_id, f"r{image_id}", f"{image_id}.jpg", f"{image_id:064x}"])
    if probabilities is not None:
        probs = dict(zip(("package", "product", "full_length", "half_length"), probabilities))
        db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                   "VALUES (?, 1, ?, ?, ?)", [image_id, max(probs, key=probs.get), max(probabilities), json.dumps(probs)])
    rank = rank_in_queue(db, image_id=image_id, probabilities=probabilities, hours=get_settings(db)["queue_value_hours"])
    if reason == "low_confidence":
        db.execute("UPDATE images SET status = 'queued', queue_reason = ?, queue_rank = ? WHERE id = ?",
                   [reason, rank, image_id])
    else:
        db.execute("UPDATE images SET status = 'queued', queue_reason = ? WHERE id = ?", [reason, image_id])


def served(db, inspector: str = "ann") -> list[int]:
    order, skip = [], []
    while (item := claim_next(db, inspector=inspector, skip=skip)) is not None:
        order.append(item["id"])
        skip.append(item["id"])
    return order


def test_an_uncertain_newer_photo_is_served_before_a_confident_older_one_within_the_limit(db):
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=CONFIDENT)
    queue_photo(db, 2, submitted="2026-05-01T12:00:00Z", probabilities=UNSURE)  # 12 hours newer
    queue_photo(db, 3, submitted="2026-05-01T06:00:00Z", probabilities=None, reason="no_model")
    queue_photo(db, 4, submitted="2026-05-02T06:00:00Z", probabilities=CONFIDENT, reason="audit")
    assert [p["id"] for p in peek_next(db, inspector="ann", limit=4)] == [4, 2, 1, 3]
    assert served(db) == [4, 2, 1, 3]  # priorities first; within low confidence, value


def test_a_photo_older_than_the_limit_is_served_first_however_unsure_the_newer_one(db):
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=[1.0, 0.0, 0.0, 0.0])  # worth nothing
    queue_photo(db, 2, submitted="2026-05-02T00:00:01Z", probabilities=[0.5, 0.5, 0.0, 0.0])  # worth all, 24 h + 1 s newer
    assert served(db) == [1, 2]


def test_zero_hours_serves_low_confidence_photos_oldest_first(db):
    set_setting(db, key="queue_value_hours", value=0, actor="admin")
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=CONFIDENT)
    queue_photo(db, 2, submitted="2026-05-01T00:00:01Z", probabilities=UNSURE)
    assert served(db) == [1, 2]


def test_a_photo_sent_to_audit_or_rereview_goes_back_to_its_submitted_time(db):
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=UNSURE)
    ranks = "SELECT queue_rank FROM images WHERE id = 1"
    advanced = db.execute(ranks).fetchone()[0]
    db.execute("UPDATE images SET queue_reason = 'rereview' WHERE id = 1")
    assert db.execute(ranks).fetchone()[0] == pytest.approx(advanced + 0.98 * 24 * 3600)
    db.execute("UPDATE images SET queue_reason = 'low_confidence', queue_rank = ? WHERE id = 1", [advanced])
    db.execute("UPDATE images SET status = 'decided', queue_reason = NULL WHERE id = 1")  # decided, then undone:
    assert db.execute(ranks).fetchone()[0] == advanced  # the rank it had is kept


def embed(db, image_id: int, vector: np.ndarray) -> None:
    db.execute("INSERT INTO embeddings (sha256, backbone, vector) VALUES (?, ?, ?)",
               [f"{image_id:064x}", FeatureExtractor.backbone, vector.astype(np.float32).tobytes()])


def _vectors(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, 1280))
    return a, b - (b @ a) / (a @ a) * a  # b orthogonal to a


def test_a_candidate_near_identical_to_a_just_answered_photo_is_passed_over_for_the_next(db):
    a, b = _vectors()
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=UNSURE)  # answered first, by bob
    queue_photo(db, 2, submitted="2026-05-01T00:00:01Z", probabilities=UNSURE)  # next in order: a near copy of 1
    queue_photo(db, 3, submitted="2026-05-01T00:00:02Z", probabilities=UNSURE)  # then a different photo
    embed(db, 1, a)
    embed(db, 2, a + 0.05 * np.linalg.norm(a) / np.sqrt(1280) * np.random.default_rng(1).normal(size=1280))
    embed(db, 3, b)
    assert claim_next(db, inspector="bob")["id"] == 1
    submit(db, image_id=1, label="package", actor="bob")
    assert [p["id"] for p in peek_next(db, inspector="ann", limit=2)] == [2, 3]  # the order itself is unchanged
    assert claim_next(db, inspector="ann")["id"] == 3  # 2 is passed over ...
    submit(db, image_id=3, label="package", actor="ann")
    assert claim_next(db, inspector="ann")["id"] == 2  # ... and served when nothing else is left


def test_when_all_are_near_identical_the_first_is_served(db):
    a, _ = _vectors()
    for image_id in (1, 2, 3):
        queue_photo(db, image_id, submitted=f"2026-05-01T00:00:0{image_id}Z", probabilities=UNSURE)
        embed(db, image_id, a)
    assert claim_next(db, inspector="bob")["id"] == 1
    submit(db, image_id=1, label="package", actor="bob")
    assert claim_next(db, inspector="ann")["id"] == 2


def test_an_undone_answer_does_not_count(db):
    a, b = _vectors()
    for image_id, vector in ((1, a), (2, a), (3, b), (4, b)):
        queue_photo(db, image_id, submitted=f"2026-05-01T00:00:0{image_id}Z", probabilities=UNSURE)
        embed(db, image_id, vector)
    assert claim_next(db, inspector="bob")["id"] == 1
    submit(db, image_id=1, label="package", actor="bob")
    assert claim_next(db, inspector="cy")["id"] == 3  # 2 resembles 1, just answered
    undo_last(db, actor="bob")  # bob holds 1 again; nothing like 2 has been answered now
    assert claim_next(db, inspector="ann")["id"] == 2


def test_diversity_never_passes_a_photo_of_a_higher_priority(db):
    a, b = _vectors()
    queue_photo(db, 1, submitted="2026-05-01T00:00:00Z", probabilities=UNSURE)
    queue_photo(db, 2, submitted="2026-05-01T00:00:01Z", probabilities=CONFIDENT, reason="audit")
    queue_photo(db, 3, submitted="2026-05-01T00:00:02Z", probabilities=UNSURE)
    embed(db, 1, a)
    embed(db, 2, a)
    embed(db, 3, b)
    assert claim_next(db, inspector="bob")["id"] == 2  # the audit first
    submit(db, image_id=2, label="package", actor="bob")
    assert claim_next(db, inspector="ann")["id"] == 3  # 1 resembles the audit photo just answered


def test_a_photo_is_not_crowded_out_by_its_own_earlier_answers(db):
    """An overlap photo answered by one inspector still waits for others: its own answer does not make it a copy."""
    a, _ = _vectors()
    for image_id in (1, 2):
        queue_photo(db, image_id, submitted=f"2026-05-01T00:00:0{image_id}Z", probabilities=UNSURE)
        embed(db, image_id, a)
    assert claim_next(db, inspector="bob")["id"] == 1
    submit(db, image_id=1, label="package", actor="bob")
    db.execute("UPDATE images SET status = 'queued' WHERE id = 1")  # as if it needed another answer
    assert near_recent_answers(db, candidates=[1, 2], now=time.time()) == {2}
    assert near_recent_answers(db, candidates=[1, 2], now=time.time() + 601) == set()  # ten minutes on

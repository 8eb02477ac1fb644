"""What a label is worth and the queue rank it buys: the pure function, its age bound, and the classify job setting it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from services.core import jobs
from services.core.config import CLASSES, get_settings, set_setting
from services.core.errors import InvalidInput, NotFound
from services.core.storage import ObjectStore
from services.reviews.ingest import Row, ingest_rows
from services.reviews.queue_value import label_value, queue_rank, rank_in_queue

HOUR = 3600.0
T0 = 1_780_000_000.0


def test_the_value_is_one_minus_the_margin_of_the_top_two_classes():
    assert label_value({"package": 0.5, "product": 0.5, "full_length": 0.0, "half_length": 0.0}) == 1.0
    assert label_value({"package": 1.0, "product": 0.0}) == 0.0
    assert label_value([0.1, 0.6, 0.3]) == pytest.approx(0.7)  # order does not matter: 1 - (0.6 - 0.3)
    assert label_value(np.array([0.7, 0.2, 0.1], np.float32)) == pytest.approx(0.5)
    assert label_value([0.8]) == pytest.approx(0.2)  # a single class: the runner-up is 0
    assert label_value(None) == 0.0 and label_value({}) == 0.0  # no model, no value


def test_an_uncertain_photo_ranks_before_a_confident_one_submitted_at_the_same_time():
    unsure = queue_rank(submitted=T0, probabilities=[0.45, 0.44, 0.06, 0.05], hours=24)
    sure = queue_rank(submitted=T0, probabilities=[0.85, 0.05, 0.05, 0.05], hours=24)
    assert unsure < sure < T0
    assert unsure == pytest.approx(T0 - 0.99 * 24 * HOUR)
    # a newer uncertain photo passes an older confident one while its extra value covers the gap: 0.79 x 24 h
    assert queue_rank(submitted=T0 + 18 * HOUR, probabilities=[0.45, 0.44, 0.06, 0.05], hours=24) < sure
    assert queue_rank(submitted=T0 + 20 * HOUR, probabilities=[0.45, 0.44, 0.06, 0.05], hours=24) > sure


def test_no_photo_waits_behind_one_submitted_more_than_the_age_limit_after_it():
    rng = np.random.default_rng(7)
    hours = 24.0
    submitted = T0 + rng.uniform(0, 10 * 24 * HOUR, 400)
    probs = rng.dirichlet(np.full(4, 0.5), 400)
    ranks = np.array([queue_rank(submitted=s, probabilities=p, hours=hours) for s, p in zip(submitted, probs)])
    served_before = ranks[:, None] <= ranks[None, :]  # [b, a]: b is served no later than a (ties by id)
    lead = submitted[:, None] - submitted[None, :]  # [b, a]: how much later b arrived
    assert served_before[lead > 0].any()  # some later photos do pass earlier ones ...
    assert lead[served_before].max() <= hours * HOUR  # ... but never by more than the age limit
    assert (ranks >= submitted - hours * HOUR).all() and (ranks <= submitted).all()


def test_zero_hours_is_oldest_first_and_no_model_is_the_submitted_time():
    assert queue_rank(submitted=T0, probabilities=[0.5, 0.5], hours=0) == T0
    assert queue_rank(submitted=T0, probabilities=None, hours=24) == T0
    assert queue_rank(submitted=T0, probabilities=[0.5, 0.5], hours=-3) == T0  # never later than submitted


def test_the_setting_is_validated(db):
    assert get_settings(db)["queue_value_hours"] == 24.0
    set_setting(db, key="queue_value_hours", value=0, actor="admin")
    assert get_settings(db)["queue_value_hours"] == 0.0
    for bad in (-1, 1000, "soon", True):
        with pytest.raises(InvalidInput, match="queue value hours"):
            set_setting(db, key="queue_value_hours", value=bad, actor="admin")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_rank_in_queue_reads_the_submitted_time_of_the_photo(db):
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', 'product', '2026-05-01T10:00:00.250000Z')")
    db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (1, 'r1', 'a.jpg', 'queued')")
    assert rank_in_queue(db, image_id=1, probabilities=None, hours=24) == pytest.approx(_epoch("2026-05-01T10:00:00.25Z"))
    assert rank_in_queue(db, image_id=1, probabilities=[0.5, 0.5], hours=2) == pytest.approx(
        _epoch("2026-05-01T10:00:00.25Z") - 2 * HOUR)
    with pytest.raises(NotFound):
        rank_in_queue(db, image_id=99, probabilities=None, hours=24)


def test_the_classify_job_ranks_low_confidence_photos_by_their_value(trained_ws, samples: Path, tmp_path: Path):
    db = trained_ws.db()
    try:
        photos = [p for cls in CLASSES for p in sorted((samples / cls).iterdir())[:2]]
        rows = [Row(n, f"r{n}", "product", [str(p)], submitted_at=f"2026-05-0{1 + n % 3}T10:00:00Z")
                for n, p in enumerate(photos, 1)]
        ingest_rows(db, rows=rows, store=ObjectStore(), batch="b", actor="t")
        set_setting(db, key="thresholds", value=dict.fromkeys(CLASSES, 1.0), actor="t")  # everything to people
        job_id = jobs.create_job(db, kind="classify", params={}, actor="t")
        jobs.run_job(trained_ws, job_id=job_id)
        found = db.execute(
            "SELECT i.queue_reason, i.queue_rank, i.submitted_at, p.probabilities FROM images i JOIN predictions p "
            "ON p.image_id = i.id").fetchall()
        assert len(found) == len(photos)
        for reason, rank, submitted, probabilities in found:
            value = label_value(json.loads(probabilities))
            assert reason == "low_confidence" and 0.0 <= value <= 1.0
            assert rank == pytest.approx(_epoch(submitted) - value * 24 * HOUR, abs=1e-3)
        assert len({round(r[1], 3) for r in found}) > 3  # ranks differ by value, not only by day
    finally:
        db.close()

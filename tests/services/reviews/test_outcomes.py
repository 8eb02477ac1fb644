"""services.reviews.outcomes.overview counts credits in SQL groups; it must agree with review_outcomes photo by photo."""

from __future__ import annotations

import random

from services.core.config import set_setting
from services.reviews.decisions import decide, review_outcomes
from services.reviews.outcomes import overview


def test_overview_credits_agree_with_each_reviews_outcome(db):
    set_setting(db, key="credit_rules", actor="admin", value={
        "product": {"classes": ["product"], "mode": "any"},
        "style": {"classes": ["full_length", "half_length"], "mode": "all"},
        "bundle": {"classes": ["package", "product"], "mode": "all"},
    })
    rng = random.Random(7)
    image_id = 0
    with db.atomic():
        for r in range(300):
            rtype = rng.choice(["product", "style", "bundle", "unruled"])
            db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, ?, ?)",
                       [f"r{r}", rtype, f"2026-03-{1 + r % 5:02d}T10:00:00Z"])
            for _ in range(rng.randint(1, 3)):
                image_id += 1
                status = rng.choice(["decided", "decided", "queued", "failed", "pending"])
                db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (?, ?, ?, ?)",
                           [image_id, f"r{r}", f"{image_id}.jpg", "queued" if status == "decided" else status])
                if status == "decided" or (status == "failed" and rng.random() < 0.5):
                    decide(db, image_id=image_id, label=rng.choice(["package", "product", "full_length", "half_length"]),
                           actor="ann")
                    if status == "failed":
                        db.execute("UPDATE images SET status = 'failed' WHERE id = ?", [image_id])
    outcomes = review_outcomes(db)
    expected_per_day: dict[str, int] = {}
    for rid, o in outcomes.items():
        if o["credit"] is True:
            day = db.execute("SELECT substr(submitted_at, 1, 10) FROM reviews WHERE id = ?", [rid]).fetchone()[0]
            expected_per_day[day] = expected_per_day.get(day, 0) + 1
    stats = overview(db, actor="tester")
    assert stats["credits_granted"] == sum(expected_per_day.values()) > 0
    assert {d["day"]: d["credits_granted"] for d in stats["credits_per_day"]} == expected_per_day
    assert stats["reviews"] == 300
    # issue 20 item 5: each photo is counted once, where it is now, so the headline figures add up (an audited
    # automatic decision is in the queue until people answer), in total and per day
    assert stats["photos"] == (stats["decided_automatically"] + stats["decided_by_people"] + stats["queued"]
                               + stats["pending"] + stats["failed"])
    for day in stats["per_day"]:
        assert day["photos_in"] == sum(day[k] for k in ("decided_automatically", "decided_by_people", "in_queue",
                                                        "pending", "failed")), day


def test_an_audited_automatic_decision_counts_in_the_queue_not_twice(db):
    from services.reviews.decisions import decide

    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', 'product', '2026-03-01T10:00:00Z')")
    for image_id in (1, 2):
        db.execute("INSERT INTO images (id, review_id, uri, status) VALUES (?, 'r1', ?, 'queued')", [image_id, f"{image_id}.jpg"])
        decide(db, image_id=image_id, label="product", actor="model:m", source="auto", keep_queued=image_id == 2)
    stats = overview(db, actor="tester")
    assert (stats["photos"], stats["decided_automatically"], stats["queued"], stats["queued_audits"]) == (2, 1, 1, 1)

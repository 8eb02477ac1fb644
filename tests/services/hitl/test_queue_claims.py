"""Leases on the human queue: no two inspectors get the same photo; expired leases come back."""

from __future__ import annotations

import threading
import time

import pytest

from services.core.config import Workspace, set_setting
from services.core.errors import InvalidInput, NotFound
from services.hitl.answers import submit
from services.hitl.queue import claim_next, release


def _seed(db, n: int) -> None:
    with db.atomic():
        for i in range(1, n + 1):
            db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, ?, ?)",
                       [f"r{i}", "product" if i % 2 else "style", f"2026-01-01T00:00:{i % 60:02d}Z"])
            db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, 'queued', ?)",
                       [i, f"r{i}", f"{i}.jpg", f"{i:064x}", "low_confidence" if i % 3 else "no_model"])
            if i % 3:
                db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1) ON CONFLICT DO NOTHING")
                db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                           "VALUES (?, 1, ?, ?, '{}')", [i, "product" if i % 2 else "full_length", (i % 10) / 10])


@pytest.fixture(autouse=True)
def _one_inspector_per_photo(db):
    """These tests are about leases; overlap photos and gold checks have tests of their own."""
    set_setting(db, key="overlap_rate", value=0.0, actor="admin")
    set_setting(db, key="gold_rate", value=0.0, actor="admin")


def test_two_inspectors_never_get_the_same_photo_and_keep_their_own(db):
    _seed(db, 3)
    a = claim_next(db, inspector="ann")
    b = claim_next(db, inspector="bob")
    assert a["id"] != b["id"]
    assert claim_next(db, inspector="ann")["id"] == a["id"]  # a rerun shows ann her own photo again
    with pytest.raises(InvalidInput, match="being inspected by ann"):
        submit(db, image_id=a["id"], label="product", actor="bob")
    submit(db, image_id=a["id"], label="product", actor="ann")
    with pytest.raises(InvalidInput, match="already decided by ann"):
        submit(db, image_id=a["id"], label="package", actor="bob")
    assert db.execute("SELECT COUNT(*) FROM queue_claims WHERE image_id = ?", [a["id"]]).fetchone()[0] == 0


def test_expired_lease_and_release_return_the_photo(db):
    _seed(db, 1)
    first = claim_next(db, inspector="ann", lease_seconds=-1)  # already expired
    assert claim_next(db, inspector="bob")["id"] == first["id"]
    release(db, image_id=first["id"], inspector="ann")  # not ann's any more: nothing happens
    assert claim_next(db, inspector="cat") is None
    release(db, image_id=first["id"], inspector="bob")
    assert claim_next(db, inspector="cat")["id"] == first["id"]


def test_filters_by_review_type_class_and_confidence_band(db):
    _seed(db, 12)
    got = claim_next(db, inspector="ann", review_type="style", label="full_length", band=(0.3, 0.7))
    row = db.execute("SELECT r.review_type, p.label, p.confidence FROM images i JOIN reviews r ON r.id = i.review_id "
                     "JOIN predictions p ON p.image_id = i.id WHERE i.id = ?", [got["id"]]).fetchone()
    assert row[0] == "style" and row[1] == "full_length" and 0.3 <= row[2] < 0.7
    assert claim_next(db, inspector="bob", label="package") is None
    with pytest.raises(InvalidInput):
        claim_next(db, inspector="")
    with pytest.raises(NotFound, match="deleted"):
        submit(db, image_id=999, label="product", actor="ann")


def test_eight_inspectors_at_once_lose_nothing_and_never_double_claim(ws: Workspace):
    db = ws.db()
    set_setting(db, key="overlap_rate", value=0.0, actor="admin")  # every photo needs one inspector
    set_setting(db, key="gold_rate", value=0.0, actor="admin")
    _seed(db, 120)
    claimed: dict[int, list[str]] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def inspect(name: str) -> None:
        conn = ws.db()  # a connection per thread, as per process
        try:
            start.wait()
            while (item := claim_next(conn, inspector=name)) is not None:
                with lock:
                    claimed.setdefault(item["id"], []).append(name)
                submit(conn, image_id=item["id"], label="product", actor=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=inspect, args=(f"inspector{i}",)) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an inspector thread is still running after 120 s"
    assert not errors, errors
    assert time.monotonic() - t0 < 120
    assert sorted(claimed) == list(range(1, 121))
    assert all(len(who) == 1 for who in claimed.values())  # never two inspectors on one photo
    assert db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 120  # no decision lost or doubled
    assert db.execute("SELECT COUNT(*) FROM images WHERE status = 'decided'").fetchone()[0] == 120
    # (how the 120 photos spread over the eight depends on SQLite's busy back-off: not asserted)


def test_eight_inspectors_on_overlap_photos_answer_each_once_and_every_photo_is_consolidated(ws: Workspace):
    db = ws.db()
    set_setting(db, key="overlap_rate", value=1.0, actor="admin")  # every photo: three independent answers
    set_setting(db, key="overlap_k", value=3, actor="admin")
    set_setting(db, key="gold_rate", value=0.0, actor="admin")
    _seed(db, 40)
    for i in range(8):  # all eight are at work before the first photo is handed out
        db.execute("INSERT INTO queue_claims (image_id, inspector, kind, claimed_at, claimed_ts, lease_expires) "
                   "VALUES (40, ?, 'queue', 'now', ?, ?)", [f"inspector{i}", time.time(), time.time() + 600])
    db.execute("UPDATE images SET required_answers = 8 WHERE id = 40")  # photo 40: held by all eight
    errors: list[BaseException] = []
    start = threading.Barrier(8)
    labels = ["product", "product", "package"]

    def inspect(n: int) -> None:
        conn = ws.db()
        name = f"inspector{n}"
        try:
            start.wait()
            while (item := claim_next(conn, inspector=name)) is not None:
                submit(conn, image_id=item["id"], label=labels[(n + item["id"]) % 3], actor=name)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            conn.close()

    threads = [threading.Thread(target=inspect, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an inspector thread is still running after 120 s"
    assert not errors, errors
    per_photo = db.execute("SELECT image_id, COUNT(*), COUNT(DISTINCT inspector) FROM active_answers GROUP BY image_id").fetchall()
    required = dict(db.execute("SELECT id, required_answers FROM images").fetchall())
    assert len(per_photo) == 40
    for image_id, n, distinct in per_photo:
        assert n == distinct == required[image_id], image_id  # exactly as many inspectors as asked, each once
    assert all(required[i] == 3 for i in range(1, 40))
    states = db.execute("SELECT status, COALESCE(queue_reason, ''), COUNT(*) FROM images GROUP BY 1, 2").fetchall()
    assert sum(n for _, _, n in states) == 40
    assert {(s, r) for s, r, _ in states} <= {("decided", ""), ("queued", "adjudication")}
    assert db.execute("SELECT COUNT(*) FROM consensus").fetchone()[0] == 40
    assert db.execute("SELECT COUNT(*) FROM queue_claims").fetchone()[0] == 0


def test_out_of_reach_says_where_the_photos_an_inspector_cannot_take_are(db):
    """Issue 20 item 3: '2 photos waiting' above 'The queue is empty' said nothing of where they were."""
    from services.hitl.queue import out_of_reach

    _seed(db, 5)
    db.execute("UPDATE images SET required_answers = 2 WHERE id = 2")  # an overlap photo: two independent answers
    db.execute("UPDATE images SET queue_reason = 'adjudication' WHERE id = 5")
    held = claim_next(db, inspector="ann")["id"]
    assert held == 1
    release(db, image_id=held, inspector="ann")
    assert claim_next(db, inspector="ann", skip=[1])["id"] == 2
    submit(db, image_id=2, label="product", actor="ann")  # waits for a second inspector now
    assert claim_next(db, inspector="bob", skip=[2])["id"] == 1  # bob holds photo 1
    seen = out_of_reach(db, inspector="ann", skip=[3])
    assert seen == {"adjudication": 1, "answered_by_you": 1, "skipped": 1, "held_by_others": 1, "filtered_out": 0}
    assert claim_next(db, inspector="ann", skip=[3])["id"] == 4  # the one photo she can take is not counted
    assert out_of_reach(db, inspector="cat", review_type="style") == {  # 2 and 4 are style reviews
        "adjudication": 1, "answered_by_you": 0, "skipped": 0, "held_by_others": 2, "filtered_out": 1}

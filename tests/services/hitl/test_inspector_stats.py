"""Inspector dashboard figures: every number checked against a hand-computed value."""

from __future__ import annotations

import time
from datetime import date

import pytest

from services.core.errors import InvalidInput
from services.hitl.inspector_stats import (
    has_activity,
    inspector_daily,
    inspector_totals,
    list_inspectors,
    queue_size_series,
    record_queue_snapshot,
    record_queue_snapshot_if_stale,
    team_daily,
)

D1, D2 = "2024-05-01", "2024-05-02"


def _t(day: str, hms: str) -> str:
    return f"{day}T{hms}.000000Z"


class Seeder:
    def __init__(self, db) -> None:
        self.db = db
        db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES ('r1', 'product', ?)", [_t(D1, "00:00:00")])
        db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm', 1)")

    def image(self, image_id: int, *, status: str = "decided", reason: str | None = None) -> None:
        self.db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, 'r1', ?, ?, ?, ?)",
                        [image_id, f"{image_id}.jpg", f"{image_id:064x}", status, reason])

    def prediction(self, image_id: int, label: str) -> int:
        return self.db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                               "VALUES (?, 1, ?, 0.9, '{}')", [image_id, label]).lastrowid

    def decision(self, image_id: int, label: str, *, source: str, at: str) -> int:
        return self.db.execute("INSERT INTO decisions (image_id, label, credit, reason, source, decided_by, decided_at) "
                               "VALUES (?, ?, 1, 'test', ?, 'x', ?)", [image_id, label, source, at]).lastrowid

    def answer(self, image_id: int, inspector: str, label: str, kind: str, *, at: str, seconds: float | None,
               prediction_id: int | None = None, decision_id: int | None = None) -> int:
        return self.db.execute(
            "INSERT INTO answers (image_id, inspector, label, kind, answered_at, seconds, prediction_id, decision_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [image_id, inspector, label, kind, at, seconds, prediction_id, decision_id]).lastrowid

    def undo(self, answer_id: int, image_id: int, inspector: str) -> None:
        self.db.execute("INSERT INTO queue_events (at, ts, image_id, inspector, action, answer_id) "
                        "VALUES (?, 0, ?, ?, 'undo', ?)", [now_iso_fixed(), image_id, inspector, answer_id])

    def consensus(self, image_id: int, label: str, outcome: str = "decided") -> None:
        self.db.execute("INSERT INTO consensus (image_id, label, confidence, agreement, n_answers, probabilities, method, "
                        "outcome) VALUES (?, ?, 0.9, 0.66, 3, '{}', 'dawid-skene', ?)", [image_id, label, outcome])

    def gold(self, image_id: int, label: str) -> None:
        self.db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (?, ?, 'admin', ?)",
                        [image_id, label, _t(D1, "00:00:00")])


def now_iso_fixed() -> str:
    return _t(D1, "23:00:00")


@pytest.fixture
def seeded(db):
    s = Seeder(db)
    for i in range(1, 11):
        s.image(i)
    p1, p2, p3 = s.prediction(1, "package"), s.prediction(2, "product"), s.prediction(3, "package")
    p4, p7 = s.prediction(4, "full_length"), s.prediction(7, "package")
    s.consensus(3, "product")
    s.consensus(4, "full_length")
    s.consensus(9, "package", outcome="adjudication")  # pending adjudication: not a settled consensus
    s.gold(5, "product")
    s.gold(6, "product")

    # decisions: img1 auto on D1 then confirmed by a person on D2 (still automatic); img2, img3 human on D1;
    # img7 human on D1 but its answer was undone; img10 auto on D2
    s.decision(1, "package", source="auto", at=_t(D1, "01:00:00"))
    d2 = s.decision(2, "package", source="human", at=_t(D1, "09:00:20"))
    s.decision(3, "product", source="human", at=_t(D1, "12:00:00"))
    d7 = s.decision(7, "package", source="human", at=_t(D1, "09:30:00"))
    s.decision(1, "product", source="human", at=_t(D2, "08:00:00"))
    s.decision(10, "full_length", source="auto", at=_t(D2, "03:00:00"))

    # alice on D1
    s.answer(1, "alice", "package", "single", at=_t(D1, "09:00:00"), seconds=10, prediction_id=p1)  # kept
    s.answer(2, "alice", "package", "single", at=_t(D1, "09:00:20"), seconds=20, prediction_id=p2,
             decision_id=d2)  # overrides product
    s.answer(3, "alice", "product", "overlap", at=_t(D1, "10:00:00"), seconds=30, prediction_id=p3)  # overrides package, agrees
    s.answer(4, "alice", "half_length", "overlap", at=_t(D1, "11:00:00"), seconds=1000,
             prediction_id=p4)  # overrides full_length, disagrees, time capped at 300 s
    s.answer(5, "alice", "product", "gold", at=_t(D1, "12:00:00"), seconds=40)  # gold correct
    s.answer(6, "alice", "package", "gold", at=_t(D1, "23:59:59"), seconds=50)  # gold wrong, still D1 (UTC)
    a7 = s.answer(7, "alice", "package", "single", at=_t(D1, "09:30:00"), seconds=5, prediction_id=p7, decision_id=d7)
    s.undo(a7, 7, "alice")  # withdrawn: counts nowhere
    s.answer(8, "alice", "product", "adjudication", at=_t(D1, "13:00:00"), seconds=60)  # not queue throughput
    # bob on D1 and D2
    s.answer(3, "bob", "package", "overlap", at=_t(D1, "10:05:00"), seconds=15, prediction_id=p3)  # disagrees, keeps
    s.answer(9, "bob", "package", "overlap", at=_t(D1, "10:10:00"), seconds=25)  # consensus pending: not counted
    s.answer(1, "bob", "product", "single", at=_t(D2, "00:00:00"), seconds=None, prediction_id=p1)  # overrides package
    return db


def by_key(rows):
    return {(r["inspector"], r["day"]): r for r in rows}


def test_inspector_daily_figures(seeded):
    rows = inspector_daily(seeded)
    assert [(r["inspector"], r["day"]) for r in rows] == [("alice", D1), ("bob", D1), ("bob", D2)]
    got = by_key(rows)

    alice = got[("alice", D1)]
    assert alice["items"] == 6  # the undone single and the adjudication are left out
    assert alice["active_seconds"] == 10 + 20 + 30 + 300 + 40 + 50
    assert alice["items_per_hour"] == pytest.approx(6 / (450 / 3600))  # 48
    assert alice["median_seconds"] == 35  # (30 + 40) / 2 of 10 20 30 40 50 1000
    assert alice["agreement_with_consensus"] == 0.5
    assert alice["gold_accuracy"] == 0.5
    assert alice["override_rate"] == 0.75
    assert alice["override_rate_by_class"] == {"full_length": 1.0, "package": 0.5, "product": 1.0}

    bob1 = got[("bob", D1)]
    assert bob1["items"] == 2
    assert bob1["items_per_hour"] == pytest.approx(2 / (40 / 3600))  # 180
    assert bob1["median_seconds"] == 20
    assert bob1["overlap_answers"] == 1 and bob1["agreement_with_consensus"] == 0.0
    assert bob1["gold_answers"] == 0 and bob1["gold_accuracy"] is None
    assert bob1["override_rate"] == 0.0 and bob1["override_rate_by_class"] == {"package": 0.0}

    bob2 = got[("bob", D2)]
    assert bob2["items"] == 1
    assert bob2["items_per_hour"] is None and bob2["median_seconds"] is None  # no recorded time
    assert bob2["agreement_with_consensus"] is None
    assert bob2["override_rate"] == 1.0 and bob2["override_rate_by_class"] == {"package": 1.0}


def test_inspector_daily_period_and_inspector_filters(seeded):
    assert [(r["inspector"], r["day"]) for r in inspector_daily(seeded, since=D2)] == [("bob", D2)]
    assert [(r["inspector"], r["day"]) for r in inspector_daily(seeded, until=D1)] == [("alice", D1), ("bob", D1)]
    assert [(r["inspector"], r["day"]) for r in inspector_daily(seeded, since=date(2024, 5, 1), until=date(2024, 5, 1),
                                                                inspectors=["bob"])] == [("bob", D1)]
    # a time bound is an instant: alice's answers from 10:00 on D1
    late = by_key(inspector_daily(seeded, since=_t(D1, "10:00:00"), until=D1, inspectors=["alice"]))
    assert late[("alice", D1)]["items"] == 4
    assert inspector_daily(seeded, inspectors=[]) == []
    assert inspector_daily(seeded, since="2030-01-01") == []
    with pytest.raises(InvalidInput):
        inspector_daily(seeded, since="yesterday")
    with pytest.raises(InvalidInput):
        inspector_daily(seeded, since=D2, until=D1)


def test_inspector_totals_over_the_period(seeded):
    got = {r["inspector"]: r for r in inspector_totals(seeded)}
    assert got["alice"]["items"] == 6 and got["alice"]["median_seconds"] == 35 and got["alice"]["day"] is None
    bob = got["bob"]
    assert bob["items"] == 3
    assert bob["items_per_hour"] == pytest.approx(3 / (40 / 3600))  # 270
    assert bob["median_seconds"] == 20  # the answer without a time has no median contribution
    assert bob["override_rate"] == 0.5 and bob["override_rate_by_class"] == {"package": 0.5}
    assert list_inspectors(seeded) == ["alice", "bob"]


def test_team_daily(seeded, actor="tester"):
    rows = team_daily(seeded, actor="tester")
    assert rows == [
        # img1 (auto, later confirmed by a person), img2, img3; img7's decision came from an undone answer
        {"day": D1, "decided": 3, "decided_automatically": 1, "auto_share": pytest.approx(1 / 3), "human_answers": 9},
        {"day": D2, "decided": 1, "decided_automatically": 1, "auto_share": 1.0, "human_answers": 1},
    ]
    assert [r["day"] for r in team_daily(seeded, actor="tester", since=D2)] == [D2]
    assert team_daily(seeded, actor="tester", until="2024-04-30") == []


def test_empty_database(db):
    assert inspector_daily(db) == [] and inspector_totals(db) == [] and team_daily(db, actor="tester") == []
    assert queue_size_series(db) == [] and list_inspectors(db) == []
    assert has_activity(db) is False


def test_queue_snapshots(db):
    s = Seeder(db)
    s.image(1, status="queued", reason="audit")
    s.image(2, status="queued", reason="low_confidence")
    s.image(3, status="queued", reason="low_confidence")
    s.image(4, status="pending")
    s.image(5, status="decided")
    db.execute("INSERT INTO queue_snapshots (ts, at, queued, by_reason) VALUES (?, ?, 7, '{\"audit\": 7}')",
               [time.time() - 120, _t(D1, "00:00:00")])
    snap = record_queue_snapshot_if_stale(db)  # the last one is two minutes old
    assert snap is not None and snap["queued"] == 3 and snap["by_reason"] == {"audit": 1, "low_confidence": 2}
    assert record_queue_snapshot_if_stale(db) is None  # a fresh one exists
    record_queue_snapshot(db)  # unconditional
    series = queue_size_series(db)
    assert [p["queued"] for p in series] == [7, 3, 3]
    assert series[1]["by_reason"] == {"audit": 1, "low_confidence": 2}
    assert [p["queued"] for p in queue_size_series(db, since=D2)] == [3, 3]
    assert [p["queued"] for p in queue_size_series(db, until=D1)] == [7]
    assert has_activity(db) is True


def test_worker_housekeeping_records_a_snapshot_at_most_every_minute(ws, db):
    from services.worker.runner import Worker

    Seeder(db).image(1, status="queued", reason="audit")
    worker = Worker(ws)  # not started: the loop's snapshot step is called directly
    worker._housekeeping()
    worker._housekeeping()  # within the minute: nothing
    assert db.execute("SELECT queued, by_reason FROM queue_snapshots").fetchall() == [(1, '{"audit": 1}')]
    with pytest.raises(InvalidInput):
        queue_size_series(db, since="not a date")


def test_a_rate_from_too_little_data_says_so(seeded):
    """Issue 20 item 10: '595.5 items/hour' from a few seconds' work. The figure stays, with a note the dashboard
    shows instead of it, until there are MIN_RATE_ANSWERS answers and MIN_RATE_SECONDS of active time."""
    from services.hitl.inspector_stats import MIN_RATE_ANSWERS, MIN_RATE_SECONDS, rate_note

    got = by_key(inspector_daily(seeded))
    assert got[("bob", D1)]["rate_note"] == "too little data: 2 answers in 40 s"
    assert got[("alice", D1)]["rate_note"] == "too little data: 6 answers in 8 min"
    assert rate_note(MIN_RATE_ANSWERS, active_seconds=MIN_RATE_SECONDS) is None
    assert rate_note(MIN_RATE_ANSWERS - 1, active_seconds=3600) is not None
    assert rate_note(500, active_seconds=MIN_RATE_SECONDS - 1) is not None
    assert rate_note(1, active_seconds=5) == "too little data: 1 answer in 5 s"

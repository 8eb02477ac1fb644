"""Per-line shift targets: validation and audit."""

from __future__ import annotations

import json

import pytest

from services.core.errors import InvalidInput, NotFound
from services.lines.targets import clear_target, set_target, targets
from tests.services.lines.test_stats import add_line


def test_set_target_validates_and_audits(db):
    add_line(db, "A")
    with pytest.raises(InvalidInput, match="Unknown shift 'weekend'"):
        set_target(db, line_id="A", shift="weekend", trays_per_hour=10, actor="ops")
    with pytest.raises(InvalidInput, match="cannot be negative"):
        set_target(db, line_id="A", shift="early", trays_per_hour=-1, actor="ops")
    for bad in (float("nan"), float("inf"), True, "12"):
        with pytest.raises(InvalidInput):
            set_target(db, line_id="A", shift="early", trays_per_hour=bad, actor="ops")
    with pytest.raises(NotFound):
        set_target(db, line_id="nope", shift="early", trays_per_hour=10, actor="ops")
    assert targets(db) == {}

    row = set_target(db, line_id="A", shift="early", trays_per_hour=120, actor="ops")
    assert row["trays_per_hour"] == 120.0 and row["updated_by"] == "ops"
    set_target(db, line_id="A", shift="early", trays_per_hour=150.5, actor="admin")
    set_target(db, line_id="A", shift="night", trays_per_hour=0, actor="admin")  # zero: not planned to run
    assert targets(db) == {("A", "early"): 150.5, ("A", "night"): 0.0}
    assert clear_target(db, line_id="A", shift="night", actor="admin") is True
    assert clear_target(db, line_id="A", shift="night", actor="admin") is False
    assert targets(db) == {("A", "early"): 150.5}
    audit = [(r[0], r[1], r[2], json.loads(r[3])) for r in
             db.execute("SELECT actor, action, target, detail FROM audit_log WHERE action = 'line.target' ORDER BY id")]
    assert audit == [
        ("ops", "line.target", "A/early", {"trays_per_hour": 120.0, "before": None}),
        ("admin", "line.target", "A/early", {"trays_per_hour": 150.5, "before": 120.0}),
        ("admin", "line.target", "A/night", {"trays_per_hour": 0.0, "before": None}),
        ("admin", "line.target", "A/night", {"trays_per_hour": None, "before": 0.0}),
    ]


# -------------------------------------------------------------------------------------------- dashboard

"""Gated retraining: due when enough new labels exist; a candidate is promoted only when it is no worse than the
current model and above the floor; refusals and failures keep the current model; every run is logged."""

from __future__ import annotations

import pytest

from services.core.config import set_setting
from services.core.jobs import get_job, run_job
from services.models import retraining
from services.models.registry import active_version, list_versions


def test_the_gate_on_constructed_cases():
    assert retraining.gate(candidate_f1=0.90, current_f1=0.88, floor=0.85)[0] is True
    assert retraining.gate(candidate_f1=0.88, current_f1=0.88, floor=0.85)[0] is True  # a tie promotes (newer labels)
    worse = retraining.gate(candidate_f1=0.87, current_f1=0.88, floor=0.85)
    assert worse[0] is False and "under the current model's 0.880" in worse[1]
    low = retraining.gate(candidate_f1=0.84, current_f1=None, floor=0.85)
    assert low[0] is False and "under the floor 0.850" in low[1]
    assert retraining.gate(candidate_f1=0.86, current_f1=None, floor=0.85) == (True, "first model: macro-F1 0.860 clears the floor 0.850")
    assert retraining.gate(candidate_f1=None, current_f1=0.9, floor=0.5)[0] is False


def _run(ws, db, job_id):
    assert run_job(ws, job_id=job_id) == job_id
    return get_job(db, job_id)


def test_forced_runs_promote_a_candidate_no_worse_and_keep_the_model_under_the_floor(trained_ws):
    db = trained_ws.db()
    first = active_version(db)
    job = _run(trained_ws, db, retraining.queue(db, actor="cli:test", force=True))
    assert job["state"] == "done" and job["result"]["outcome"] == "promoted"  # same labels: the same macro-F1
    second = active_version(db)
    assert second["id"] != first["id"] and second["id"] == job["result"]["candidate_version_id"]
    set_setting(db, key="retrain_min_macro_f1", value=0.999, actor="cli:test")
    job = _run(trained_ws, db, retraining.queue(db, actor="cli:test", force=True))
    assert job["result"]["outcome"] == "kept" and "under the floor 0.999" in job["result"]["reason"]
    assert active_version(db)["id"] == second["id"]  # untouched
    assert len(list_versions(db)) == 3  # the refused candidate is kept, inactive, for comparison
    log = retraining.runs(db, actor="cli:test")
    assert [r["outcome"] for r in log] == ["kept", "promoted"] and log[0]["current_version_id"] == second["id"]
    assert log[1]["candidate_macro_f1"] == pytest.approx(log[1]["current_macro_f1"])


def test_due_only_with_enough_new_labels_and_one_run_at_a_time(trained_ws):
    from services.worker.housekeeping import queue_retraining

    db = trained_ws.db()
    set_setting(db, key="retrain_min_new_labels", value=2, actor="cli:test")
    assert retraining.new_labels(db) == 0 and not retraining.due(db) and queue_retraining(db) == {"retrain_job": None}
    for n in range(2):
        db.execute("INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES (?, ?, 'product', 'folder', "
                   "'2999-01-01T00:00:00Z')", [f"/new/{n}.jpg", f"new{n}"])
    assert retraining.new_labels(db) == 2 and retraining.due(db)
    job_id = queue_retraining(db)["retrain_job"]
    assert job_id and queue_retraining(db) == {"retrain_job": None}  # one at a time
    set_setting(db, key="retrain_auto", value=False, actor="cli:test")
    assert not retraining.due(db)


def test_a_failed_training_is_logged_and_loses_nothing(ws, db):
    db.execute("INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES ('/x.jpg', 'x', 'product', 'folder', 'now')")
    job = _run(ws, db, retraining.queue(db, actor="cli:test", force=True))
    assert job["state"] == "failed"
    run = retraining.runs(db, actor="cli:test")[0]
    assert run["outcome"] == "failed" and active_version(db) is None
    assert "two classes" in run["reason"] and run["reason"] in job["error"]  # says what is missing

"""Gated retraining end to end on the trained sample workspace: inspectors' decisions are new labels that make
retraining due and that the candidate trains on; a candidate worse than the current model is refused."""

from __future__ import annotations

from services.core.config import CLASSES, set_setting
from services.core.jobs import get_job, run_job
from services.models import retraining
from services.models.registry import active_version, list_versions
from services.models.training import training_examples
from services.reviews.decisions import decide
from services.worker.housekeeping import queue_retraining


def _photo_of(db, row: dict, image_id: int) -> None:
    """An uploaded photo that is the same file as an imported label (same sha256)."""
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', '2999-01-01T00:00:00Z')",
               [f"r{image_id}"])
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, 'queued', "
               "'low_confidence')", [image_id, f"r{image_id}", row["uri"], row["sha256"]])


def test_human_decisions_make_retraining_due_and_the_candidate_learns_them(trained_ws):
    db = trained_ws.db()
    set_setting(db, key="retrain_min_new_labels", value=3, actor="cli:test")
    before = active_version(db)
    assert retraining.new_labels(db) == 0 and not retraining.due(db)
    rows = list(db.query("SELECT uri, sha256, label FROM labels ORDER BY id LIMIT 4"))
    relabelled = {}
    for n, row in enumerate(rows[:3]):
        _photo_of(db, row, 1000 + n)
        other = next(c for c in CLASSES if c != row["label"])  # the inspector says otherwise
        decide(db, image_id=1000 + n, label=other, actor="cli:test")
        relabelled[row["sha256"]] = other
        assert retraining.new_labels(db) == n + 1  # each human decision counts
    _photo_of(db, rows[3], 1003)
    decide(db, image_id=1003, label=rows[3]["label"], actor="cli:test", source="auto")  # the model's: not a label
    assert retraining.new_labels(db) == 3 and retraining.due(db)
    # the candidate's examples: the inspectors' decisions win over the imported labels of the same photos
    examples = {e["sha256"]: e for e in training_examples(db)}
    for sha, label in relabelled.items():
        assert (examples[sha]["label"], examples[sha]["source"]) == (label, "decision")
    job_id = queue_retraining(db)["retrain_job"]
    assert job_id and run_job(trained_ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done" and job["result"]["outcome"] in ("promoted", "kept")
    run = retraining.runs(db, actor="cli:test")[0]
    assert run["trigger"] == "due" and run["new_labels"] == 3 and run["current_version_id"] == before["id"]
    candidate = next(v for v in list_versions(db) if v["id"] == job["result"]["candidate_version_id"])
    assert candidate["metrics"]["confusion_matrix"] != before["metrics"]["confusion_matrix"]  # other labels


def test_a_candidate_worse_than_the_current_model_is_refused_end_to_end(trained_ws):
    db = trained_ws.db()
    current = active_version(db)
    set_setting(db, key="retrain_min_macro_f1", value=0.0, actor="cli:test")  # only the comparison can refuse
    # a third of the labels rotated to a wrong class (a bad import): the candidate trains on them
    ids = [r[0] for r in db.execute("SELECT id FROM labels ORDER BY id").fetchall()]
    for i in ids[::3]:
        label = db.execute("SELECT label FROM labels WHERE id = ?", [i]).fetchone()[0]
        db.execute("UPDATE labels SET label = ? WHERE id = ?", [CLASSES[(CLASSES.index(label) + 1) % len(CLASSES)], i])
    job_id = retraining.queue(db, actor="cli:test", force=True)
    assert run_job(trained_ws, job_id=job_id) == job_id
    result = get_job(db, job_id)["result"]
    assert result["outcome"] == "kept", result
    assert result["candidate_macro_f1"] < result["current_macro_f1"] == current["metrics"]["macro_f1"]
    assert f"under the current model's {current['metrics']['macro_f1']:.3f}" in result["reason"]
    assert active_version(db)["id"] == current["id"]  # the current model still routes
    refused = next(v for v in list_versions(db) if v["id"] == result["candidate_version_id"])
    assert not refused["active"]  # kept for comparison, inactive
    run = retraining.runs(db, actor="cli:test")[0]
    assert (run["outcome"], run["candidate_version_id"]) == ("kept", refused["id"])

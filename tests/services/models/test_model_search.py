"""Local grid searches (head over C, fine-tuning over epochs x blocks) on the real sample photos."""

import json

import numpy as np
import pytest

from services.cli import main as cli
from services.core import jobs
from services.core.errors import ModelError
from services.core.storage import ObjectStore
from services.models import grid_search, model_search
from services.models.finetune import FineTuneSearch, grid_points
from services.models.training import import_folder


@pytest.fixture
def labelled(ws, db, samples):
    import_folder(db, root=str(samples), store=ObjectStore(), actor="test")
    return db


def _run(ws, db, **kw):
    job_id = model_search.queue(db, actor="test", **kw)
    jobs.run_job(ws, job_id=job_id)
    return jobs.get_job(db, job_id)


def test_head_grid_records_every_point_with_its_out_of_fold_report(ws, labelled):
    job = _run(ws, labelled, backend="head", grid={"C": [0.1, 1.0]}, folds=3)
    assert job["state"] == "done", job["error"]
    assert job["result"]["examples"] == 60 and job["result"]["folds"] == 3
    points = grid_search.points(labelled, search_id=job["result"]["search_id"], actor="test")
    assert sorted(p["params"]["C"] for p in points) == [0.1, 1.0]
    for p in points:
        m = p["metrics"]
        assert set(m["per_class"]) == {"full_length", "half_length", "package", "product"}
        assert np.array(m["confusion_matrix"]).sum() == 60
        assert 0 <= p["automatic_share"] <= 1 and m["at_target"]["automatic_share"] == p["automatic_share"]
        assert m["tradeoff"] and p["macro_f1"] > 0.8  # measured 0.91-0.94 on the 60 samples
    assert job["result"]["best"]["macro_f1"] == max(p["macro_f1"] for p in points)
    rows = grid_search.comparison_rows(labelled, actor="test")
    assert {r["backend"] for r in rows} == {"head"} and {"param_C", "f1_product"} <= set(rows[0])
    assert labelled.execute("SELECT state FROM grid_searches").fetchone()[0] == "done"


def test_finetune_grid_cross_validates_epochs_by_blocks(ws, labelled):
    job = _run(ws, labelled, backend="finetune", grid={"epochs": [1, 3], "blocks": [1, 2]}, folds=2)
    assert job["state"] == "done", job["error"]
    assert job["total"] == 2  # one work item per blocks value: it covers that value's whole epochs axis
    points = grid_search.points(labelled, search_id=job["result"]["search_id"], actor="test")
    assert sorted((p["params"]["epochs"], p["params"]["blocks"]) for p in points) == [(1, 1), (1, 2), (3, 1), (3, 2)]
    by = {(p["params"]["epochs"], p["params"]["blocks"]): p for p in points}
    assert by[(3, 1)]["seconds"] > by[(1, 1)]["seconds"]  # more epochs continue the run: cumulative time
    assert all(np.array(p["metrics"]["confusion_matrix"]).sum() == 60 for p in points)
    assert max(p["macro_f1"] for p in points) > 0.75  # 3 epochs of 2 blocks, 2 folds: measured about 0.9


def test_fine_tuning_learns_from_a_small_set(samples):
    """Direct check of the torch path: mirrored activations are cached and training improves on chance."""
    from services.core import images as imgs
    from services.models.embedder import preprocess

    files = [(p, i) for i, c in enumerate(["package", "product"]) for p in sorted((samples / c).glob("*.jpg"))[:8]]
    x = np.stack([preprocess(imgs.decode(p.read_bytes(), max_side=224, max_pixels=10**8)) for p, _ in files])
    y = np.array([i for _, i in files])
    search = FineTuneSearch(x, y, grid={"epochs": [4], "blocks": [1]}, folds=2)
    assert search.base.shape == (16, 192, 7, 7) and not np.allclose(search.base, search.base_m)
    [(params, proba, _)] = search.run_blocks(1)
    assert params == {"epochs": 4, "blocks": 1}
    assert (proba.argmax(1) == y).mean() >= 0.75 and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_bad_grids_and_too_few_labels_fail_with_what_to_do(ws, db, samples):
    with pytest.raises(ModelError, match="blocks must be 1 to 16"):
        grid_points({"epochs": [5], "blocks": [0, 20]})
    with pytest.raises(ModelError, match="positive values of C"):
        model_search.queue(db, actor="test", backend="head", grid={"C": [0]})
    with pytest.raises(ModelError, match="unknown local training backend"):
        model_search.queue(db, actor="test", backend="xgboost", grid={"C": [1]})
    job = _run(ws, db, backend="head", grid={"C": [1.0]})
    assert job["state"] == "failed" and "no labelled photos" in job["error"]
    db.execute("INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES ('/nowhere/x.jpg', 'x', "
               "'product', 'folder', '2026-01-01')")
    for i, p in enumerate(sorted((samples / "product").glob("*.jpg"))[:3]):
        db.execute("INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES (?, ?, 'product', 'folder', "
                   "'2026-01-01')", [str(p), f"s{i}"])
    job = _run(ws, db, backend="finetune", grid={"epochs": [1], "blocks": [1]})
    assert job["state"] == "failed" and "at least two classes" in job["error"]  # one class only
    assert db.execute("SELECT COUNT(*) FROM model_versions").fetchone()[0] == 0


def test_cli_grid_prints_cross_validated_macro_f1_and_the_automatic_share(ws, samples, capsys):
    code = cli.main(["--data-dir", str(ws.root), "train", "--grid", "--folder", str(samples), "--folds", "3",
                     "--c-values", "1", "--epochs", "2", "--blocks", "1"])
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    assert code == 0, out.err
    assert set(summary["searches"]) == {"head", "finetune"}
    assert 0.5 < summary["macro_f1"] <= 1 and 0 <= summary["automatic_share"] <= 1
    assert "expected automatic share at 98% accuracy" in out.err and "cross-validated macro-F1" in out.err
    code = cli.main(["--data-dir", str(ws.root), "train", "--grid", "--folder", str(ws.root / "absent")])
    out = capsys.readouterr()
    assert code == 0 and "skipped" in json.loads(out.out.strip().splitlines()[-1])


def test_a_grid_search_that_dies_halfway_resumes_without_redoing_finished_points(ws, labelled, monkeypatch):
    real, calls = model_search.cross_validate, []

    def cut_power_on_the_second_point(*args, **kw):
        calls.append(kw["c"])
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return real(*args, **kw)

    monkeypatch.setattr(model_search, "cross_validate", cut_power_on_the_second_point)
    job_id = model_search.queue(labelled, actor="test", backend="head", grid={"C": [0.1, 1.0, 3.0]}, folds=2)
    jobs.run_job(ws, job_id=job_id)
    job = jobs.get_job(labelled, job_id)
    assert job["state"] == "failed" and "power cut" in job["error"] and job["done"] == 1
    search = labelled.execute("SELECT id, state, error FROM grid_searches").fetchone()
    assert search[1] == "failed" and "power cut" in search[2]  # the store says so too
    jobs.resume_job(labelled, job_id=job_id, actor="test")
    jobs.run_job(ws, job_id=job_id)
    assert jobs.get_job(labelled, job_id)["state"] == "done"
    assert calls == [0.1, 1.0, 1.0, 3.0]  # the finished point is not cross-validated again
    points = grid_search.points(labelled, search_id=search[0], actor="test")
    assert sorted(p["params"]["C"] for p in points) == [0.1, 1.0, 3.0]  # one search, no duplicate point
    assert labelled.execute("SELECT COUNT(*), MIN(state) FROM grid_searches").fetchone() == (1, "done")

"""Labels -> training -> ingest -> classify -> export through the command line, on real sample photos."""

import json

import numpy as np
import pytest

from services.cli import main as cli
from services.models.head import Head, fit_head
from services.models.registry import active_version


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    summary = json.loads(out.out.strip().splitlines()[-1])
    return code, summary, out.err


def test_import_train_reports_five_fold_cross_validated_macro_f1(tmp_path, capsys, samples, backbone_onnx):
    data = tmp_path / "ws"
    (data / "models").mkdir(parents=True)
    (data / "models" / backbone_onnx.name).symlink_to(backbone_onnx)
    code, summary, _ = run(capsys, "--data-dir", str(data), "import-labels", "--folder", str(samples))
    assert code == 0 and summary["photos"] == 60 and summary["failed"] == []
    code, summary, err = run(capsys, "--data-dir", str(data), "import-labels", "--folder", str(samples))
    assert summary["labels_added_or_changed"] == 0  # importing again adds nothing
    code, summary, err = run(capsys, "--data-dir", str(data), "train", "--folds", "5")
    assert code == 0, err
    assert summary["folds"] == 5 and summary["examples"] == 60
    assert set(summary["per_class"]) == {"package", "product", "full_length", "half_length"}
    for metrics in summary["per_class"].values():
        assert {"precision", "recall", "f1", "support"} <= set(metrics)
    assert summary["macro_f1"] > 0.8, summary  # measured 0.94 on the 60 samples
    assert np.array(summary["confusion_matrix"]).sum() == 60
    assert "macro-F1" in err


def test_ingest_classify_export_through_the_cli(trained_ws, capsys, samples, tmp_path):
    photos = sorted(samples.glob("*/*.jpg"))[:12]
    manifest = tmp_path / "reviews.jsonl"
    manifest.write_text("".join(
        json.dumps({"review_id": f"r{i}", "review_type": "style" if "length" in p.parent.name else "product",
                    "image_uris": [str(p)], "user_id": "u1", "submitted_at": "2026-11-01"}) + "\n"
        for i, p in enumerate(photos)) + '{"review_id": "bad"}\n')
    d = str(trained_ws.root)
    code, summary, err = run(capsys, "--data-dir", d, "ingest", "--manifest", str(manifest))
    assert code == 0 and summary["images_added"] == 12 and summary["error_count"] == 1
    assert "line 13" in err
    code, summary, _ = run(capsys, "--data-dir", d, "classify")
    assert code == 0 and summary["state"] == "done" and summary["done"] == 12
    statuses = summary["result"]["images_by_status"]
    assert statuses.get("decided", 0) + statuses.get("queued", 0) == 12
    out = tmp_path / "decisions.manifest"
    code, summary, _ = run(capsys, "--data-dir", d, "export", "--format", "groundtruth", "--out", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    db = trained_ws.db()
    decided = db.execute("SELECT COUNT(DISTINCT image_id) FROM decisions").fetchone()[0]  # audited ones too
    assert decided >= statuses.get("decided", 0)
    assert code == 0 and summary["rows"] == len(lines) == decided
    for line in lines:
        meta = line["category-metadata"]
        assert line["source-ref"].endswith(".jpg")
        assert meta["type"] == "groundtruth/image-classification"
        assert meta["human-annotated"] == "no" and 0 < meta["confidence"] <= 1
        assert meta["class-name"] in ("package", "product", "full_length", "half_length")
    csv_out = tmp_path / "decisions.csv"
    code, summary, _ = run(capsys, "--data-dir", d, "export", "--format", "csv", "--out", str(csv_out))
    assert summary["rows"] == 12 and csv_out.read_text().count("\n") == 13


def test_train_without_labels_is_a_clear_error(ws, capsys):
    code, summary, err = run(capsys, "--data-dir", str(ws.root), "train")
    assert code == 1 and "no labelled photos" in summary["error"] and "import" in err


def test_groundtruth_labels_import_reports_bad_lines(trained_ws, capsys, samples, tmp_path):
    photo = next(samples.glob("product/*.jpg"))
    gt = tmp_path / "labels.manifest"
    gt.write_text(
        json.dumps({"source-ref": str(photo), "category": 1, "category-metadata": {"class-name": "product", "confidence": 0.9,
                    "type": "groundtruth/image-classification", "human-annotated": "yes"}}) + "\n"
        + "{broken\n" + json.dumps({"source-ref": str(photo), "x-metadata": {"class-name": "shoe"}}) + "\n")
    code, summary, _ = run(capsys, "--data-dir", str(trained_ws.root), "import-labels", "--groundtruth", str(gt))
    assert code == 0 and summary["lines"] == 3 and [e["line"] for e in summary["errors"]] == [2, 3]


def test_head_round_trips_through_its_file(tmp_path):
    rng = np.random.default_rng(0)
    y = np.array(["package", "product", "full_length", "half_length"] * 10)
    emb = rng.normal(size=(40, 16)) + (np.arange(40) % 4)[:, None]
    cues = rng.normal(size=(40, 8))
    head = fit_head(emb, y, cues)
    head.save(tmp_path / "h.npz")
    loaded = Head.load(tmp_path / "h.npz")
    cues_for = lambda idx: cues[idx]  # noqa: E731
    assert np.allclose(head.predict_proba(emb, cues_for), loaded.predict_proba(emb, cues_for))
    assert loaded.person is not None and loaded.classes == sorted(set(y))


def test_active_version_is_recorded(trained_ws):
    db = trained_ws.db()
    version = active_version(db)
    assert version["metrics"]["macro_f1"] > 0.8 and set(version["thresholds"]) == {"package", "product", "full_length", "half_length"}


def test_bad_head_file_is_a_model_error(tmp_path):
    from services.core.errors import ModelError

    (tmp_path / "bad.npz").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        Head.load(tmp_path / "bad.npz")


def test_work_runs_the_housekeeping_of_the_apps_worker(ws, db, capsys):
    db.execute("INSERT INTO reviews (id, review_type) VALUES ('r1', 'product')")
    db.execute("INSERT INTO images (id, review_id, uri, status, queue_reason) VALUES (1, 'r1', 'a.jpg', 'queued', 'audit')")
    for who in ("ann", "bob"):
        db.execute("INSERT INTO answers (image_id, inspector, label, kind, answered_at) "
                   "VALUES (1, ?, 'product', 'overlap', '2026-01-01T00:00:00Z')", [who])
    code, summary, _ = run(capsys, "--data-dir", str(ws.root), "work")
    assert code == 0 and summary == {"command": "work", "jobs_run": [], "queue_snapshot": True,
                                     "reliability_reestimated": True, "line_feed": None, "raw_frames_pruned": 0,
                                     "reuse_job": None, "retrain_job": None,
                                     "rescore_job": None, "label_search_job": None, "audit_watch": None}  # no active model to watch
    assert {r[0] for r in db.execute("SELECT inspector FROM inspector_reliability")} == {"ann", "bob"}
    assert db.execute("SELECT queued FROM queue_snapshots").fetchall() == [(1,)]
    code, summary, _ = run(capsys, "--data-dir", str(ws.root), "work")
    assert summary["reliability_reestimated"] is False and summary["queue_snapshot"] is False

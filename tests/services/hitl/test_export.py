"""Consolidated labels export as a Ground Truth manifest with a per-photo confidence, and read back."""

from __future__ import annotations

import json

import pytest

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.hitl import export
from services.models.training import import_groundtruth
from services.reviews.decisions import decide
from tests.conftest import jpeg_bytes


def _photo(db, tmp_path, image_id: int, *, status: str = "decided", reason: str | None = None) -> None:
    path = tmp_path / f"{image_id}.jpg"
    path.write_bytes(jpeg_bytes(color=(image_id * 20 % 256, 90, 30)))
    db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', '2026-01-01T00:00:00Z')",
               [f"r{image_id}"])
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status, queue_reason) VALUES (?, ?, ?, ?, ?, ?)",
               [image_id, f"r{image_id}", str(path), f"{image_id:064x}", status, reason])


@pytest.fixture
def seeded(db, tmp_path):
    db.execute("INSERT INTO model_versions (id, name, active) VALUES (1, 'm1', 1)")
    for i in range(1, 8):
        _photo(db, tmp_path, i, status="queued" if i == 7 else "decided", reason="adjudication" if i == 7 else None)
        db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence, probabilities) "
                   "VALUES (?, 1, 'product', ?, '{}')", [i, 0.5 + i / 20])
    decide(db, image_id=1, label="product", actor="model", source="auto")  # model: 0.55
    decide(db, image_id=2, label="package", actor="ann")  # ann, estimated 0.9 accurate
    db.execute("INSERT INTO inspector_reliability (inspector, method, accuracy) VALUES ('ann', 'dawid-skene', 0.9)")
    decide(db, image_id=3, label="full_length", actor="newcomer")  # nobody knows yet: the prior
    decide(db, image_id=4, label="product", actor="consensus")  # three inspectors, posterior 0.87
    db.execute("INSERT INTO consensus (image_id, label, confidence, agreement, n_answers, outcome) "
               "VALUES (4, 'product', 0.87, 0.667, 3, 'decided')")
    decide(db, image_id=5, label="half_length", actor="admin")  # adjudicated
    db.execute("INSERT INTO consensus (image_id, label, confidence, agreement, n_answers, outcome) "
               "VALUES (5, 'package', 0.5, 0.5, 2, 'adjudicated')")
    decide(db, image_id=6, label="package", actor="admin")  # a gold photo
    db.execute("INSERT INTO gold_items (image_id, label, created_by, created_at) VALUES (6, 'package', 'admin', 'x')")
    return db


def _lines(text: str) -> dict[str, dict]:
    return {json.loads(line)["source-ref"].rsplit("/", 1)[-1]: json.loads(line) for line in text.splitlines()}


def test_groundtruth_export_carries_each_labels_confidence(seeded):
    text, n = export.to_groundtruth(seeded, actor="cli:test", job_name="june")
    lines = _lines(text)
    assert n == 6 and "7.jpg" not in lines  # the photo waiting for adjudication has no label yet
    meta = {name: line["category-metadata"] for name, line in lines.items()}
    assert {name: m["confidence"] for name, m in meta.items()} == {
        "1.jpg": 0.55, "2.jpg": 0.9, "3.jpg": 0.8, "4.jpg": 0.87, "5.jpg": 1.0, "6.jpg": 1.0}
    assert meta["1.jpg"]["human-annotated"] == "no" and meta["4.jpg"]["human-annotated"] == "yes"
    assert lines["5.jpg"]["category"] == 3 and meta["5.jpg"]["class-name"] == "half_length"
    assert meta["2.jpg"]["job-name"] == "labeling-job/june"
    assert meta["2.jpg"]["type"] == "groundtruth/image-classification"

    human, n_human = export.to_groundtruth(seeded, actor="cli:test", human_only=True, min_confidence=0.85)
    assert n_human == 4 and set(_lines(human)) == {"2.jpg", "4.jpg", "5.jpg", "6.jpg"}
    with pytest.raises(InvalidInput, match="attribute"):
        export.to_groundtruth(seeded, actor="cli:test", attribute="bad name")


def test_the_exported_manifest_trains_here(seeded, tmp_path):
    text, _ = export.to_groundtruth(seeded, actor="cli:test", human_only=True)
    manifest = tmp_path / "labels.manifest"
    manifest.write_text(text)
    report = import_groundtruth(seeded, uri=str(manifest), store=ObjectStore(), actor="test")
    labels = dict(seeded.execute("SELECT uri, label FROM labels WHERE source = 'groundtruth'").fetchall())
    assert report["labels_added_or_changed"] == 5 and not report["failed"] and len(labels) == 5
    assert labels[str(tmp_path / "5.jpg")] == "half_length" and labels[str(tmp_path / "2.jpg")] == "package"


def test_csv_export_has_the_consolidation_columns(seeded):
    text, n = export.to_csv(seeded, actor="cli:test")
    header = text.splitlines()[0].split(",")
    assert n == 7
    assert {"consensus_confidence", "consensus_agreement", "inspector_accuracy", "gold_label"} <= set(header)


def test_csv_export_neutralises_cells_a_spreadsheet_would_run(db, tmp_path):
    import csv
    import io

    path = tmp_path / "x.jpg"
    path.write_bytes(jpeg_bytes())
    db.execute("INSERT INTO reviews (id, review_type, product, user_id, submitted_at) "
               "VALUES ('+1+1', 'product', '=HYPERLINK(\"http://evil.example\",\"x\")', '@SUM(A1)', '2026-01-01T00:00:00Z')")
    db.execute("INSERT INTO images (id, review_id, uri, sha256, status) VALUES (1, '+1+1', ?, ?, 'decided')",
               [str(path), "1" * 64])
    decide(db, image_id=1, label="product", actor="admin")
    text, n = export.to_csv(db, actor="cli:test")
    row = next(csv.DictReader(io.StringIO(text)))
    assert n == 1 and row["review_id"] == "'+1+1"
    assert row["product"].startswith("'=HYPERLINK(") and row["user_id"] == "'@SUM(A1)"
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values()), row

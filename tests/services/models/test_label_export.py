"""The console's labels exported as a folder per label and COCO and read back; import_groundtruth's attribute;
the convert, export-labels and import-coco-labels commands."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

from services.cli import main as cli
from services.core.config import Workspace
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.models.label_export import export_labels, import_coco_labels
from services.models.training import import_folder, import_groundtruth, training_examples
from services.reviews.decisions import decide


@pytest.fixture
def labelled(db, samples, tmp_path):
    """Labels imported from three real photos a class, one of them re-decided by an inspector, and an inspector's
    decision on one more photo that was never imported."""
    root = tmp_path / "imported"
    for folder in sorted(p for p in samples.iterdir() if p.is_dir()):
        (root / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg"))[:3]:
            shutil.copy(photo, root / folder.name / photo.name)
    store = ObjectStore()
    import_folder(db, root=str(root), store=store, actor="test")
    changed = sorted((root / "product").iterdir())[0]
    extra = tmp_path / "reviews" / "new.jpg"
    extra.parent.mkdir()
    shutil.copy(sorted((samples / "package").glob("*.jpg"))[5], extra)
    for image_id, (path, label) in enumerate([(changed, "package"), (extra, "package")], start=1):
        db.execute("INSERT INTO reviews (id, review_type, submitted_at) VALUES (?, 'product', '2026-01-01T00:00:00Z')",
                   [f"r{image_id}"])
        db.execute("INSERT INTO images (id, review_id, uri, sha256, status) VALUES (?, ?, ?, ?, 'queued')",
                   [image_id, f"r{image_id}", str(path), hashlib.sha256(path.read_bytes()).hexdigest()])
        decide(db, image_id=image_id, label=label, actor="ann")
    return db


def _labels(db) -> dict[str, str]:
    return {e["sha256"]: e["label"] for e in training_examples(db)}


def _fresh_db(tmp_path, name: str):
    return Workspace.open(tmp_path / name).db()


def test_console_labels_to_folders_import_back_the_same(labelled, tmp_path):
    expected = _labels(labelled)
    assert len(expected) == 13 and list(expected.values()).count("package") == 5  # 3 + re-decided + new
    out = export_labels(labelled, store=ObjectStore(), actor="cli:test", format="folders", output=str(tmp_path / "out"))
    assert out["images"] == 13 and out["errors"] == []
    assert out["labels"] == {"full_length": 3, "half_length": 3, "package": 5, "product": 2}
    fresh = _fresh_db(tmp_path, "ws2")
    report = import_folder(fresh, root=str(tmp_path / "out"), store=ObjectStore(), actor="test")
    assert report["photos"] == 13 and report["failed"] == []
    assert _labels(fresh) == expected
    assert labelled.execute("SELECT COUNT(*) FROM audit_log WHERE action = 'labels.export'").fetchone()[0] == 1


def test_console_labels_to_coco_import_back_the_same(labelled, tmp_path):
    expected = _labels(labelled)
    store = ObjectStore()
    out = export_labels(labelled, store=store, actor="cli:test", format="coco", output=str(tmp_path / "labels.json"),
                        images_root=str(tmp_path / "imported"))
    assert out["images"] == 13
    coco = json.loads((tmp_path / "labels.json").read_text())
    names = [i["file_name"] for i in coco["images"]]
    assert f"{tmp_path}/reviews/new.jpg" in names and "full_length/" in "".join(names)  # absolute, and relative
    fresh = _fresh_db(tmp_path, "ws2")
    report = import_coco_labels(fresh, uri=str(tmp_path / "labels.json"), store=store, actor="test",
                                images_root=str(tmp_path / "imported"))
    assert report["images"] == 13 and report["errors"] == [] and report["labels_added_or_changed"] == 13
    assert _labels(fresh) == expected
    assert {r["source"] for r in fresh.query("SELECT source FROM labels")} == {"coco"}

    coco["categories"].append({"id": 9, "name": "shoe"})
    coco["annotations"][0]["category_id"] = 9
    coco["annotations"][1]["bbox"] = [0, 0, 1, 1]
    (tmp_path / "odd.json").write_text(json.dumps(coco))
    report = import_coco_labels(_fresh_db(tmp_path, "ws3"), uri=str(tmp_path / "odd.json"), store=store,
                                actor="test", images_root=str(tmp_path / "imported"))
    assert report["images"] == 11
    assert sorted(e["reason"].split(" ")[0] for e in report["errors"]) == ["annotation", "class"]
    (tmp_path / "not.json").write_text("{oops")
    with pytest.raises(InvalidInput, match="not a JSON file"):
        import_coco_labels(fresh, uri=str(tmp_path / "not.json"), store=store, actor="test")


def test_import_groundtruth_names_the_attribute_it_expected(db, samples, tmp_path):
    photo = sorted((samples / "product").glob("*.jpg"))[0]
    other = sorted((samples / "package").glob("*.jpg"))[0]
    meta = {"type": "groundtruth/image-classification", "confidence": 1.0}
    lines = [
        {"source-ref": str(photo), "category": 1, "category-metadata": {"class-name": "product", **meta}},
        {"source-ref": str(other), "category": 0, "category-metadata": {"class-name": "shoe", **meta}},
        {"source-ref": str(other), "label": 0, "label-metadata": {"class-name": "package", **meta}},
        "{not json",
    ]
    (tmp_path / "m.manifest").write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines))
    strict = import_groundtruth(db, uri=str(tmp_path / "m.manifest"), store=ObjectStore(), actor="test",
                                attribute="category")
    assert strict["labels_added_or_changed"] == 1 and strict["lines"] == 4
    assert [e["line"] for e in strict["errors"]] == [2, 3, 4]
    assert strict["errors"][1]["reason"] == "no 'category' attribute; found source-ref, label, label-metadata"
    assert strict["errors"][0]["reason"].startswith("class 'shoe' is not one of package")
    detected = import_groundtruth(db, uri=str(tmp_path / "m.manifest"), store=ObjectStore(), actor="test")
    assert detected["labels_added_or_changed"] == 1 and [e["line"] for e in detected["errors"]] == [2, 4]  # line 3 loads


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1]), out.err


def test_the_commands(ws, samples, tmp_path, capsys):
    photos = [sorted((samples / c).glob("*.jpg"))[0] for c in ("package", "product")]
    manifest = tmp_path / "gt.manifest"
    manifest.write_text("\n".join([
        json.dumps({"source-ref": str(photos[0]), "category": 0, "category-metadata": {"class-name": "package"}}),
        json.dumps({"source-ref": str(photos[1]), "category": 1, "category-metadata": {"class-name": "product"}}),
        json.dumps({"source-ref": str(photos[1]), "label": 1, "label-metadata": {"class-name": "product"}})]))
    d = str(ws.root)
    code, out, err = run(capsys, "--data-dir", d, "convert", "--from", "groundtruth", "--to", "folders",
                         "--input", str(manifest), "--output", str(tmp_path / "tree"), "--attribute", "category")
    assert code == 0 and out["images"] == 2 and out["error_count"] == 1
    assert "skipped line 3: no 'category' attribute; found source-ref, label, label-metadata" in err
    code, out, _ = run(capsys, "--data-dir", d, "convert", "--from", "folders", "--to", "coco",
                       "--input", str(tmp_path / "tree"), "--output", str(tmp_path / "c.json"))
    assert code == 0 and out["labels"] == {"package": 1, "product": 1}
    code, out, _ = run(capsys, "--data-dir", d, "import-coco-labels", "--coco", str(tmp_path / "c.json"),
                       "--images", str(tmp_path / "tree"))
    assert code == 0 and out["labels_added_or_changed"] == 2
    code, out, _ = run(capsys, "--data-dir", d, "export-labels", "--format", "folders", "--output", str(tmp_path / "x"))
    assert code == 0 and out["images"] == 2 and sorted(p.parent.name for p in (tmp_path / "x").glob("*/*")) == \
        ["package", "product"]
    code, out, err = run(capsys, "--data-dir", d, "export-labels", "--format", "folders", "--output", str(tmp_path / "x"))
    assert code == 1 and "already holds files" in out["error"]
    code, out, _ = run(capsys, "--data-dir", d, "convert", "--from", "coco", "--to", "coco",
                       "--input", str(tmp_path / "c.json"), "--output", str(tmp_path / "d.json"))
    assert code == 1 and "cannot convert coco to coco" in out["error"]

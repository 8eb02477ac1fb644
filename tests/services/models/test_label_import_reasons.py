"""Label imports that use nothing say why, line by line, and a label map reads other label names as classes.

The manifests are AWS's own documented Ground Truth examples (tests/data/formats, see its README): their labels
(football, dog) are not review-photo classes, and a bounding-box job's output is not a classification.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.cli import main as cli
from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.groundtruth import NothingConverted
from services.models.label_export import import_coco_labels
from services.models.training import import_groundtruth, training_examples

FORMATS = Path(__file__).resolve().parents[2] / "data" / "formats"


def local_copy(src: Path, dst: Path, photos: list[Path]) -> Path:
    """``src`` with each line's source-ref pointing at a local photo (the documented s3:// examples are not
    readable here); everything else on the line as AWS wrote it."""
    lines = [json.loads(x) for x in src.read_text().splitlines() if x.strip()]
    for line, photo in zip(lines, photos):
        line["source-ref"] = str(photo)
    dst.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return dst


@pytest.fixture
def classification(samples, tmp_path):
    photos = [sorted((samples / c).glob("*.jpg"))[0] for c in ("product", "package")]
    return local_copy(FORMATS / "groundtruth-classification.manifest", tmp_path / "gt.manifest", photos)


def test_labels_outside_the_classes_are_refused_line_by_line_with_how_to_map_them(db, classification):
    with pytest.raises(NothingConverted) as caught:
        import_groundtruth(db, uri=str(classification), store=ObjectStore(), actor="test")
    assert [(e["line"], e["reason"].split(" (")[0]) for e in caught.value.errors] == [
        (1, "class 'football' is not one of package, product, full_length, half_length"),
        (2, "class 'dog' is not one of package, product, full_length, half_length")]
    assert "--map football=product" in caught.value.errors[0]["reason"]
    assert "line 1: class 'football'" in str(caught.value) and "line 2: class 'dog'" in str(caught.value)
    assert training_examples(db) == []


def test_a_label_map_reads_them_as_classes(db, classification):
    out = import_groundtruth(db, uri=str(classification), store=ObjectStore(), actor="test",
                             label_map={"football": "product", "dog": "package"})
    assert out["labels_added_or_changed"] == 2 and out["errors"] == []
    assert sorted(e["label"] for e in training_examples(db)) == ["package", "product"]
    with pytest.raises(InvalidInput, match="can only map to"):
        import_groundtruth(db, uri=str(classification), store=ObjectStore(), actor="test", label_map={"dog": "cat"})


def test_a_box_manifest_given_as_classification_says_so(db, samples, tmp_path):
    photo = sorted((samples / "package").glob("*.jpg"))[0]
    boxes = local_copy(FORMATS / "groundtruth-boxes-adjusted.manifest", tmp_path / "b.manifest", [photo])
    with pytest.raises(NothingConverted) as caught:
        import_groundtruth(db, uri=str(boxes), store=ObjectStore(), actor="test")
    assert caught.value.errors and all(e["reason"] for e in caught.value.errors)
    assert caught.value.errors[0]["line"] == 1


def test_coco_labels_outside_the_classes_are_refused_by_image_and_mapped_on_request(db, samples, tmp_path):
    photo = sorted((samples / "product").glob("*.jpg"))[0]
    coco = tmp_path / "c.json"
    coco.write_text(json.dumps({"images": [{"id": 0, "file_name": str(photo)}],
                                "categories": [{"id": 3, "name": "cat"}],
                                "annotations": [{"id": 1, "image_id": 0, "category_id": 3}]}))
    with pytest.raises(NothingConverted) as caught:
        import_coco_labels(db, uri=str(coco), store=ObjectStore(), actor="test")
    assert caught.value.errors[0]["image_id"] == 0 and "class 'cat'" in caught.value.errors[0]["reason"]
    out = import_coco_labels(db, uri=str(coco), store=ObjectStore(), actor="test", label_map={"cat": "product"})
    assert out["images"] == 1


def test_the_commands_print_every_refusal_and_exit_1_then_import_with_map(ws, classification, capsys):
    d = str(ws.root)
    code = cli.main(["--data-dir", d, "import-labels", "--groundtruth", str(classification)])
    captured = capsys.readouterr()
    assert code == 1
    assert "skipped line 1: class 'football'" in captured.err and "skipped line 2: class 'dog'" in captured.err
    code = cli.main(["--data-dir", d, "import-labels", "--groundtruth", str(classification),
                     "--map", "football=product", "--map", "dog=package"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and out["labels_added_or_changed"] == 2

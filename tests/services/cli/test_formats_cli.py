"""The format commands on real files (tests/data/formats): a conversion that converts nothing exits 1 with every
refusal and its line or image, and writes nothing; a partial one exits 0 and names what it skipped and why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.cli import main as cli

REAL = Path(__file__).resolve().parents[2] / "data" / "formats"


@pytest.fixture
def data(tmp_path) -> Path:
    """The real files, copied where the console may read (the tests' storage root)."""
    return Path(shutil.copytree(REAL, tmp_path / "formats"))


def test_convert_that_converts_nothing_exits_1_with_its_reasons(ws, data, tmp_path, capsys):
    output = tmp_path / "out.manifest"
    code = cli.main(["--data-dir", str(ws.root), "convert", "--from", "coco", "--to", "groundtruth-boxes",
                     "--input", str(data / "coco-val2017-crowd.json"), "--output", str(output),
                     "--images", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1 and not output.exists()
    assert f"skipped image 255917: image not found: {tmp_path}/000000255917.jpg" in captured.err
    assert f"skipped image 139: image not found: {tmp_path}/000000000139.jpg" in captured.err
    assert "nothing converted" in json.loads(captured.out.strip().splitlines()[-1])["error"]


def test_convert_names_the_attributes_and_the_lines_it_skipped(ws, data, tmp_path, capsys):
    code = cli.main(["--data-dir", str(ws.root), "convert", "--from", "groundtruth-boxes", "--to", "coco",
                     "--input", str(data / "groundtruth-boxes-adjusted.manifest"), "--output", str(tmp_path / "c.json"),
                     "--attribute", "adjusted-bounding-box"])
    captured = capsys.readouterr()
    assert code == 0
    out = json.loads(captured.out.strip().splitlines()[-1])
    assert out["images"] == 1 and out["attributes"] == {"bounding-box-attribute-name": 2, "adjusted-bounding-box": 1}
    assert "skipped line 1: no 'adjusted-bounding-box' attribute" in captured.err
    assert "note: bounding-box attributes found (lines): bounding-box-attribute-name (2), adjusted-bounding-box (1)" \
        in captured.err
    assert "note: 1 images not checked (their lines give image_size, so they converted): " \
           "s3://AWSDOC-EXAMPLE-BUCKET/example_image_adjusted.png is outside the storage roots" in captured.err


def test_deepfashion2_with_no_usable_annotation_exits_1(ws, data, tmp_path, capsys):
    code = cli.main(["--data-dir", str(ws.root), "deepfashion2", "--annotations", str(data / "deepfashion2" / "annos"),
                     "--images", str(tmp_path), "--coco", str(tmp_path / "c.json"), "--manifest", str(tmp_path / "m")])
    captured = capsys.readouterr()
    assert code == 1 and not (tmp_path / "c.json").exists() and not (tmp_path / "m").exists()
    assert "skipped file 000001.json:" in captured.err and str(tmp_path / "000001.jpg") in captured.err


def test_export_labels_that_exports_nothing_exits_1_with_its_reasons(ws, samples, tmp_path, capsys):
    from services.core.storage import ObjectStore
    from services.models.training import import_folder

    root = tmp_path / "imported"
    (root / "product").mkdir(parents=True)
    photo = root / "product" / "one.jpg"
    shutil.copy(sorted((samples / "product").glob("*.jpg"))[0], photo)
    db = ws.db()
    import_folder(db, root=str(root), store=ObjectStore(), actor="test")
    db.close()
    photo.unlink()  # the labelled photo is gone: nothing can be exported
    code = cli.main(["--data-dir", str(ws.root), "export-labels", "--format", "folders", "--output", str(tmp_path / "x")])
    captured = capsys.readouterr()
    assert code == 1
    assert f"skipped {photo}: cannot copy {photo}" in captured.err
    assert "nothing converted" in json.loads(captured.out.strip().splitlines()[-1])["error"]

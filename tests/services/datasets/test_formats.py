"""DeepFashion2 to COCO and a Ground Truth bounding-box manifest (with merges), and Custom Labels' manifest rules."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.formats import check_custom_labels, deepfashion2, parse_merge

ITEM = {"segmentation": [[10, 10, 50, 10, 50, 60]], "landmarks": [12, 14, 2, 30, 16, 1], "scale": 2, "occlusion": 1,
        "zoom_in": 1, "viewpoint": 2, "style": 1}


@pytest.fixture
def df2(tmp_path):
    ann, img = tmp_path / "annos", tmp_path / "image"
    ann.mkdir()
    img.mkdir()
    Image.new("RGB", (200, 100)).save(img / "000001.jpg")
    Image.new("RGB", (80, 120)).save(img / "000002.jpg")
    (ann / "000001.json").write_text(json.dumps({"source": "user", "pair_id": 1,
        "item1": {**ITEM, "category_name": "sling dress", "category_id": 13, "bounding_box": [10, 20, 90, 80]},
        "item2": {**ITEM, "category_name": "short sleeve top", "category_id": 1, "bounding_box": [-5, 0, 250, 60]}}))
    (ann / "000002.json").write_text(json.dumps({"source": "shop", "pair_id": 1,
        "item1": {**ITEM, "category_name": "sling", "category_id": 6, "bounding_box": [0, 0, 40, 50]}}))
    (ann / "000003.json").write_text("{not json")
    (ann / "000004.json").write_text(json.dumps({"source": "user", "item1": {"category_name": "vest", "bounding_box": [0, 0, 1, 1]}}))
    return ann, img


def test_deepfashion2_to_coco_and_groundtruth_with_a_merge_map(df2):
    ann, img = df2
    out = deepfashion2(ObjectStore(), annotations=str(ann), images=str(img),
                       merge=parse_merge(["sling=vest", "sling_dress=vest_dress"]))
    assert (out["images"], out["boxes"]) == (2, 3)
    assert out["categories"] == ["short_sleeve_top", "vest", "vest_dress"]  # sling and sling dress merged
    assert sorted(e["file"] for e in out["errors"]) == ["000003.json", "000004.json"]  # bad JSON; missing image
    coco = out["coco"]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    first = [a for a in coco["annotations"] if a["image_id"] == 1]
    assert [names[a["category_id"]] for a in first] == ["vest_dress", "short_sleeve_top"]
    assert first[0]["bbox"] == [10.0, 20.0, 80.0, 60.0] and first[1]["bbox"] == [0.0, 0.0, 200.0, 60.0]  # clamped
    assert first[0]["attributes"]["occlusion"] == 1 and first[0]["num_keypoints"] == 2
    assert coco["images"][0] == {"id": 1, "file_name": "000001.jpg", "width": 200, "height": 100, "source": "user", "pair_id": 1}
    lines = [json.loads(x) for x in out["manifest"].splitlines()]
    box = lines[0]["bounding-box"]
    assert box["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    assert box["annotations"][0] == {"class_id": 0, "left": 10, "top": 20, "width": 80, "height": 60}
    meta = lines[0]["bounding-box-metadata"]
    assert meta["type"] == "groundtruth/object-detection" and meta["class-map"]["0"] == "vest_dress"
    assert check_custom_labels(out["manifest"])["problems"] == [
        {"line": 1, "rule": "s3", "detail": f"{img}/000001.jpg is not in S3"},
        {"line": 2, "rule": "s3", "detail": f"{img}/000002.jpg is not in S3"}]
    with pytest.raises(InvalidInput, match="from=to"):
        parse_merge(["sling"])


def _cls(ref: str, name: str) -> str:
    return json.dumps({"source-ref": ref, "category": 0, "category-metadata": {"class-name": name,
                       "type": "groundtruth/image-classification"}})


def test_custom_labels_rules_name_the_lines_that_break_them():
    good = "\n".join([_cls("s3://b/1.jpg", "product"), _cls("s3://b/2.jpg", "package")])
    assert check_custom_labels(good) == {"ok": True, "lines": 2, "labels": ["package", "product"], "problems": []}
    boxes = json.dumps({"source-ref": "s3://b/3.jpg", "bb": {"annotations": [{"class_id": 0}] * 51},
                        "bb-metadata": {"class-map": {"0": "product"}}})
    bad = "\n".join([_cls("s3://b/1.jpg", "product"), _cls("s3://other/2.jpg", "product"), "{oops",
                     json.dumps({"source-ref": "s3://b/4.jpg", "label": 1}), boxes])
    got = check_custom_labels(bad)
    assert not got["ok"]
    assert [(p["line"], p["rule"]) for p in got["problems"]] == [(2, "bucket"), (3, "json"), (4, "attribute"), (5, "boxes"),
                                                                (None, "labels")]  # only "product" is left
    one = check_custom_labels(_cls("s3://b/1.jpg", "product"))
    assert one["problems"] == [{"line": None, "rule": "labels", "detail": "1 labels (needs 2 to 250)"}]


def test_the_commands_write_both_files_and_report_problems(ws, df2, tmp_path, capsys):
    from services.cli import main as cli

    ann, img = df2
    assert cli.main(["--data-dir", str(ws.root), "deepfashion2", "--annotations", str(ann), "--images", str(img),
                     "--coco", str(tmp_path / "coco.json"), "--manifest", str(tmp_path / "gt.manifest"),
                     "--merge", "sling=vest"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["images"], out["boxes"], out["error_count"]) == (2, 3, 2)
    assert json.loads((tmp_path / "coco.json").read_text())["categories"]
    assert cli.main(["--data-dir", str(ws.root), "check-manifest", "--manifest", str(tmp_path / "gt.manifest")]) == 0
    check = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not check["ok"] and {p["rule"] for p in check["problems"]} == {"s3"}

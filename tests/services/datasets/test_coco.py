"""Ground Truth bounding-box manifests <-> COCO detection: round trips, DeepFashion2 through COCO, bad lines by line."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.coco import coco_to_groundtruth_boxes, groundtruth_boxes_to_coco
from services.datasets.convert import convert
from services.datasets.formats import deepfashion2
from services.datasets.groundtruth import relative, resolve
from tests.conftest import jpeg_bytes

CLASS_MAP = {"0": "tray", "1": "lid", "2": "label"}


def _line(ref: str, boxes: list[tuple[int, int, int, int, int]], *, size=(200, 100), attr="bounding-box",
          confidences=None) -> dict:
    confidences = confidences or [0.9] * len(boxes)
    return {"source-ref": ref,
            attr: {"image_size": [{"width": size[0], "height": size[1], "depth": 3}],
                   "annotations": [{"class_id": c, "left": x, "top": y, "width": w, "height": h} for c, x, y, w, h in boxes]},
            f"{attr}-metadata": {"objects": [{"confidence": c} for c in confidences], "class-map": CLASS_MAP,
                                 "type": "groundtruth/object-detection", "human-annotated": "yes",
                                 "creation-date": "2026-01-02T03:04:05", "job-name": "labeling-job/trays"}}


def _manifest(*lines) -> str:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)


@pytest.fixture
def photos(tmp_path):
    """Three real JPEGs of known sizes under tmp/images/ (one in a sub-folder)."""
    root = tmp_path / "images"
    (root / "line2").mkdir(parents=True)
    (root / "a.jpg").write_bytes(jpeg_bytes((200, 100)))
    (root / "b.jpg").write_bytes(jpeg_bytes((200, 100), color=(10, 200, 10)))
    (root / "line2" / "c.jpg").write_bytes(jpeg_bytes((120, 160), color=(10, 10, 200)))
    return root


def _good_lines(root) -> list[dict]:
    return [_line(f"{root}/a.jpg", [(0, 10, 20, 30, 40), (1, 100, 0, 100, 100)], confidences=[0.95, 0.8]),
            _line(f"{root}/b.jpg", []),
            _line(f"{root}/line2/c.jpg", [(2, 0, 0, 120, 160)], size=(120, 160))]


def test_groundtruth_boxes_to_coco_and_back_is_the_same_manifest(photos):
    lines = _good_lines(photos)
    out = groundtruth_boxes_to_coco(_manifest(*lines), images_root=str(photos), store=ObjectStore())
    assert out["errors"] == [] and (out["images"], out["boxes"]) == (3, 3)
    coco = out["coco"]
    assert coco["categories"] == [{"id": 1, "name": "tray"}, {"id": 2, "name": "lid"}, {"id": 3, "name": "label"}]
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg", "line2/c.jpg"]  # relative to the root
    assert coco["images"][2]["width"] == 120 and coco["images"][2]["height"] == 160
    first = coco["annotations"][0]
    assert first["bbox"] == [10, 20, 30, 40] and first["category_id"] == 1 and first["area"] == 1200
    assert first["attributes"] == {"confidence": 0.95}
    back = coco_to_groundtruth_boxes(json.loads(json.dumps(coco)), images_root=str(photos), store=ObjectStore())
    assert back["errors"] == [] and (back["lines"], back["boxes"]) == (3, 3)
    assert [json.loads(x) for x in back["manifest"].splitlines()] == lines  # identical in content

    # without an images root, file_name is the absolute URI, and the way back needs no root
    absolute = groundtruth_boxes_to_coco(_manifest(*lines))["coco"]
    assert absolute["images"][0]["file_name"] == f"{photos}/a.jpg"
    assert [json.loads(x) for x in coco_to_groundtruth_boxes(absolute)["manifest"].splitlines()] == lines


def test_coco_to_groundtruth_boxes_and_back_is_the_same_coco(photos):
    coco = {"images": [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100},
                       {"id": 9, "file_name": "line2/c.jpg", "width": 120, "height": 160}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10.0, 20.0, 30.0, 40.0], "area": 1200.0, "iscrowd": 0},
                            {"id": 2, "image_id": 9, "category_id": 5, "bbox": [0, 0, 120, 160], "area": 19200, "iscrowd": 0},
                            {"id": 3, "image_id": 7, "category_id": 5, "bbox": [150.4, 50.2, 49.6, 49.8], "area": 1, "iscrowd": 0}],
            "categories": [{"id": 3, "name": "lid"}, {"id": 5, "name": "tray"}]}
    gt = coco_to_groundtruth_boxes(coco, images_root=str(photos), attribute="trays", job_name="imported")
    assert gt["errors"] == [] and (gt["lines"], gt["boxes"]) == (2, 3)
    line = json.loads(gt["manifest"].splitlines()[0])
    assert line["source-ref"] == f"{photos}/a.jpg"
    assert line["trays"]["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    assert line["trays"]["annotations"][1] == {"class_id": 4, "left": 150, "top": 50, "width": 50, "height": 50}
    meta = line["trays-metadata"]
    assert meta["class-map"] == {"2": "lid", "4": "tray"} and "objects" not in meta  # no confidence invented
    assert line["coco-image"] == {"id": 7}
    assert meta["type"] == "groundtruth/object-detection" and meta["job-name"] == "labeling-job/imported"
    back = groundtruth_boxes_to_coco(gt["manifest"], attribute="trays", images_root=str(photos))["coco"]
    assert back["categories"] == coco["categories"]
    assert [{k: i[k] for k in ("id", "file_name", "width", "height")} for i in back["images"]] == \
        [{k: i[k] for k in ("id", "file_name", "width", "height")} for i in coco["images"]]
    ids = {i["id"]: i["file_name"] for i in back["images"]}
    got = sorted((ids[a["image_id"]], a["category_id"], a["bbox"]) for a in back["annotations"])
    assert got == [("a.jpg", 3, [10, 20, 30, 40]), ("a.jpg", 5, [150, 50, 50, 50]), ("line2/c.jpg", 5, [0, 0, 120, 160])]


def test_bad_lines_are_reported_by_line_and_the_rest_convert(photos):
    good = _good_lines(photos)
    text = _manifest(
        good[0],
        "{not json",
        {"source-ref": f"{photos}/b.jpg", "label": 1, "label-metadata": {"class-name": "lid"}},  # a classification line
        _line(f"{photos}/missing.jpg", [(0, 1, 1, 5, 5)]),
        _line(f"{photos}/b.jpg", [(0, 190, 10, 20, 20)]),  # runs past the right edge
        _line(f"{photos}/b.jpg", [(7, 0, 0, 5, 5)]),  # class_id not in the class-map
        {**_line(f"{photos}/line2/c.jpg", []), "bounding-box": {"annotations": [{"class_id": 0, "left": 1}]}},
        good[2], good[0])
    out = groundtruth_boxes_to_coco(text, attribute="bounding-box", images_root=str(photos), store=ObjectStore())
    assert (out["images"], out["boxes"]) == (2, 3)
    assert [i["file_name"] for i in out["coco"]["images"]] == ["a.jpg", "line2/c.jpg"]
    reasons = {e["line"]: e["reason"] for e in out["errors"]}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 9]
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "no 'bounding-box' attribute; found source-ref, label, label-metadata"
    assert reasons[4] == f"image not found: {photos}/missing.jpg"
    assert reasons[5] == "box 1 [190, 10, 20, 20] lies outside the 200x100 image"
    assert reasons[6] == "box 1: class_id 7 is not in the class-map (0, 1, 2)"
    assert reasons[7] == "box 1 needs class_id, left, top, width, height; found class_id, left"
    assert reasons[9] == f"{photos}/a.jpg is already on line 1"

    detected = groundtruth_boxes_to_coco(text)  # no attribute given: the line says what was looked for
    assert {e["line"]: e["reason"] for e in detected["errors"]}[3] == (
        "no bounding-box attribute (a key holding image_size and annotations, with its -metadata twin); "
        "found source-ref, label, label-metadata")


def test_bad_coco_is_reported_by_image_annotation_and_category(photos):
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                       {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
                       {"id": 3, "file_name": "gone.jpg", "width": 200, "height": 100},
                       {"id": 4, "file_name": "line2/c.jpg"}],
            "annotations": [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                            {"id": 11, "image_id": 2, "category_id": 1, "bbox": [0, 90, 10, 20]},  # below the bottom
                            {"id": 12, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},
                            {"id": 13, "image_id": 1, "category_id": 0, "bbox": [0, 0, 1, 1]}],
            "categories": [{"id": 1, "name": "tray"}, {"id": 0, "name": "background"}]}
    out = coco_to_groundtruth_boxes(coco, images_root=str(photos), store=ObjectStore())
    assert out["lines"] == 0  # image 1 has a box of an invalid category, 2 a box outside, 3 is missing, 4 no size
    got = [(next(k for k in e if k != "reason"), next(v for k, v in e.items() if k != "reason")) for e in out["errors"]]
    assert set(got) >= {("category_id", 0), ("image_id", 4), ("annotation_id", 11), ("annotation_id", 12),
                        ("annotation_id", 13), ("image_id", 1), ("image_id", 2), ("image_id", 3)}
    reasons = [e["reason"] for e in out["errors"]]
    assert "annotation 11 bbox [0, 90, 10, 20] lies outside the 200x100 image" in reasons
    assert f"image not found: {photos}/gone.jpg" in reasons
    with pytest.raises(InvalidInput, match="images, annotations and categories"):
        coco_to_groundtruth_boxes({"images": []})
    relative = coco_to_groundtruth_boxes({"images": coco["images"][:1], "annotations": [], "categories": []})
    assert relative["errors"][0]["reason"].startswith("file_name 'a.jpg' is relative")


def test_deepfashion2_through_coco_gives_the_direct_manifest(tmp_path):
    ann, img = tmp_path / "annos", tmp_path / "image"
    ann.mkdir()
    img.mkdir()
    Image.new("RGB", (200, 100)).save(img / "000001.jpg")
    Image.new("RGB", (80, 120)).save(img / "000002.jpg")
    (ann / "000001.json").write_text(json.dumps({"source": "user", "pair_id": 1,
        "item1": {"category_name": "sling dress", "bounding_box": [10.4, 20.6, 90.2, 80], "scale": 2},
        "item2": {"category_name": "short sleeve top", "bounding_box": [-5, 0, 250, 60]}}))
    (ann / "000002.json").write_text(json.dumps({"source": "shop", "pair_id": 1,
        "item1": {"category_name": "sling", "bounding_box": [0, 0, 40, 50]}}))
    direct = deepfashion2(ObjectStore(), annotations=str(ann), images=str(img))
    via = coco_to_groundtruth_boxes(direct["coco"], images_root=str(img), job_name="deepfashion2")
    assert via["errors"] == []

    direct_lines = [json.loads(x) for x in direct["manifest"].splitlines()]
    via_lines = [json.loads(x) for x in via["manifest"].splitlines()]
    assert len(via_lines) == len(direct_lines) == 2
    for d, v in zip(direct_lines, via_lines):  # field by field
        assert v["source-ref"] == d["source-ref"]
        assert v["bounding-box"] == d["bounding-box"]  # image_size and every box
        dm, vm = d["bounding-box-metadata"], v["bounding-box-metadata"]
        assert {k: vm[k] for k in ("class-map", "type", "human-annotated", "job-name")} == \
            {k: dm[k] for k in ("class-map", "type", "human-annotated", "job-name")}
        assert "objects" not in vm  # COCO holds no confidence for these boxes, and none is invented on the way
    # what COCO knew of the image and Ground Truth boxes cannot hold rides along in coco-image
    assert [v["coco-image"] for v in via_lines] == [{"id": 1, "source": "user", "pair_id": 1},
                                                    {"id": 2, "source": "shop", "pair_id": 1}]


def test_a_round_trip_through_real_s3(s3_bucket, photos):
    store, bucket = s3_bucket
    for name in ("a.jpg", "b.jpg", "line2/c.jpg"):
        store.write(f"s3://{bucket}/images/{name}", (photos / name).read_bytes())
    lines = _good_lines(f"s3://{bucket}/images")
    store.write(f"s3://{bucket}/gt/boxes.manifest", _manifest(*lines, _line(f"s3://{bucket}/images/nope.jpg", [])).encode())
    out = convert(store, source="groundtruth-boxes", target="coco", input=f"s3://{bucket}/gt/boxes.manifest",
                  output=f"s3://{bucket}/coco/instances.json", images=f"s3://{bucket}/images")
    assert (out["images"], out["boxes"]) == (3, 3)
    assert out["errors"][0]["line"] == 4 and "not found" in out["errors"][0]["reason"]
    coco = json.loads(store.read(f"s3://{bucket}/coco/instances.json"))
    assert coco["images"][2]["file_name"] == "line2/c.jpg"
    back = convert(store, source="coco", target="groundtruth-boxes", input=f"s3://{bucket}/coco/instances.json",
                   output=f"s3://{bucket}/gt/again.manifest", images=f"s3://{bucket}/images")
    assert back["errors"] == [] and back["lines"] == 3
    assert [json.loads(x) for x in store.read(f"s3://{bucket}/gt/again.manifest").decode().splitlines()] == lines
    with pytest.raises(InvalidInput, match="cannot convert groundtruth-boxes to folders"):
        convert(store, source="groundtruth-boxes", target="folders", input="x", output="y")


def test_file_names_relative_to_the_images_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert relative("imgs/a/b.jpg", "./imgs/") == "a/b.jpg" and relative("other/b.jpg", "imgs") == f"{tmp_path}/other/b.jpg"
    assert relative("s3://b/imgs/x/y.jpg", "s3://b/imgs") == "x/y.jpg" and relative("s3://b/y.jpg", "s3://b/imgs") == "s3://b/y.jpg"
    assert resolve("x/y.jpg", "s3://b/imgs/") == "s3://b/imgs/x/y.jpg" and resolve("/abs/y.jpg", None) == "/abs/y.jpg"
    with pytest.raises(InvalidInput, match="give the images root"):
        resolve("y.jpg", None)


def test_lines_with_their_own_class_maps_come_back_with_their_own_ids(photos):
    """Two jobs' lines: tray is class 0 on one and class 1 on the other, and one line offers fewer classes."""
    first = _line(f"{photos}/a.jpg", [(0, 10, 20, 30, 40)])
    first["bounding-box-metadata"]["class-map"] = {"0": "tray"}
    second = _line(f"{photos}/b.jpg", [(1, 0, 0, 10, 10), (0, 20, 20, 10, 10)])
    second["bounding-box-metadata"]["class-map"] = {"0": "lid", "1": "tray"}
    out = groundtruth_boxes_to_coco(_manifest(first, second))
    assert out["errors"] == [] and out["coco"]["categories"] == [{"id": 1, "name": "tray"}, {"id": 2, "name": "lid"}]
    back = [json.loads(x) for x in coco_to_groundtruth_boxes(out["coco"])["manifest"].splitlines()]
    for got, want in zip(back, [first, second], strict=True):
        assert got["bounding-box"]["annotations"] == want["bounding-box"]["annotations"]
        assert got["bounding-box-metadata"] == want["bounding-box-metadata"]

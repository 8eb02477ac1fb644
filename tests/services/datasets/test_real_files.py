"""Issue 21: dataset formats on real files from public repositories (tests/data/formats/README.md names each
file's origin, commit and licence). Round trips are compared field by field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from services.core.storage import ObjectStore
from services.datasets.coco import coco_to_groundtruth_boxes, groundtruth_boxes_to_coco
from services.datasets.convert import convert
from services.datasets.formats import check_custom_labels, deepfashion2
from services.datasets.groundtruth import NothingConverted, whole
from services.datasets.layouts import read_groundtruth_classes

DATA = Path(__file__).resolve().parents[2] / "data" / "formats"
AWS_BUCKET = "s3://AWSDOC-EXAMPLE-BUCKET/"
VAL2017 = "s3://images.cocodataset.org/val2017"


def _lines(text: str) -> list[dict]:
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def _same_line(got: dict, want: dict) -> None:
    """Field by field: every key of the line, and every key of each -metadata object."""
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        if isinstance(value, dict) and key.endswith("-metadata"):
            assert sorted(got[key]) == sorted(value), key
            for k, v in value.items():
                assert got[key][k] == v, f"{key}.{k}"
        else:
            assert got[key] == value, key


@pytest.fixture
def no_aws(monkeypatch):
    """No AWS credentials anywhere, as on a laptop without a profile."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")


# 1. several label attributes on one line -----------------------------------------------------------------------

def test_a_job_and_its_adjustment_are_listed_and_one_is_chosen_by_name():
    text = (DATA / "groundtruth-boxes-adjusted.manifest").read_text()
    original = _lines(text)

    undecided = groundtruth_boxes_to_coco(text)
    assert undecided["attributes"] == {"bounding-box-attribute-name": 2, "adjusted-bounding-box": 1}
    assert undecided["images"] == 1  # line 1 holds one attribute; line 2 is not reduced to its first silently
    assert undecided["errors"] == [{"line": 2, "reason": "2 bounding-box attributes on this line "
                                    "(bounding-box-attribute-name, adjusted-bounding-box): choose one with --attribute"}]

    adjusted = groundtruth_boxes_to_coco(text, attribute="adjusted-bounding-box")
    assert [e["line"] for e in adjusted["errors"]] == [1]
    assert adjusted["errors"][0]["reason"].startswith("no 'adjusted-bounding-box' attribute")
    boxes = [a["bbox"] for a in adjusted["coco"]["annotations"]]
    assert boxes == [[110, 135, 61, 128], [161, 250, 30, 30], [10, 10, 30, 30]]  # the adjusted boxes
    image = adjusted["coco"]["images"][0]
    assert image["groundtruth"]["metadata"]["adjustment-status"] == "adjusted"
    assert sorted(image["groundtruth"]["other"]) == ["bounding-box-attribute-name", "bounding-box-attribute-name-metadata"]

    back = coco_to_groundtruth_boxes(json.loads(json.dumps(adjusted["coco"])), job_name="unused")
    assert back["errors"] == [] and back["lines"] == 1
    _same_line(_lines(back["manifest"])[0], original[1])  # both jobs' labels come back, as they were


# 2. multi-label classification ----------------------------------------------------------------------------------

def test_multilabel_labels_are_named_and_convert_to_coco_and_back(tmp_path):
    text = (DATA / "groundtruth-multilabel.manifest").read_text()
    assert check_custom_labels(text)["labels"] == ["bicycle", "clothing", "person"]

    records, errors = read_groundtruth_classes(text)  # a single-label reader says why it cannot take the line
    assert records == [] and errors == [{"line": 1, "reason": "a multi-label line (image-label-attribute-name: "
                                         "bicycle, person, clothing) where one label an image is wanted (convert "
                                         "it with --from groundtruth-multilabel)"}]

    Image.new("RGB", (64, 48)).save(tmp_path / "example_image.jpg", "JPEG")
    local = text.replace(AWS_BUCKET, f"{tmp_path}/")
    store = ObjectStore()
    store.write(str(tmp_path / "in.manifest"), local.encode())
    out = convert(store, source="groundtruth-multilabel", target="coco", input=str(tmp_path / "in.manifest"),
                  output=str(tmp_path / "coco.json"), images=str(tmp_path))
    assert out["errors"] == [] and out["labels"] == {"bicycle": 1, "clothing": 1, "person": 1}
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert coco["info"]["task"] == "multilabel-classification"
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert [(names[a["category_id"]], a["attributes"]) for a in coco["annotations"]] == [
        ("bicycle", {"confidence": 0.95}), ("person", {"confidence": 0.77}), ("clothing", {"confidence": 0.2})]
    convert(store, source="coco", target="groundtruth-multilabel", input=str(tmp_path / "coco.json"),
            output=str(tmp_path / "back.manifest"), images=str(tmp_path))
    _same_line(_lines((tmp_path / "back.manifest").read_text())[0], _lines(local)[0])

    with pytest.raises(Exception, match="a folder per label holds one label an image"):
        convert(store, source="groundtruth-multilabel", target="folders", input=str(tmp_path / "in.manifest"),
                output=str(tmp_path / "folders"))


# 3. crowd regions, masks and image metadata; 5. halves round up -------------------------------------------------

def test_coco_crowd_regions_masks_and_image_fields_are_kept_or_named():
    coco = json.loads((DATA / "coco-val2017-crowd.json").read_text())
    out = coco_to_groundtruth_boxes(coco, images_root=VAL2017)
    assert out["errors"] == [] and out["lines"] == 2
    lines = {line["coco-image"]["id"]: line for line in _lines(out["manifest"])}
    street = lines[255917]
    assert len(street["bounding-box"]["annotations"]) == 3  # 4 annotations, one of them a crowd region
    assert any("annotation 900300255917 is a crowd region (iscrowd 1, RLE)" in n for n in out["notes"])
    assert any("segmentation (polygons or RLE) of 4 annotations is left out" in n for n in out["notes"])
    image = next(i for i in coco["images"] if i["id"] == 255917)
    assert street["coco-image"] == {k: v for k, v in image.items() if k not in ("file_name", "width", "height")}
    # bbox [50.5, 329.7, 79.73, 55.26]: a half rounds up (Python's round(50.5) is 50)
    assert street["bounding-box"]["annotations"][1] == {"class_id": 2, "left": 51, "top": 330, "width": 80,
                                                        "height": 55}
    assert whole(50.5) == 51 and whole(69.5) == 70 and whole(2.5) == 3

    back = groundtruth_boxes_to_coco(out["manifest"], images_root=VAL2017)["coco"]
    for got, want in zip(sorted(back["images"], key=lambda i: i["id"]), sorted(coco["images"], key=lambda i: i["id"])):
        for key, value in want.items():  # every field of the image, id included
            assert got[key] == value, key
    crowd = [a for a in back["annotations"] if a.get("iscrowd")]
    assert crowd == []  # said above: Ground Truth boxes cannot hold it


# 4. confidence never invented; 8. an unused category 0 ----------------------------------------------------------

def test_roboflow_export_converts_without_a_category_0_error_nor_invented_confidences():
    coco = json.loads((DATA / "roboflow-pens.coco.json").read_text())
    out = coco_to_groundtruth_boxes(coco, images_root="s3://pens/test")
    assert out["errors"] == [] and out["lines"] == 2
    assert "category 0 ('objects') is used by no annotation: left out" in out["notes"]
    lines = _lines(out["manifest"])
    assert [line["coco-image"]["id"] for line in lines] == [0, 1]  # image id 0 kept
    meta = lines[0]["bounding-box-metadata"]
    assert meta["class-map"] == {"0": "pen"} and "objects" not in meta  # COCO had no confidence: none is made up
    assert lines[0]["bounding-box"]["annotations"] == [{"class_id": 0, "left": 280, "top": 936, "width": 3392,
                                                        "height": 640}]


def test_a_coco_score_becomes_the_box_confidence():
    coco = json.loads((DATA / "mmdet-coco-sample.json").read_text())
    out = coco_to_groundtruth_boxes(coco, images_root="s3://mmdet/fake")
    assert out["errors"] == [] and out["lines"] == 3  # image 2 has no annotation: a line without boxes
    lines = {line["coco-image"]["id"]: line for line in _lines(out["manifest"])}
    assert lines[0]["bounding-box-metadata"]["objects"] == [{"confidence": 1.0}, {"confidence": 1.0}]
    assert lines[2]["bounding-box"]["annotations"] == [] and "objects" not in lines[2]["bounding-box-metadata"]


# 5. names, ids and confidences come back as they were -----------------------------------------------------------

def test_classification_round_trip_keeps_attribute_names_class_ids_and_confidences(tmp_path):
    text = (DATA / "groundtruth-classification.manifest").read_text()
    original = _lines(text)
    assert [list(line)[1] for line in original] == ["sport", "species"]  # two jobs, both class 0, as 0 and "0"
    Image.new("RGB", (64, 48)).save(tmp_path / "image_example.png")
    Image.new("RGB", (64, 48)).save(tmp_path / "example_image.jpg")
    local = text.replace(AWS_BUCKET, f"{tmp_path}/")
    store = ObjectStore()
    store.write(str(tmp_path / "in.manifest"), local.encode())
    convert(store, source="groundtruth", target="coco", input=str(tmp_path / "in.manifest"),
            output=str(tmp_path / "coco.json"), images=str(tmp_path))
    coco = json.loads((tmp_path / "coco.json").read_text())
    assert [a.get("attributes") for a in coco["annotations"]] == [{"confidence": 0.0}] * 2
    convert(store, source="coco", target="groundtruth", input=str(tmp_path / "coco.json"),
            output=str(tmp_path / "back.manifest"), images=str(tmp_path))
    for got, want in zip(_lines((tmp_path / "back.manifest").read_text()), _lines(local), strict=True):
        _same_line(got, want)


# 6. s3:// images without credentials, and nothing converted -----------------------------------------------------

def test_boxes_with_image_size_convert_without_reading_s3_images(no_aws):
    text = (DATA / "groundtruth-boxes-adjusted.manifest").read_text().replace("AWSDOC-EXAMPLE-BUCKET",
                                                                              "awsdoc-example-bucket")
    out = groundtruth_boxes_to_coco(text, attribute="bounding-box-attribute-name", store=ObjectStore())
    assert out["errors"] == [] and out["images"] == 2
    assert out["notes"][-1].startswith("2 images not checked (their lines give image_size, so they converted): "
                                       "no AWS credentials")


def test_coco_images_in_s3_convert_without_credentials(no_aws):
    coco = json.loads((DATA / "coco-val2017-crowd.json").read_text())
    out = coco_to_groundtruth_boxes(coco, images_root="s3://images-cocodataset-org/val2017", store=ObjectStore())
    assert out["errors"] == [] and out["lines"] == 2
    assert out["notes"][-1].startswith("2 images not checked (COCO gives their size, so they converted): "
                                       "no AWS credentials")


def test_converting_nothing_raises_with_every_reason_and_writes_nothing(tmp_path):
    store = ObjectStore()
    with pytest.raises(NothingConverted) as caught:
        convert(store, source="coco", target="groundtruth-boxes", input=str(DATA / "coco-val2017-crowd.json"),
                output=str(tmp_path / "out.manifest"), images=str(tmp_path))
    assert [e["image_id"] for e in caught.value.errors] == [255917, 139]
    assert caught.value.errors[0]["reason"] == f"image not found: {tmp_path}/000000255917.jpg"
    assert str(caught.value).startswith(f"{DATA / 'coco-val2017-crowd.json'} (coco to groundtruth-boxes): nothing "
                                        f"converted; image 255917: image not found")
    assert not (tmp_path / "out.manifest").exists()


# 9. DeepFashion2 num_keypoints ----------------------------------------------------------------------------------

def test_deepfashion2_num_keypoints_counts_the_labelled_landmarks(tmp_path):
    # the annotation is real; its photo is not public, so a stand-in of the size the repository's YOLO labels imply
    images = tmp_path / "image"
    images.mkdir()
    Image.new("RGB", (468, 624)).save(images / "000001.jpg")
    out = deepfashion2(ObjectStore(), annotations=str(DATA / "deepfashion2" / "annos"), images=str(images))
    assert out["errors"] == []
    got = [(a["num_keypoints"], len(a["keypoints"]) // 3) for a in out["coco"]["annotations"]]
    assert got == [(22, 25), (7, 14)]  # item1 (short sleeve top), item2 (trousers): labelled of all landmarks

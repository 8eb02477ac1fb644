"""Image-level labels: Ground Truth classification manifests <-> a folder per label <-> COCO classification,
on the real labelled sample photos; bad lines and images reported while the rest convert."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from PIL import Image

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore
from services.datasets.convert import convert
from services.datasets.layouts import read_coco_classes, read_groundtruth_classes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(store: ObjectStore, root: str) -> dict[str, str]:
    """{relative key: sha256} of every file under a folder or prefix."""
    return {o.key: _sha(store.read(o.uri)) for o in store.list(root)}


def _gt_line(ref: str, name: str, class_id: int, *, attr: str = "category", confidence: float = 0.93) -> str:
    return json.dumps({"source-ref": ref, attr: class_id, f"{attr}-metadata": {
        "class-name": name, "confidence": confidence, "type": "groundtruth/image-classification",
        "job-name": "labeling-job/june", "human-annotated": "yes", "creation-date": "2026-01-01T00:00:00"}})


@pytest.fixture
def picked(samples, tmp_path):
    """Two real photos per class under tmp/by-class/<class>/, and one more product photo elsewhere that has the
    same file name as a product photo (a name clash in the product folder)."""
    root = tmp_path / "by-class"
    for folder in sorted(samples.iterdir()):
        if folder.is_dir():
            (root / folder.name).mkdir(parents=True)
            for photo in sorted(folder.glob("*.jpg"))[:2]:
                shutil.copy(photo, root / folder.name / photo.name)
    clash_name = sorted((root / "product").iterdir())[0].name
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(sorted((samples / "product").glob("*.jpg"))[2], other / clash_name)
    return root, other / clash_name


CLASS_IDS = {"package": 0, "product": 1, "full_length": 2, "half_length": 3}


def _manifest(root, extra) -> str:
    lines = [_gt_line(str(p), p.parent.name, CLASS_IDS[p.parent.name]) for p in sorted(root.glob("*/*.jpg"))]
    lines.append(_gt_line(str(extra), "product", 1))
    return "\n".join(lines) + "\n"


def test_groundtruth_to_folders_and_back(picked, tmp_path):
    root, extra = picked
    store = ObjectStore()
    (tmp_path / "gt.manifest").write_text(_manifest(root, extra))
    out = convert(store, source="groundtruth", target="folders", input=str(tmp_path / "gt.manifest"),
                  output=str(tmp_path / "tree"))
    assert out["errors"] == [] and out["images"] == 9 and out["renamed"] == 1
    assert out["labels"] == {"full_length": 2, "half_length": 2, "package": 2, "product": 3}
    tree = _tree(store, str(tmp_path / "tree"))
    renamed = sorted(set(tree) - {p.relative_to(root).as_posix() for p in root.glob("*/*.jpg")})
    stem, suffix = extra.name.rsplit(".", 1)
    assert renamed == [f"product/{stem}-{hashlib.sha1(str(extra).encode()).hexdigest()[:8]}.{suffix}"]
    assert len(renamed) == 1 and tree[renamed[0]] == _sha(extra.read_bytes())  # the clash kept both photos
    for key, sha in tree.items():
        if key not in renamed:
            assert sha == _sha((root / key).read_bytes())  # same bytes, in its label's folder

    back = convert(store, source="folders", target="groundtruth", input=str(tmp_path / "tree"),
                   output=str(tmp_path / "again.manifest"))
    assert back["errors"] == [] and back["images"] == 9
    records, errors = read_groundtruth_classes((tmp_path / "again.manifest").read_text(), attribute="category")
    assert errors == []
    original, _ = read_groundtruth_classes((tmp_path / "gt.manifest").read_text())
    assert sorted((_sha(store.read(r.source)), r.label) for r in records) == \
        sorted((_sha(store.read(r.source)), r.label) for r in original)
    line = json.loads((tmp_path / "again.manifest").read_text().splitlines()[0])
    assert line["category"] == CLASS_IDS[line["category-metadata"]["class-name"]]  # the console's class order
    assert line["category-metadata"]["type"] == "groundtruth/image-classification"

    with pytest.raises(InvalidInput, match="already holds files"):  # Custom Labels would read stale images too
        convert(store, source="groundtruth", target="folders", input=str(tmp_path / "gt.manifest"),
                output=str(tmp_path / "tree"))


def test_folders_to_coco_and_back(picked, tmp_path):
    root, _ = picked
    store = ObjectStore()
    out = convert(store, source="folders", target="coco", input=str(root), output=str(tmp_path / "labels.json"))
    assert out["errors"] == [] and out["images"] == 8
    coco = json.loads((tmp_path / "labels.json").read_text())
    assert coco["info"]["task"] == "classification"
    assert coco["categories"] == [{"id": 1, "name": "package"}, {"id": 2, "name": "product"},
                                  {"id": 3, "name": "full_length"}, {"id": 4, "name": "half_length"}]
    first = coco["images"][0]
    assert first["file_name"] == sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.jpg"))[0]
    with Image.open(root / first["file_name"]) as img:
        assert (first["width"], first["height"]) == img.size
    assert all("bbox" not in a for a in coco["annotations"]) and len(coco["annotations"]) == 8
    back = convert(store, source="coco", target="folders", input=str(tmp_path / "labels.json"),
                   output=str(tmp_path / "tree"), images=str(root))
    assert back["errors"] == [] and back["images"] == 8
    assert _tree(store, str(tmp_path / "tree")) == _tree(store, str(root))  # the same tree, byte for byte


def test_groundtruth_to_coco_and_back_keeps_ids_confidence_and_metadata(picked, tmp_path):
    root, extra = picked
    store = ObjectStore()
    text = _manifest(root, extra).replace('"category"', '"kind"').replace('"category-metadata"', '"kind-metadata"')
    (tmp_path / "gt.manifest").write_text(text)
    out = convert(store, source="groundtruth", target="coco", input=str(tmp_path / "gt.manifest"),
                  output=str(tmp_path / "c.json"), images=str(root), attribute="kind")
    assert out["errors"] == [] and out["images"] == 9
    coco = json.loads((tmp_path / "c.json").read_text())
    assert coco["images"][-1]["file_name"] == str(extra)  # not under the images root: the absolute path
    assert coco["annotations"][0]["attributes"] == {"confidence": 0.93}
    back = convert(store, source="coco", target="groundtruth", input=str(tmp_path / "c.json"),
                   output=str(tmp_path / "back.manifest"), images=str(root), attribute="kind")
    assert back["errors"] == []
    assert [json.loads(x) for x in (tmp_path / "back.manifest").read_text().splitlines()] == \
        [json.loads(x) for x in text.splitlines()]  # identical in content


def test_bad_lines_and_images_are_reported_and_the_rest_convert(picked, tmp_path):
    root, _ = picked
    photos = sorted(root.glob("*/*.jpg"))
    text = "\n".join([
        _gt_line(str(photos[0]), photos[0].parent.name, 2),
        "{oops",
        json.dumps({"source-ref": str(photos[1]), "label": 1, "label-metadata": {"class-name": "product"}}),
        _gt_line(str(tmp_path / "missing.jpg"), "product", 1),
        _gt_line(str(photos[2]), "../escape", 1),
        json.dumps({"category": 1, "category-metadata": {"class-name": "product"}}),
        _gt_line(str(photos[0]), "product", 1),
        _gt_line(str(photos[3]), photos[3].parent.name, 3),
    ])
    (tmp_path / "bad.manifest").write_text(text)
    out = convert(ObjectStore(), source="groundtruth", target="folders", input=str(tmp_path / "bad.manifest"),
                  output=str(tmp_path / "tree"), attribute="category")
    assert out["images"] == 2
    reasons = {e["line"]: e["reason"] for e in out["errors"]}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7]
    assert reasons[2].startswith("not valid JSON")
    assert reasons[3] == "no 'category' attribute; found source-ref, label, label-metadata"
    assert reasons[4].startswith(f"cannot copy {tmp_path / 'missing.jpg'}: file not found")
    assert reasons[5].startswith("label '../escape' cannot be a folder name")
    assert reasons[6] == "no 'source-ref' (the image URI); found category, category-metadata"
    assert reasons[7] == f"{photos[0]} is already on line 1"

    coco = {"images": [{"id": i, "file_name": f"img{i}.jpg"} for i in range(1, 5)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1}, {"id": 2, "image_id": 2, "category_id": 1},
                            {"id": 3, "image_id": 2, "category_id": 2}, {"id": 4, "image_id": 3, "category_id": 1,
                                                                          "bbox": [0, 0, 5, 5]}],
            "categories": [{"id": 1, "name": "product"}, {"id": 2, "name": "package"}]}
    records, errors = read_coco_classes(coco, images_root=str(root))
    assert [r.label for r in records] == ["product"]
    assert {e["image_id"]: e["reason"] for e in errors} == {
        2: "2 labels (package, product): classification takes one (convert it with --to groundtruth-multilabel)",
        3: "annotation 4 has a bbox: this is a detection file (convert it with --to groundtruth-boxes)",
        4: "no label"}


def test_a_folder_tree_on_real_s3_to_groundtruth_and_back(picked, s3_bucket, tmp_path):
    root, _ = picked
    store, bucket = s3_bucket
    src = f"s3://{bucket}/by-class"
    for photo in sorted(root.glob("*/*.jpg")):
        store.write(f"{src}/{photo.relative_to(root).as_posix()}", photo.read_bytes())
    store.write(f"{src}/stray.jpg", (sorted(root.glob("*/*.jpg"))[0]).read_bytes())  # no label folder
    out = convert(store, source="folders", target="groundtruth", input=src, output=f"s3://{bucket}/gt.manifest")
    assert out["images"] == 8 and out["errors"] == [{"file": "stray.jpg", "reason":
                                                      "not in a label folder (an image's label is its folder)"}]
    first = json.loads(store.read(f"s3://{bucket}/gt.manifest").decode().splitlines()[0])
    assert first["source-ref"].startswith(f"s3://{bucket}/by-class/")
    back = convert(store, source="groundtruth", target="folders", input=f"s3://{bucket}/gt.manifest",
                   output=f"s3://{bucket}/copy")  # copied server-side
    assert back["errors"] == [] and back["images"] == 8
    expected = {k: v for k, v in _tree(store, src).items() if k != "stray.jpg"}
    assert _tree(store, f"s3://{bucket}/copy") == expected

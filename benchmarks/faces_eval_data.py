"""Materialise the face-blurring evaluation set (benchmarks/faces_eval/manifest.csv) into benchmarks/out/faces_eval/.

Every row names a real photo in a public GitHub repository at a fixed commit, read from a local bare mirror
(``git show <commit>:<path>``), and the annotation its face boxes come from (the official WIDER FACE validation
ground truth, ``wider_face_val.mat``, or a Pascal VOC file of the Face Mask Detection set). Photos and
annotation files are checked against the sha256 in the manifest. Written:

* ``<out>/images/<id><ext>``: the photo, byte for byte;
* ``<out>/annotations.json``: per photo its split (``tuning`` or ``evaluation``), source, size, the faces to
  score (``[x, y, w, h]`` with tags: heavy_blur, extreme_light, partial_occlusion, heavy_occlusion,
  atypical_pose, edge, mask) and the regions to ignore (faces under 10 px wide and faces WIDER marks invalid:
  masking them is neither a hit nor a change outside faces).

    python benchmarks/faces_eval_data.py [--mirror-dir /work/.mirror] [--out DIR]

Mirrors are looked up as ``<mirror-dir>/<owner>+<name>/repo`` (a bare git directory or a clone with ``.git``).
Choose settings on the tuning part only; the evaluation part is for reporting (benchmarks/faces_eval/README.md).
The last line printed is JSON: photos, faces per split, missing (ids with the reason).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

from common import from_mirror

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "benchmarks" / "faces_eval" / "manifest.csv"
OUT = ROOT / "benchmarks" / "out" / "faces_eval"
MIN_WIDTH = 10  # faces narrower than this are ignored (neither scored nor counted as outside)
MASK_CLASSES = {"with_mask", "mask_weared_incorrect"}


def wider_index(mat_bytes: bytes) -> dict[str, dict[str, Any]]:
    """WIDER FACE val ground truth by file stem: boxes (n, 4) and the attribute labels."""
    import scipy.io as sio  # scipy comes with scikit-learn

    mat = sio.loadmat(io.BytesIO(mat_bytes))
    out: dict[str, dict[str, Any]] = {}
    keys = ("blur", "illumination", "occlusion", "pose", "invalid")
    for e in range(len(mat["event_list"])):
        for i, f in enumerate(mat["file_list"][e][0]):
            out[str(f[0][0])] = {"boxes": mat["face_bbx_list"][e][0][i][0].reshape(-1, 4).astype(float).tolist(),
                                 **{k: mat[f"{k}_label_list"][e][0][i][0].ravel().astype(int).tolist() for k in keys}}
    return out


def wider_faces(gt: dict[str, Any], width: int, height: int) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """(faces to score with tags, regions to ignore) from one photo's WIDER ground truth."""
    faces, ignore = [], []
    for j, (x, y, w, h) in enumerate(gt["boxes"]):
        if gt["invalid"][j] or w < MIN_WIDTH:
            ignore.append([x, y, w, h])
            continue
        tags = [name for name, hit in (("heavy_blur", gt["blur"][j] == 2), ("extreme_light", gt["illumination"][j] == 1),
                                       ("partial_occlusion", gt["occlusion"][j] == 1),
                                       ("heavy_occlusion", gt["occlusion"][j] == 2), ("atypical_pose", gt["pose"][j] == 1),
                                       ("edge", x <= 2 or y <= 2 or x + w >= width - 2 or y + h >= height - 2)) if hit]
        faces.append({"box": [x, y, w, h], "tags": tags})
    return faces, ignore


def voc_faces(xml: bytes, width: int, height: int) -> tuple[list[dict[str, Any]], list[list[float]]]:
    """(faces to score with tags, regions to ignore) from a Pascal VOC annotation of the Face Mask set."""
    faces, ignore = [], []
    for obj in re.findall(rb"<object>(.*?)</object>", xml, re.S):
        name = re.search(rb"<name>(.*?)</name>", obj).group(1).decode()  # type: ignore[union-attr]
        x1, y1, x2, y2 = (float(re.search(rb"<%s>(.*?)</%s>" % (k, k), obj).group(1))  # type: ignore[union-attr]
                          for k in (b"xmin", b"ymin", b"xmax", b"ymax"))
        box = [x1, y1, x2 - x1, y2 - y1]
        if box[2] < MIN_WIDTH:
            ignore.append(box)
            continue
        tags = (["mask"] if name in MASK_CLASSES else []) + (
            ["edge"] if x1 <= 2 or y1 <= 2 or x2 >= width - 2 or y2 >= height - 2 else [])
        faces.append({"box": box, "tags": tags})
    return faces, ignore


def materialise(mirror_dir: Path, out: Path) -> dict[str, Any]:
    """Write the photos and annotations.json; returns the summary."""
    from PIL import Image

    rows = list(csv.DictReader(MANIFEST.open()))
    (out / "images").mkdir(parents=True, exist_ok=True)
    ann_cache: dict[tuple[str, str, str], bytes | None] = {}
    wider: dict[str, dict[str, Any]] | None = None
    records: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for r in rows:
        data = from_mirror(mirror_dir, r["repo"], r["commit"], r["path"])
        if data is None:
            missing[r["id"]] = f"no mirror of {r['repo']} at {r['commit'][:10]} (fetch it)"
            continue
        if hashlib.sha256(data).hexdigest() != r["sha256"]:
            missing[r["id"]] = "sha256 differs from the manifest"
            continue
        key = (r["ann_repo"], r["ann_commit"], r["ann_path"])
        if key not in ann_cache:
            ann = from_mirror(mirror_dir, *key)
            ann_cache[key] = ann if ann is not None and hashlib.sha256(ann).hexdigest() == r["ann_sha256"] else None
        ann = ann_cache[key]
        if ann is None:
            missing[r["id"]] = f"annotation {r['ann_path']} missing or changed"
            continue
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        if r["source"] == "wider_val":
            wider = wider if wider is not None else wider_index(ann)
            faces, ignore = wider_faces(wider[r["annotation"].split(":", 1)[1]], width, height)
        else:
            faces, ignore = voc_faces(ann, width, height)
        name = r["id"] + Path(r["path"]).suffix.lower()
        (out / "images" / name).write_bytes(data)
        records[r["id"]] = {"split": r["split"], "source": r["source"], "file": f"images/{name}", "width": width,
                            "height": height, "faces": faces, "ignore": ignore}
    (out / "annotations.json").write_text(json.dumps(records, indent=1))
    per_split = {s: {"photos": sum(v["split"] == s for v in records.values()),
                     "faces": sum(len(v["faces"]) for v in records.values() if v["split"] == s)}
                 for s in ("tuning", "evaluation")}
    return {"photos": len(records), "per_split": per_split, "missing": missing, "out": str(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mirror-dir", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print(json.dumps(materialise(args.mirror_dir, args.out)))


if __name__ == "__main__":
    main()

"""Share of annotated faces blurred: this console's faces job and the deface CLI (its defaults), same images.

The images are the sample photos whose faces are annotated (../shared/samples/faces/annotations, mmpose
test sets). A face counts as blurred when the middle half of its annotated box changed (mean absolute
difference over 4 grey levels) in the output. Also reported: how much of each image outside the faces
changed (re-encoding aside it should not), and the time each tool took.

    python benchmarks/blur_quality.py [--quick]

The last line is JSON: faces, recall, deface_recall and the details.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, cpu_ticks, others_share
from PIL import Image, ImageOps

FACES = ROOT.parent / "shared" / "samples" / "faces"


def annotated() -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for f in sorted((FACES / "annotations").glob("mmpose_test_*.json")):
        data = json.loads(f.read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        for a in data["annotations"]:
            out.setdefault(f"mmpose_{f.stem.removeprefix('mmpose_test_')}_{names[a['image_id']]}", []).append(a["bbox"])
    return out


def grey(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("L"), dtype=np.int16)


def score(src: Path, out: Path, faces: dict[str, list[list[float]]]) -> dict:
    hit = total = 0
    outside = []
    for name, boxes in faces.items():
        before, after = grey(src / name), grey(out / name)
        if before.shape != after.shape:
            total += len(boxes)
            continue
        keep = np.ones(before.shape, bool)
        for x, y, w, h in boxes:
            total += 1
            inner = (slice(int(y + h * 0.25), int(y + h * 0.75)), slice(int(x + w * 0.25), int(x + w * 0.75)))
            hit += float(np.abs(after[inner] - before[inner]).mean()) > 4
            keep[max(0, int(y - h)):int(y + 2 * h), max(0, int(x - w)):int(x + 2 * w)] = False
        outside.append(float(np.abs(after - before)[keep].mean()) if keep.any() else 0.0)
    return {"faces": total, "blurred": hit, "recall": round(hit / total, 4) if total else None,
            "outside_mean_change": round(float(np.mean(outside)), 2) if outside else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the same run (the annotated set is small)")
    parser.parse_args()
    before = cpu_ticks()
    faces = annotated()
    if not faces:
        print(json.dumps({"faces": 0, "recall": None, "deface_recall": None, "note": f"{FACES} not found"}))
        return
    sys.path.insert(0, str(ROOT))
    from services.faces.detection import CenterFaceDetector
    from services.faces.job import DEFAULTS, anonymize_image, validate_params

    with tempfile.TemporaryDirectory() as tmp:
        src, ours, theirs = Path(tmp) / "src", Path(tmp) / "ours", Path(tmp) / "deface"
        for d in (src, ours, theirs):
            d.mkdir()
        for name in faces:
            shutil.copy(FACES / name, src / name)
        params = validate_params({**DEFAULTS, "source": str(src), "destination": str(ours)})
        detector = CenterFaceDetector.shared()
        t0 = time.perf_counter()
        for name in faces:
            data, _ = anonymize_image((src / name).read_bytes(), detector=detector, params=params, max_pixels=80_000_000)
            (ours / name).write_bytes(data)
        ours_s = time.perf_counter() - t0
        deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
        t0 = time.perf_counter()
        for name in faces:
            subprocess.run([deface, str(src / name), "-o", str(theirs / name)], check=True, capture_output=True)
        theirs_s = time.perf_counter() - t0
        mine, other = score(src, ours, faces), score(src, theirs, faces)
    print(json.dumps({"ours": mine, "deface": other}), flush=True)
    print(json.dumps({"faces": mine["faces"], "recall": mine["recall"], "deface_recall": other["recall"],
                      "outside_mean_change": mine["outside_mean_change"],
                      "deface_outside_mean_change": other["outside_mean_change"], "seconds": round(ours_s, 2),
                      "deface_seconds_including_start_up": round(theirs_s, 2), "images": len(faces),
                      "others_cpu_share": others_share(before)}))


if __name__ == "__main__":
    main()

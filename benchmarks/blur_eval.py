"""What the face-blurring benchmarks share: the evaluation set on disk, scoring an anonymised photo, deface's run.

A face counts as **removed** when the variance of the Laplacian inside its annotated box falls below half of the
original's (``services.faces.quality``). The share **changed outside faces** is over the pixels outside every
annotated face box grown 1.5 times about its centre (room for hair, ears and chin; ignored faces, under 10 px or
marked invalid, are left out too): a pixel changed when its grey level moved by more than 8 (JPEG re-encoding
moves a few). Bounds are Wilson 95% intervals.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT, ROOT, wilson
from PIL import Image, ImageOps

EVAL_DIR = OUT / "faces_eval"
BUCKETS = (("10-20", 10, 20), ("20-40", 20, 40), ("40+", 40, 1e9))
OUTSIDE_GROW = 1.5
CHANGED_LEVELS = 8
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load(split: str, *, quick: bool = False) -> dict[str, dict[str, Any]]:
    """The photos of ``split`` (tuning, evaluation or all) from annotations.json; ``quick``: the crowd photos only
    (WIDER FACE). Empty when the set is not materialised (benchmarks/faces_eval_data.py)."""
    path = EVAL_DIR / "annotations.json"
    if not path.is_file():
        return {}
    records = json.loads(path.read_text())
    return {k: v for k, v in sorted(records.items())
            if (split == "all" or v["split"] == split) and (not quick or v["source"] == "wider_val")}


def rgb(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def xyxy(box: list[float], grow: float = 1.0) -> list[float]:
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    return [cx - w * grow / 2, cy - h * grow / 2, cx + w * grow / 2, cy + h * grow / 2]


@dataclass
class Tally:
    """Faces removed and pixels changed, summed over photos."""

    faces: Counter = field(default_factory=Counter)
    removed: Counter = field(default_factory=Counter)
    outside: int = 0
    changed: int = 0
    worst_outside: float = 0.0
    missed: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, before: np.ndarray, after: np.ndarray, record: dict[str, Any]) -> None:
        from services.faces.quality import REMOVED_BELOW, detail_ratios

        boxes = np.array([xyxy(f["box"]) for f in record["faces"]], dtype=np.float32).reshape(-1, 4)
        ratios = detail_ratios(before, after, boxes)
        for face, ratio in zip(record["faces"], ratios):
            keys = ["all", next(b for b, lo, hi in BUCKETS if lo <= face["box"][2] < hi), *face["tags"]]
            ok = bool(ratio < REMOVED_BELOW)
            for k in keys:
                self.faces[k] += 1
                self.removed[k] += ok
            if not ok:
                self.missed.append({"photo": name, "box": [round(v) for v in face["box"]], "ratio": round(float(ratio), 2)})
        allowed = np.zeros(before.shape[:2], dtype=bool)
        for box in [f["box"] for f in record["faces"]] + record["ignore"]:
            x1, y1, x2, y2 = (int(round(v)) for v in xyxy(box, OUTSIDE_GROW))
            allowed[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
        diff = np.abs(before.astype(np.int16) - after.astype(np.int16)).max(axis=2) > CHANGED_LEVELS
        out = ~allowed
        self.outside += int(out.sum())
        self.changed += int((diff & out).sum())
        self.worst_outside = max(self.worst_outside, float((diff & out).sum() / max(1, out.sum())))

    def summary(self) -> dict[str, Any]:
        def part(key: str) -> dict[str, Any]:
            n, k = self.faces[key], self.removed[key]
            return {"faces": n, "removed": k, "recall": round(k / n, 4) if n else None, "ci95": wilson(k, n)}

        return {"overall": part("all"), "by_width": {b: part(b) for b, _, _ in BUCKETS},
                "by_tag": {t: part(t) for t in sorted(self.faces) if t not in ("all", *[b for b, _, _ in BUCKETS])},
                "changed_outside": round(self.changed / max(1, self.outside), 5),
                "worst_photo_changed_outside": round(self.worst_outside, 4)}


def run_deface(photos: dict[str, dict[str, Any]], *, root: Path = EVAL_DIR) -> tuple[dict[str, Path], float, Path]:
    """deface at its defaults (CenterFace at threshold 0.2 on the full image, blur, mask scale 1.3) on copies of
    the photos (files under ``root``), one process for all; returns (id -> output path, seconds, the temporary
    folder to remove)."""
    tmp = Path(tempfile.mkdtemp(prefix="deface-eval-"))
    for rec in photos.values():
        shutil.copy(root / rec["file"], tmp / Path(rec["file"]).name)
    deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
    t0 = time.perf_counter()
    subprocess.run([deface, str(tmp)], check=True, capture_output=True)
    seconds = time.perf_counter() - t0
    out = {}
    for k, rec in photos.items():
        p = Path(rec["file"])
        out[k] = tmp / f"{p.stem}_anonymized{p.suffix}"
    return out, seconds, tmp

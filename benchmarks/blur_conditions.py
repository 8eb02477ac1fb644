"""The face-blurring evaluation photos as a deployment varies them: smaller or larger uploads, heavy JPEG
re-compression, under-exposure with sensor noise. ``python benchmarks/blur_recall.py --condition NAME`` scores
both tools on the photos so changed; nothing here was used to choose a setting (the conditions were fixed before
any was run, and each is run once on the evaluation part).

* ``half``: every photo at half its size (area resampling), as a server or an app that shrinks uploads gives it;
  boxes halved, and a face left under 10 px wide joins the ignored ones (masking it is neither a hit nor a change);
* ``jpeg30``: re-encoded as JPEG at quality 30 (messaging apps, screenshots of screenshots): blocking and smeared
  detail, in the faces too (the detail measure compares against the re-encoded photo, as it is what is published);
* ``dark``: under-exposed by three stops (grey levels scaled by 0.125 in linear light, gamma 2.2) with sensor
  noise (Gaussian, sigma 3 grey levels, seeded by the photo's name), as a phone's photo of an evening street.

Not a condition: photos *enlarged* (bicubic, twice the size) stand in badly for a larger camera's photos. They
hold no fine detail, so the box-wide detail measure is dominated by the mask's own edge where an ellipse leaves a
loose box's corners: faces found and blurred scored a ratio above 1 (the inner 60% of the same boxes: 0.01 to
0.1; tuning part, 2026-12-06).

The changed photos are written once under ``benchmarks/out/faces_eval_<condition>/`` (lossless PNG, but JPEG for
``jpeg30``) with an ``annotations.json`` of the same shape as the original's, so the scoring is unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from blur_eval import EVAL_DIR, rgb
from common import OUT
from PIL import Image

CONDITIONS = ("half", "jpeg30", "dark")
MIN_WIDTH = 10  # faces narrower than this after resizing are ignored, as in the original set


def condition_dir(name: str) -> Path:
    """Where the photos under condition ``name`` are written."""
    return OUT / f"faces_eval_{name}"


def _scale(record: dict[str, Any], factor: float) -> dict[str, Any]:
    """A record's boxes scaled by ``factor``; faces left narrower than MIN_WIDTH move to the ignored boxes."""
    faces, ignore = [], [[v * factor for v in box] for box in record["ignore"]]
    for face in record["faces"]:
        box = [v * factor for v in face["box"]]
        (faces if box[2] >= MIN_WIDTH else ignore).append({**face, "box": box} if box[2] >= MIN_WIDTH else box)
    return {**record, "faces": faces, "ignore": ignore, "width": round(record["width"] * factor),
            "height": round(record["height"] * factor)}


def _dark(pixels: np.ndarray, *, name: str) -> np.ndarray:
    """Three stops under, in linear light, with Gaussian noise of sigma 3 seeded by ``name``."""
    linear = (pixels.astype(np.float32) / 255.0) ** 2.2 * 0.125
    out = linear ** (1 / 2.2) * 255.0
    seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    out += np.random.default_rng(seed).normal(0.0, 3.0, size=out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def changed(name: str, record: dict[str, Any], condition: str) -> tuple[Image.Image, dict[str, Any], str]:
    """(photo, record, suffix) of one evaluation photo under ``condition``."""
    pixels = rgb(EVAL_DIR / record["file"])
    img = Image.fromarray(pixels)
    if condition == "half":
        return img.resize((round(img.width / 2), round(img.height / 2)), Image.Resampling.BOX), _scale(record, 0.5), ".png"
    if condition == "jpeg30":
        return img, dict(record), ".jpg"
    if condition == "dark":
        return Image.fromarray(_dark(pixels, name=name)), dict(record), ".png"
    raise ValueError(f"unknown condition {condition!r}: one of {', '.join(CONDITIONS)}")


def materialise(photos: dict[str, dict[str, Any]], condition: str) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The ``photos`` under ``condition`` (written when missing) and their records, files relative to the folder."""
    root = condition_dir(condition)
    (root / "images").mkdir(parents=True, exist_ok=True)
    out = {}
    for name, record in photos.items():
        img, rec, suffix = changed(name, record, condition)
        rec["file"] = f"images/{name}{suffix}"
        path = root / rec["file"]
        if not path.is_file():
            if suffix == ".jpg":
                img.save(path, quality=30)
            else:
                img.save(path)
        out[name] = rec
    (root / "annotations.json").write_text(json.dumps(out))
    return root, out

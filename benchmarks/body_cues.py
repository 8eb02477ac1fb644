"""Body-extent cues (services.models.body_cues): speed per photo, and how well one threshold on the ankle/feet
cue separates the full-length from the half-length sample photos.

Photos: ../shared/samples/reviews (all four folders for speed; full_length and half_length for separation),
or scikit-image's data photos (speed only) when the samples are missing. Speed is the pose pipeline and the
cue vector on an already-decoded RGB image, at the photo's own size and at 448 px on the long side (the size
services.models.features decodes for cues); wall-clock and this process's CPU time per photo, after a
warm-up photo. Separation: for each cue, the best single threshold on the 27 labelled photos (accuracy, and
the leave-one-out accuracy when the threshold is chosen without the photo it is tested on).

    python benchmarks/body_cues.py [--quick]

The last line is JSON: ms_per_photo, ms_per_photo_448, accuracy (the headline cue, ``ankles_or_feet_in_frame``
= max(ankles_in_frame, feet_in_frame)) and the details.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from common import SAMPLES, cpu_ticks, others_share, source_photos
from PIL import Image

HEADLINE = "ankles_or_feet_in_frame"


def load(path: Path, side: int | None) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    if side:
        img.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(img)


def timed(model, images: list[np.ndarray], rounds: int) -> tuple[float, float, np.ndarray]:  # type: ignore[no-untyped-def]
    """(median wall ms, median CPU ms) per photo over ``rounds`` passes, and the cues of the last pass."""
    from services.models.body_cues import cues_from_pose

    model.pose(images[0])  # warm-up
    wall, cpu, cues = [], [], []
    for _ in range(rounds):
        cues = []
        for img in images:
            t, c = time.perf_counter(), time.process_time()
            cues.append(cues_from_pose(model.pose(img)))
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    return round(1000 * float(np.median(wall)), 1), round(1000 * float(np.median(cpu)), 1), np.array(cues)


def best_threshold(values: np.ndarray, full: np.ndarray) -> tuple[float, float, int]:
    """The threshold (midpoint between neighbouring values) and direction that classify the most photos right:
    (threshold, accuracy, +1 if full-length is above it else -1)."""
    cands = np.unique(values)
    cuts = np.concatenate([[cands[0] - 1], (cands[:-1] + cands[1:]) / 2, [cands[-1] + 1]])
    best = (0.0, -1.0, 1)
    for cut in cuts:
        for sign in (1, -1):
            acc = float(np.mean((sign * (values - cut) > 0) == full))
            if acc > best[1]:
                best = (float(cut), acc, sign)
    return best


def separation(values: np.ndarray, full: np.ndarray) -> dict:
    cut, acc, sign = best_threshold(values, full)
    right = 0
    for i in range(len(values)):  # leave one out: the threshold never sees the photo it decides
        rest = np.arange(len(values)) != i
        c, _, s = best_threshold(values[rest], full[rest])
        right += int((s * (values[i] - c) > 0) == full[i])
    return {"threshold": round(cut, 3), "full_length_if": ">" if sign > 0 else "<", "accuracy": round(acc, 3),
            "loo_accuracy": round(right / len(values), 3), "errors": int(round((1 - acc) * len(values)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one timing pass instead of three")
    args = parser.parse_args()
    from services.models.body_cues import BODY_CUE_NAMES, BodyPoseModel

    before = cpu_ticks()
    t0 = time.perf_counter()
    model = BodyPoseModel.shared()
    out: dict = {"load_s": round(time.perf_counter() - t0, 2)}
    paths, source = source_photos()
    rounds = 1 if args.quick else 3
    for key, side in (("", None), ("_448", 448)):
        images = [load(p, side) for p in paths]
        wall, cpu, cues = timed(model, images, rounds)
        out[f"ms_per_photo{key}"], out[f"cpu_ms_per_photo{key}"] = wall, cpu
        print(json.dumps({f"ms_per_photo{key}": wall, f"cpu_ms_per_photo{key}": cpu, "photos": len(images)}), flush=True)
        if key == "":
            all_cues = cues
    out.update(photos=len(paths), rounds=rounds, source=source)
    labels = np.array([p.parent.name for p in paths])
    keep = np.isin(labels, ["full_length", "half_length"])
    if source != "samples" or keep.sum() < 4:
        out.update(accuracy=None, note=f"separation needs {SAMPLES}")
    else:
        cues, full = all_cues[keep], labels[keep] == "full_length"
        columns = {name: cues[:, i] for i, name in enumerate(BODY_CUE_NAMES) if name != "has_person"}
        columns[HEADLINE] = np.maximum(columns["ankles_in_frame"], columns["feet_in_frame"])
        out["separation"] = {name: separation(v, full) for name, v in columns.items()}
        out["accuracy"] = out["separation"][HEADLINE]["accuracy"]
        out["loo_accuracy"] = out["separation"][HEADLINE]["loo_accuracy"]
        out["labelled"] = {"full_length": int(full.sum()), "half_length": int((~full).sum())}
        out["no_person_share"] = {k: round(float(np.mean(all_cues[labels == k, 0] == 0)), 2)
                                  for k in ("package", "product") if (labels == k).any()}
    out["others_cpu_share"] = others_share(before)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

"""Faces whose detail is removed, this console's faces job against the deface CLI (its defaults), same photos, one run.

The photos are the evaluation part of benchmarks/faces_eval (materialise it first with
``python benchmarks/faces_eval_data.py``): public crowd and group photos (WIDER FACE validation) and masked faces
(Face Mask Detection), never used to choose a setting. Scoring is in benchmarks/blur_eval.py: a face is removed
when the Laplacian variance inside its box falls below half of the original's; recall is given overall, by face
width (10-20, 20-40, 40+ px) and by tag, with Wilson 95% bounds; also the share of the image changed outside the
faces, and the time each tool took.

    python benchmarks/blur_recall.py [--quick] [--split evaluation|tuning|all] [--condition half|jpeg30|dark]

--quick scores the crowd photos only (WIDER FACE). --condition scores both tools on the photos as a deployment
changes them (smaller, re-compressed, under-exposed: benchmarks/blur_conditions.py). The last line is
JSON: faces, recall, recall_small, changed_outside, deface_recall and the details.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import time

import numpy as np
from blur_conditions import CONDITIONS, materialise
from blur_eval import EVAL_DIR, Tally, load, rgb, run_deface
from common import cpu_ticks, others_share
from PIL import Image


def ours(photos: dict, *, threshold: float | None, root=EVAL_DIR) -> tuple[Tally, float, dict]:  # type: ignore[no-untyped-def]
    """Run the faces job's image path (its defaults) on every photo (files under ``root``) and score it."""
    from services.faces.detection import CenterFaceDetector
    from services.faces.job import DEFAULTS, anonymize_image, validate_params

    params = validate_params({**DEFAULTS, "source": "/in", "destination": "/out",
                              **({"threshold": threshold} if threshold is not None else {})})
    detector = CenterFaceDetector.shared()
    tally, seconds, found = Tally(), 0.0, 0
    for name, rec in photos.items():
        data = (root / rec["file"]).read_bytes()
        t0 = time.perf_counter()
        out, report = anonymize_image(data, detector=detector, params=params, max_pixels=80_000_000)
        seconds += time.perf_counter() - t0
        found += len(report["faces"])
        tally.add(name, rgb(root / rec["file"]), np.asarray(Image.open(io.BytesIO(out)).convert("RGB")), rec)
    return tally, seconds, {"threshold": params["threshold"], "detections": found}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the crowd photos (WIDER FACE) only")
    parser.add_argument("--split", default="evaluation", choices=("evaluation", "tuning", "all"))
    parser.add_argument("--threshold", type=float, default=None, help="override the job's default threshold")
    parser.add_argument("--no-deface", action="store_true", help="skip deface (for quick looks only)")
    parser.add_argument("--condition", choices=CONDITIONS, default=None,
                        help="the photos as a deployment changes them (benchmarks/blur_conditions.py)")
    args = parser.parse_args()
    photos = load(args.split, quick=args.quick)
    if not photos:
        print(json.dumps({"faces": 0, "recall": None, "recall_small": None, "changed_outside": None, "deface_recall": None,
                          "note": f"{EVAL_DIR} not found: run benchmarks/faces_eval_data.py"}))
        return
    root = EVAL_DIR
    if args.condition:
        root, photos = materialise(photos, args.condition)
    before = cpu_ticks()
    mine, seconds, info = ours(photos, threshold=args.threshold, root=root)
    m = mine.summary()
    print(json.dumps({"ours": m, **info, "seconds": round(seconds, 2)}), flush=True)
    theirs, d = None, None
    if not args.no_deface:
        paths, d_seconds, tmp = run_deface(photos, root=root)
        theirs = Tally()
        for name, rec in photos.items():
            theirs.add(name, rgb(root / rec["file"]), rgb(paths[name]), rec)
        shutil.rmtree(tmp, ignore_errors=True)
        d = theirs.summary()
        print(json.dumps({"deface": d, "seconds_including_start_up": round(d_seconds, 2)}), flush=True)
    print(json.dumps({"missed": mine.missed[:40]}), flush=True)
    small = m["by_width"]["10-20"]
    print(json.dumps({
        "split": args.split, "condition": args.condition, "photos": len(photos), "faces": m["overall"]["faces"], "removed": m["overall"]["removed"],
        "recall": m["overall"]["recall"], "recall_ci95": m["overall"]["ci95"],
        "faces_small": small["faces"], "removed_small": small["removed"], "recall_small": small["recall"],
        "recall_small_ci95": small["ci95"],
        "recall_by_width": {k: v["recall"] for k, v in m["by_width"].items()},
        "faces_by_width": {k: v["faces"] for k, v in m["by_width"].items()},
        "changed_outside": m["changed_outside"], "threshold": info["threshold"], "seconds": round(seconds, 2),
        "deface_recall": d["overall"]["recall"] if d else None, "deface_removed": d["overall"]["removed"] if d else None,
        "deface_recall_small": d["by_width"]["10-20"]["recall"] if d else None,
        "deface_recall_by_width": {k: v["recall"] for k, v in d["by_width"].items()} if d else None,
        "deface_changed_outside": d["changed_outside"] if d else None,
        "others_cpu_share": others_share(before)}))


if __name__ == "__main__":
    main()

"""Choose the face detector's default threshold, recall first, on the TUNING part of benchmarks/faces_eval only.

Every tuning photo is searched once at the lowest threshold of the grid (all passes, boxes kept per pass), then
for each threshold the passes are merged as the detector does, the faces masked with the job's defaults and
scored as benchmarks/blur_recall.py scores them. The rule: the highest threshold whose recall is within one face
of the best on the grid, among those that change at most 1.5% of the image outside faces (half the 3% allowed,
kept as margin for photos unlike these). The evaluation part is never read here.

    python benchmarks/blur_tune.py [--grid 0.05,0.08,...]

The last line is JSON: the curve (threshold, recall, recall_small, changed_outside) and the chosen threshold.
"""

from __future__ import annotations

import argparse
import json

from blur_eval import EVAL_DIR, Tally, load, rgb

GRID = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
OUTSIDE_BUDGET = 0.015


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", default=",".join(str(t) for t in GRID))
    args = parser.parse_args()
    grid = sorted(float(t) for t in args.grid.split(","))
    photos = load("tuning")
    if not photos:
        print(json.dumps({"curve": [], "chosen": None, "note": f"{EVAL_DIR} not found: run benchmarks/faces_eval_data.py"}))
        return
    from services.faces.detection import CenterFaceDetector, faces_from
    from services.faces.job import DEFAULTS
    from services.faces.masks import anonymize

    detector = CenterFaceDetector.shared()
    tallies = {t: Tally() for t in grid}
    for name, rec in photos.items():
        img = rgb(EVAL_DIR / rec["file"])
        found = detector.passes(img, threshold=grid[0])
        for t in grid:
            boxes = faces_from(found, threshold=t, width=img.shape[1], height=img.shape[0])
            out = anonymize(img, boxes, mode=DEFAULTS["mode"], shape=DEFAULTS["shape"], mask_scale=DEFAULTS["mask_scale"])
            tallies[t].add(name, img, out, rec)
    curve = []
    for t in grid:
        s = tallies[t].summary()
        curve.append({"threshold": t, "removed": s["overall"]["removed"], "faces": s["overall"]["faces"],
                      "recall": s["overall"]["recall"], "recall_small": s["by_width"]["10-20"]["recall"],
                      "changed_outside": s["changed_outside"], "worst_photo": s["worst_photo_changed_outside"]})
        print(json.dumps(curve[-1]), flush=True)
    allowed = [c for c in curve if c["changed_outside"] <= OUTSIDE_BUDGET]
    best = max((c["removed"] for c in allowed), default=None)
    chosen = max((c["threshold"] for c in allowed if best is not None and c["removed"] >= best - 1), default=None)
    print(json.dumps({"split": "tuning", "photos": len(photos), "curve": curve, "chosen": chosen,
                      "rule": "highest threshold within one face of the best recall, changed outside <= 1.5%"}))


if __name__ == "__main__":
    main()

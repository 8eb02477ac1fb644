"""Barcodes cut by the photo's edge, built from the tune part only: tuning cases for ``services.redaction`` (the test
part's ZXing photos show codes cut by the edge, the tune part has almost none, so there was nothing to tune on).

Each tune photo with an annotated barcode is cropped four times, once per side (left, right, top, bottom), so
that its largest annotated barcode (by box area; the first on a tie) is cut by the new edge: the crop keeps
``KEEP[(i + s) % 3]`` of that box's extent across the cut (30%, 50% or 70%; ``i`` the photo's place among the
tune photos with a barcode, ``s`` the side's place in ``SIDES``), and the rest of the photo on the other side.
Every annotated box is clipped to the crop; a clipped box keeps only when at least ``MIN_LEFT`` of its area and 4
pixels each way are left (the cut code always keeps). Nothing is random: the same annotations give the same crops.
The crops are written lossless to ``benchmarks/out/labels_edges/<photo>_<side>.png`` with their clipped boxes in
``crops.json`` there (photos already there are kept). The photos must be materialised first (``python
benchmarks/label_redaction_data.py``).

    python benchmarks/label_redaction_edges.py [--no-uncut] [--target barcode|2d]

``--target 2d`` cuts the largest QR or other 2-D code instead (the tune photos with one), so that part of its finder
patterns is out of view; those crops are ``<photo>_2d_<side>.png`` with ``crops_2d.json``, and are grouped by side
and share kept only (a square code has no length to cut across).

Scored as ``label_redaction.py`` scores (COVER = 0.9 of a box under the mask counts as hidden): the cut codes
hidden, by side and by whether the cut runs across the code's length (a box wider than tall cut on the left or
right, or taller than wide cut on top or bottom) or along its bars; then every kind on the crops and
changed_outside (on the crops of photos annotated completely). With the default, the uncut tune photos are scored
too, to say how many of the cut codes were hidden before they were cut. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from blur_eval import wilson
from common import OUT
from label_redaction import ALL_KINDS, materialise_default, report, score
from label_redaction_data import photo_path
from PIL import Image, ImageOps

EDGES = OUT / "labels_edges"
SIDES = ("left", "right", "top", "bottom")
KEEP = (0.3, 0.5, 0.7)  # share of the cut code's box left inside the crop, across the cut
MIN_LEFT = 0.3  # a clipped box keeps when at least this share of its area is left


TARGETS = {"barcode": ("barcode",), "2d": ("qr", "other_2d")}  # --target: the kinds of the code that is cut


def crop_path(crop: dict) -> Path:
    """Where a crop's photo is written."""
    return EDGES / f"{crop['id']}.png"


def _cut(box: list, side: str, keep: float) -> tuple[int, int | None, int, int | None]:
    """(x0, x1, y0, y1) slice bounds of the crop leaving ``keep`` of ``box`` on the inside of ``side``."""
    _, x1, y1, x2, y2 = box
    if side == "left":
        return int(round(x2 - keep * (x2 - x1))), None, 0, None
    if side == "right":
        return 0, int(round(x1 + keep * (x2 - x1))), 0, None
    if side == "top":
        return 0, None, int(round(y2 - keep * (y2 - y1))), None
    return 0, None, 0, int(round(y1 + keep * (y2 - y1)))


def _target(photo: dict, kinds: tuple[str, ...]) -> list:
    """A photo's largest annotated code of ``kinds`` (by box area; the first on a tie)."""
    return max((b for b in photo["boxes"] if b[0] in kinds), key=lambda b: (b[3] - b[1]) * (b[4] - b[2]))


def crops(photos: list[dict], *, target_kind: str = "barcode") -> list[dict]:
    """The edge-cut crops of the tune ``photos`` (written under EDGES when missing), as annotated photos with a
    ``target`` (the cut code's clipped box, its largest code of TARGETS[target_kind]), ``side``, ``keep`` and
    ``across`` (the cut runs across the code's length). Raises OSError when a photo cannot be read or written."""
    EDGES.mkdir(parents=True, exist_ok=True)
    kinds = TARGETS[target_kind]
    tune = [p for p in photos if p["split"] == "tune" and any(b[0] in kinds for b in p["boxes"])]
    out = []
    for i, photo in enumerate(tune):
        image = ImageOps.exif_transpose(Image.open(photo_path(photo))).convert("RGB")
        width, height = image.size
        target = _target(photo, kinds)
        for s, side in enumerate(SIDES):
            keep = KEEP[(i + s) % len(KEEP)]
            x0, xe, y0, ye = _cut(target, side, keep)
            name = f"{photo['id']}_{side}" if target_kind == "barcode" else f"{photo['id']}_{target_kind}_{side}"
            crop = {"id": name, "photo": photo["id"], "split": "tune", "side": side, "keep": keep,
                    "complete": photo["complete"], "boxes": [], "target_kind": target[0]}
            xe, ye = width if xe is None else xe, height if ye is None else ye
            if not crop_path(crop).exists():
                image.crop((x0, y0, xe, ye)).save(crop_path(crop))
            for box in photo["boxes"]:
                kind, bx1, by1, bx2, by2 = box
                cx1, cy1, cx2, cy2 = max(bx1, x0) - x0, max(by1, y0) - y0, min(bx2, xe) - x0, min(by2, ye) - y0
                area = (bx2 - bx1) * (by2 - by1)
                if box is target or (cx2 - cx1 >= 4 and cy2 - cy1 >= 4 and (cx2 - cx1) * (cy2 - cy1) >= MIN_LEFT * area):
                    crop["boxes"].append([kind, cx1, cy1, cx2, cy2])
                if box is target:
                    crop["target"] = [cx1, cy1, cx2, cy2]
            wide = target[3] - target[1] >= target[4] - target[2]
            crop["across"] = wide == (side in ("left", "right"))
            out.append(crop)
    (EDGES / ("crops.json" if target_kind == "barcode" else f"crops_{target_kind}.json")).write_text(
        json.dumps(out, indent=1))
    return out


def _hidden(missed: list[dict], *, photo: str, kind: str, box: list) -> bool:
    """Whether the item of ``kind`` at ``box`` on ``photo`` is not among a score's ``missed`` items."""
    return not any(m["photo"] == photo and m["kind"] == kind and m["box"] == box for m in missed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-uncut", action="store_true", help="do not score the uncut tune photos")
    parser.add_argument("--target", choices=tuple(TARGETS), default="barcode", help="the kind of code cut")
    args = parser.parse_args()
    photos = materialise_default()
    cut = crops(photos, target_kind=args.target)
    before: dict[str, bool] = {}
    if not args.no_uncut:
        uncut = [p for p in photos if p["id"] in {c["photo"] for c in cut}]
        missed = score(uncut)["missed"]
        for c in cut:
            p = next(p for p in photos if p["id"] == c["photo"])
            target = _target(p, TARGETS[args.target])
            before[c["id"]] = _hidden(missed, photo=p["id"], kind=target[0], box=target[1:])
    result = score(cut, path=crop_path)
    hidden = {c["id"]: _hidden(result["missed"], photo=c["id"], kind=c["target_kind"], box=c["target"]) for c in cut}
    report(f"edge-cut crops of {len({c['photo'] for c in cut})} tune photos", result, misses=False)
    groups: dict[str, Counter] = {}
    for c in cut:
        way = [] if args.target != "barcode" else ["across the length" if c["across"] else "along the bars"]
        for name in ("all", c["side"], *way, f"keep {c['keep']}", *(["hidden uncut"] if before.get(c["id"]) else [])):
            groups.setdefault(name, Counter())[hidden[c["id"]]] += 1
    print("cut codes hidden:")
    for name, n in groups.items():
        low, high = wilson(n[True], n[True] + n[False])
        print(f"  {name:18s} {n[True]:3d} / {n[True] + n[False]:3d}  (95% {low:.3f}-{high:.3f})")
    for c in cut:
        if not hidden[c["id"]]:
            print(f"  cut code missed: {c['id']} keep {c['keep']} at {c['target']}"
                  f"{'' if before.get(c['id'], True) else ' (missed uncut too)'}")
    print(json.dumps({"crops": len(cut), "cut_hidden": groups["all"][True],
                      "cut_hidden_of_hidden_uncut": [groups.get("hidden uncut", Counter())[True],
                                                     sum(groups.get("hidden uncut", Counter()).values())],
                      "counts": {k: [result["found"][k], result["annotated"][k]] for k in ALL_KINDS},
                      "changed_outside": result["changed_outside"], "seconds_per_photo": result["seconds_per_photo"]}))


if __name__ == "__main__":
    main()

"""Shipping labels found and hidden on real photos: barcodes, QR codes and text blocks, annotated by hand
(benchmarks/label_redaction/annotations.json; origins and licences in its README). Materialise the photos first with
``python benchmarks/label_redaction_data.py``.

An annotated item counts as hidden when at least ``COVER`` of its box lies inside the redaction mask (the face
masks' box drawing around what ``services.redaction`` found, as the faces job draws it). ``changed_outside`` is the
share of pixels the job's default blur changed outside every annotated box, on the photos annotated completely.
Recall is given per kind with its counts and a Wilson 95% interval. Settings were chosen on ``tune`` (and
``tune2``); figures are reported on ``test`` and on the sets added later for evaluation only (below).

    python benchmarks/label_redaction.py [--quick] [--split test|tune|all|fresh|waybills|tune2|fresh2|parcels]
        [--set all|original|added] [--scale F] [--canvas PIXELS] [--turn QUARTERS] [--show-test-misses] [--codefree]
        [--network-boxes] [--masked]

--quick reports the test part only (the default also prints the tune part). --set picks the photos: the first 49
(``original``), the ones added later (``added``: ZXing's Code 128 labels and a parcel from jo-jstrm) or ``all``. Each
missed item is listed for the tune part; the test part's only with --show-test-misses (a list of what the held-out
photos miss is what one would be tempted to tune on). --scale resizes every photo and its boxes first (0.5 halves
them, 2 doubles them): the same labels as a camera with fewer or more pixels would show them (recall sets only).
--canvas 4032 places every photo smaller than 4032 px, at its own size, on a scene that large (a review sample photo
of people, enlarged): the same label in a phone's 12-megapixel photo of a whole parcel, as small in the frame.
--turn 1 (or 3) turns every photo and its boxes a quarter clockwise (or counter-clockwise): a label stuck sideways.
The last line is JSON: photos, recall_barcode, recall_qr, recall_text, changed_outside and the details.

``--split fresh`` reports the 99 ZXing photos annotated last (barcodes and QR codes only, for evaluation only), with
codes cut by the photo's edge apart. ``--codefree`` instead counts barcode and QR boxes on ZXing's 47 photos of
carpets, grilles and pages, which hold no code; its last line is JSON: ``codefree``. ``--network-boxes`` instead
counts the bar network's own boxes (bar and 2-D) on the 60 review sample photos (../shared/samples/reviews, by class)
and on those 47; its last line is JSON: ``network_boxes``. ``--masked`` runs the whole search on the same photos
and counts its boxes of each kind and the share of a photo it masks (on people, garments and code-free photos every
box is false); its last line is JSON: ``masked``. ``--split waybills`` reports real
phone photos of shipping labels annotated completely by eye before any detector ran on them (for evaluation only).
Each recall also has an interval with whole photos resampled (``photo_bootstrap95``): items on one photo are not
independent. ``--split tune2`` and ``--split fresh2`` are ZXing photos annotated later still (barcodes, QR codes and
other 2-D codes, every code of a photo): ``tune2`` (upca-5, rss14-2) for choosing among bar networks, ``fresh2``
(QR codes: qrcode-1, -2, -4, -5, -6; linear: ean13-1, upca-4, itf-1, codabar-1; 2-D: datamatrix-1, pdf417-2,
aztec-2) for evaluation only. Their text is not annotated, so they have no ``changed_outside``; instead
``code_mask_outside`` is the share of their pixels outside every annotated code that the code boxes' mask (barcodes
and 2-D codes found, text left out) covers.
``--split parcels`` reports 7 phone photos of whole parcels (TAMPAR's 4032x3024 photos and a quaggaJS close-up),
every kind annotated by eye before any detector ran on them, for evaluation only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from common import OUT, SAMPLES, photo_bootstrap, wilson
from label_redaction_data import ANNOTATIONS, from_mirror, materialise, photo_path

from services.faces.masks import anonymize, mask
from services.redaction.bar_network import shared_bar_network
from services.redaction.labels import (
    KINDS,
    MASK_SCALE,
    MASK_SHAPE,
    LabelBox,
    as_array,
    find_labels,
    frame_from_bytes,
)
from services.redaction.text import shared_text_detector

CODEFREE = ("falsepositives", "falsepositives-2")  # ZXing's photos of carpets, grilles and pages: no code in them
CODEFREE_DIR = OUT / "labels_codefree"
COVER = 0.9  # share of an annotated box inside the mask for it to count as hidden
ALL_KINDS = (*KINDS, "other_2d")


def label_mask(boxes: list[LabelBox], *, width: int, height: int) -> np.ndarray:
    """Where the redaction mask of ``boxes`` falls on a width x height frame, as the faces job draws it (bool, H x W).
    Raises nothing."""
    return mask(as_array(boxes), width=width, height=height, shape=MASK_SHAPE, scale=MASK_SCALE) > 0


def resized(frame: np.ndarray, photo: dict, *, scale: float) -> tuple[np.ndarray, dict]:
    """The frame and its annotated boxes resized by ``scale`` (area averaging down, bicubic up), as a photo taken
    with a camera of fewer or more pixels would show them. Raises nothing."""
    if scale == 1.0:
        return frame, photo
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    boxes = [[kind, *(int(round(v * scale)) for v in box)] for kind, *box in photo["boxes"]]
    return frame, {**photo, "boxes": boxes}


def turned(frame: np.ndarray, photo: dict, *, quarters: int) -> tuple[np.ndarray, dict]:
    """The frame and its boxes turned ``quarters`` quarter turns clockwise: a label stuck sideways on a parcel, or a
    photo whose camera was held sideways (and whose orientation tag was lost). Raises nothing."""
    for _ in range(quarters % 4):
        height = frame.shape[0]
        frame = np.ascontiguousarray(np.rot90(frame, k=-1))
        boxes = [[kind, height - y2, x1, height - y1, x2] for kind, x1, y1, x2, y2 in photo["boxes"]]
        photo = {**photo, "boxes": boxes}
    return frame, photo


def backgrounds() -> list[Path]:
    """The review sample photos of people (full and half length: no label on them), for ``on_canvas``."""
    return sorted(p for cls in ("full_length", "half_length") for p in (SAMPLES / cls).glob("*")
                  if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def on_canvas(frame: np.ndarray, photo: dict, *, canvas: int, index: int) -> tuple[np.ndarray, dict]:
    """The frame placed, at its own size, on a scene ``canvas`` pixels across its longer side (a review sample photo
    of people, enlarged; the ``index``-th, and a place that moves with ``index``), its boxes moved with it: the same
    label, the same number of pixels across, in a photo that shows more around it, as a phone's 12-megapixel photo
    of a whole parcel does (4032 px). A frame already that large, or ``canvas`` 0, is left as it is."""
    height, width = frame.shape[:2]
    if not canvas or max(height, width) >= canvas:
        return frame, photo
    factor = canvas / max(height, width)
    size = (round(width * factor), round(height * factor))
    scenes = backgrounds()
    scene = frame_from_bytes(scenes[index % len(scenes)].read_bytes())
    out = cv2.resize(scene, size, interpolation=cv2.INTER_LINEAR)
    x = int((size[0] - width) * ((index * 37) % 101) / 100)
    y = int((size[1] - height) * ((index * 61) % 101) / 100)
    out[y:y + height, x:x + width] = frame
    boxes = [[kind, x1 + x, y1 + y, x2 + x, y2 + y] for kind, x1, y1, x2, y2 in photo["boxes"]]
    return out, {**photo, "boxes": boxes}


def score(photos: list[dict], *, path: Callable[[dict], Path] = photo_path, scale: float = 1.0,
          canvas: int = 0, quarters: int = 0) -> dict:
    """Recall per kind, changed_outside and timings over ``photos`` (each read from ``path(photo)``, resized with its
    boxes by ``scale``, then placed on a scene ``canvas`` pixels across, ``on_canvas``, then turned ``quarters``
    quarter turns clockwise, ``turned``)."""
    found, total, missed = Counter(), Counter(), []
    cut_found, cut_total = Counter(), Counter()  # codes cut by the photo's edge, where the annotations say which
    changed = outside = 0
    code_masked = code_outside = 0  # photos whose every code is annotated: code boxes' mask outside the codes
    seconds = []
    per_photo = {kind: [] for kind in ALL_KINDS}  # (hidden, annotated) a photo: items on one are not independent
    detector = shared_text_detector()  # loaded once, outside the timings
    shared_bar_network()  # likewise
    for index, photo in enumerate(photos):
        frame, photo = resized(frame_from_bytes(path(photo).read_bytes()), photo, scale=scale)
        frame, photo = on_canvas(frame, photo, canvas=canvas, index=index)
        frame, photo = turned(frame, photo, quarters=quarters)
        height, width = frame.shape[:2]
        start = time.perf_counter()
        boxes = find_labels(frame, text_detector=detector)
        seconds.append(time.perf_counter() - start)
        hidden = label_mask(boxes, width=width, height=height)
        annotated = np.zeros((height, width), dtype=bool)
        before = found.copy(), total.copy()
        for index, (kind, x1, y1, x2, y2) in enumerate(photo["boxes"]):
            x1, y1, x2, y2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
            annotated[y1:y2, x1:x2] = True
            total[kind] += 1
            cut = index in photo.get("cut", ())
            cut_total[kind] += cut
            if hidden[y1:y2, x1:x2].mean() >= COVER:
                found[kind] += 1
                cut_found[kind] += cut
            else:
                missed.append({"photo": photo["id"], "kind": kind, "box": [x1, y1, x2, y2],
                               "covered": round(float(hidden[y1:y2, x1:x2].mean()), 2)})
        for kind in ALL_KINDS:
            per_photo[kind].append((found[kind] - before[0][kind], total[kind] - before[1][kind]))
        if "other_2d" in photo.get("kinds", ()):  # every code of the photo annotated (text not)
            codes = [b for b in boxes if b.kind != "text"]
            on = label_mask(codes, width=width, height=height)
            code_masked += int((on & ~annotated).sum())
            code_outside += int((~annotated).sum())
        if photo["complete"]:
            out = anonymize(frame, as_array(boxes), shape=MASK_SHAPE, mask_scale=MASK_SCALE)
            diff = (out != frame).any(axis=2)
            changed += int((diff & ~annotated).sum())
            outside += int((~annotated).sum())
    recall = {k: (round(found[k] / total[k], 4) if total[k] else None) for k in ALL_KINDS}
    return {"photos": len(photos), "recall": recall, "found": {k: found[k] for k in ALL_KINDS},
            "annotated": {k: total[k] for k in ALL_KINDS}, "wilson95": {k: wilson(found[k], total[k]) for k in ALL_KINDS},
            "photo_bootstrap95": {k: photo_bootstrap(per_photo[k]) for k in ALL_KINDS},
            "changed_outside": round(changed / outside, 4) if outside else None,
            "code_mask_outside": round(code_masked / code_outside, 4) if code_outside else None,
            "complete_photos": sum(1 for p in photos if p["complete"]),
            "cut": {k: [cut_found[k], cut_total[k]] for k in ALL_KINDS if cut_total[k]},
            "seconds_per_photo": round(float(np.mean(seconds)), 3) if seconds else None, "missed": missed}


def codefree_photos(mirrors: Path = Path("/work/.mirror")) -> list[Path]:
    """ZXing's photos of things that are not codes (CODEFREE folders at the annotations' pinned commit: carpets, grilles,
    printed pages, binders), copied into benchmarks/out/labels_codefree/ once. Raises SystemExit when the mirror
    cannot be read."""
    spec = json.loads(ANNOTATIONS.read_text())["sources"]["zxing"]
    git = ["git", "--git-dir", str(mirrors / "zxing+zxing" / "repo")]
    CODEFREE_DIR.mkdir(parents=True, exist_ok=True)
    out = []
    for folder in CODEFREE:
        run = subprocess.run([*git, "ls-tree", "--name-only", f"{spec['commit']}:{spec['folder']}/{folder}"],
                             capture_output=True, text=True, check=False)
        if run.returncode:
            raise SystemExit(f"cannot list {folder} in the ZXing mirror: {run.stderr.strip()}")
        for name in sorted(n for n in run.stdout.split() if n.lower().endswith((".png", ".jpg", ".jpeg"))):
            target = CODEFREE_DIR / f"{folder}_{name}"
            if not target.exists():
                target.write_bytes(from_mirror(mirrors, spec, f"{spec['folder']}/{folder}/{name}"))
            out.append(target)
    return out


def codefree(paths: list[Path]) -> dict:
    """On photos without a code: how many get a barcode or QR box, and the share of their pixels the mask covers."""
    marked = covered = pixels = 0
    for path in paths:
        frame = frame_from_bytes(path.read_bytes())
        height, width = frame.shape[:2]
        boxes = find_labels(frame, kinds=("barcode", "qr"))
        marked += bool(boxes)
        covered += int(label_mask(boxes, width=width, height=height).sum())
        pixels += width * height
    return {"photos": len(paths), "photos_marked": marked, "share_masked": round(covered / pixels, 4)}


def network_boxes(groups: dict[str, list[Path]]) -> dict:
    """False boxes of the bar network alone, by group of photos that hold no code (the review sample photos by class,
    the code-free photos): how many get a bar box, how many a 2-D box, and the share of their pixels the network's
    boxes cover (its boxes drawn as they are, not grown by the masks)."""
    network = shared_bar_network()
    out = {}
    for name, paths in groups.items():
        bars = matrices = 0
        shares = []
        for path in paths:
            gray = cv2.cvtColor(frame_from_bytes(path.read_bytes()), cv2.COLOR_RGB2GRAY)  # as find_labels reads it
            linear, squares = network.codes(gray)
            bars, matrices = bars + bool(len(linear)), matrices + bool(len(squares))
            covered = np.zeros(gray.shape, bool)
            for x1, y1, x2, y2, _ in np.concatenate([linear, squares]):
                covered[int(y1):int(y2), int(x1):int(x2)] = True
            shares.append(covered.mean())
        out[name] = {"photos": len(paths), "with_bar_box": bars, "with_2d_box": matrices,
                     "share": round(float(np.mean(shares)), 4) if shares else None}
    return out


def masked(groups: dict[str, list[Path]]) -> dict:
    """The whole label search on groups of photos (the review sample photos by class, the code-free photos): boxes
    of each kind per photo and the mean share of a photo's pixels the mask covers. On people, garments and
    code-free photos every box is a false one; package photos hold some labels."""
    detector = shared_text_detector()
    out = {}
    for name, paths in groups.items():
        counts, shares = Counter(), []
        for path in paths:
            frame = frame_from_bytes(path.read_bytes())
            boxes = find_labels(frame, text_detector=detector)
            counts.update(b.kind for b in boxes)
            shares.append(float(label_mask(boxes, width=frame.shape[1], height=frame.shape[0]).mean()))
        out[name] = {"photos": len(paths), **{f"{kind}_boxes": counts[kind] for kind in KINDS},
                     "share_masked": round(float(np.mean(shares)), 4) if shares else None}
    return out


def report(name: str, result: dict, *, misses: bool) -> None:
    print(f"== {name}: {result['photos']} photos ({result['complete_photos']} annotated completely), "
          f"{result['seconds_per_photo']} s a photo")
    for kind in ALL_KINDS:
        if result["annotated"][kind]:
            low, high = result["wilson95"][kind]
            by_photo = result["photo_bootstrap95"][kind]
            resampled = f"{by_photo[0]:.3f}-{by_photo[1]:.3f}" if by_photo[0] is not None else "- (under 10 photos)"
            print(f"  {kind:9s} {result['found'][kind]:3d} / {result['annotated'][kind]:3d} hidden  recall "
                  f"{result['recall'][kind]:.3f}  (95% {low:.3f}-{high:.3f}; photos resampled {resampled})")
    for kind, (hit, of) in result["cut"].items():
        print(f"  {kind:9s} cut by the photo's edge: {hit} / {of} hidden; whole: {result['found'][kind] - hit} / "
              f"{result['annotated'][kind] - of}")
    print(f"  changed outside the annotated boxes: {result['changed_outside']}")
    if result["code_mask_outside"] is not None:
        print(f"  code boxes' mask outside the annotated codes: {result['code_mask_outside']:.2%} of those pixels")
    for miss in result["missed"] if misses else []:  # the test part's misses only when asked: not to tune on
        print(f"  missed {miss['kind']} in {miss['photo']} at {miss['box']} ({miss['covered']:.0%} covered)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the test part only")
    splits = ("test", "tune", "all", "fresh", "waybills", "tune2", "fresh2", "parcels")
    parser.add_argument("--split", choices=splits, default="test",
                        help="the part reported last (fresh: ZXing photos, barcodes and QR codes only; waybills: real "
                             "shipping labels, every kind; tune2 and fresh2: more ZXing photos, "
                             "every code; parcels: whole parcels photographed as customers do, every kind)")
    parser.add_argument("--set", choices=("all", "original", "added"), default="all", help="which photos")
    parser.add_argument("--show-test-misses", action="store_true",
                        help="also list what the test part missed (the tune part's misses are always listed)")
    parser.add_argument("--codefree", action="store_true",
                        help="only: barcode and QR boxes on ZXing's 47 photos of carpets, grilles and pages (no code)")
    parser.add_argument("--network-boxes", action="store_true",
                        help="only: the bar network's boxes alone on the review sample photos (by class) and the "
                             "code-free photos, which hold no code (tuning its minimum scores)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="resize each photo and its boxes by this factor first (0.5: half the pixels across)")
    parser.add_argument("--masked", action="store_true",
                        help="only: the whole search's boxes and masked share on the review sample photos (by class) "
                             "and the code-free photos")
    parser.add_argument("--canvas", type=int, default=0, metavar="PIXELS",
                        help="place each photo smaller than this, at its own size, on a scene this many pixels across "
                             "(4032: a phone's photo of a whole parcel, the label as small in the frame)")
    parser.add_argument("--turn", type=int, default=0, choices=(0, 1, 2, 3), metavar="QUARTERS",
                        help="turn each photo and its boxes this many quarter turns clockwise (a label stuck sideways)")
    args = parser.parse_args()
    if args.canvas < 0 or (args.canvas and (args.masked or args.network_boxes or args.codefree)):
        parser.error("--canvas must be at least 0, and applies to the annotated sets only")
    if args.turn and (args.masked or args.network_boxes or args.codefree):
        parser.error("--turn applies to the annotated sets only (not --masked, --network-boxes or --codefree)")
    if args.scale <= 0 or (args.scale != 1.0 and (args.masked or args.network_boxes or args.codefree)):
        parser.error("--scale must be above 0, and applies to the annotated sets only (not --masked, --network-boxes "
                     "or --codefree)")
    if args.masked or args.network_boxes:
        photos = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        groups = {cls: [p for p in photos if p.parent.name == cls] for cls in sorted({p.parent.name for p in photos})}
        groups["codefree"] = codefree_photos()
    if args.masked:
        result = masked(groups)
        for name, row in result.items():
            print(f"== {name}: {row['photos']} photos, " + ", ".join(f"{row[k + '_boxes']} {k}" for k in KINDS)
                  + f" boxes, {row['share_masked']:.2%} of a photo masked on average")
        print(json.dumps({"masked": result}))
        return
    if args.network_boxes:
        result = network_boxes(groups)
        for name, row in result.items():
            print(f"== {name}: {row['with_bar_box']} / {row['photos']} with a bar box, {row['with_2d_box']} with a 2-D "
                  f"box, {row['share']:.2%} of their pixels in the network's boxes")
        print(json.dumps({"network_boxes": result}))
        return
    if args.codefree:
        result = codefree(codefree_photos())
        print(f"== photos without a code: {result['photos_marked']} / {result['photos']} given a barcode or QR box, "
              f"{result['share_masked']:.2%} of their pixels masked")
        print(json.dumps({"codefree": result}))
        return
    photos = [p for p in materialise_default()
              if args.set == "all" or p["split"] in ("fresh", "waybills", "tune2", "fresh2", "parcels")
              or (args.set == "added") == bool(p.get("added"))]
    parts = {name: [p for p in photos if p["split"] == name] for name in splits if name != "all"}
    parts["all"] = parts["tune"] + parts["test"]
    if not args.quick and args.split != "tune":
        tune = score(parts["tune"], scale=args.scale, canvas=args.canvas, quarters=args.turn)
        report("tune (settings chosen here)", tune, misses=True)
    result = score(parts[args.split], scale=args.scale, canvas=args.canvas, quarters=args.turn)
    report(args.split, result, misses=args.split in ("tune", "tune2") or args.show_test_misses)
    print(json.dumps({"photos": result["photos"], "split": args.split, "set": args.set, "scale": args.scale,
                      "canvas": args.canvas, "turn": args.turn,
                      "recall_barcode": result["recall"]["barcode"], "recall_qr": result["recall"]["qr"],
                      "recall_text": result["recall"]["text"], "changed_outside": result["changed_outside"],
                      "counts": {k: [result["found"][k], result["annotated"][k]] for k in ALL_KINDS},
                      "wilson95_low": {k: result["wilson95"][k][0] for k in ALL_KINDS},
                      "photo_bootstrap95_low": {k: result["photo_bootstrap95"][k][0] for k in ALL_KINDS},
                      "recall_other_2d": result["recall"]["other_2d"],
                      "code_mask_outside": result["code_mask_outside"],
                      "seconds_per_photo": result["seconds_per_photo"]}))


def materialise_default() -> list[dict]:
    return materialise(Path("/work/.mirror"))


if __name__ == "__main__":
    main()

"""Dataset filter labels on the shared sample photos: does "person" keep the photos with people, do "shoe",
"bag", "box" and "clothing" keep the photos that show them?

    python benchmarks/filter_labels.py [--quick] [--write-calibration] [--threshold 0.8]

``benchmarks/filter_labels.csv`` says, for each of the 60 photos of ../shared/samples/reviews and the 76 of
../shared/samples/faces, whether it shows a person, a shoe, a bag, clothing, a box (labelled here by looking at
every photo; a shoe or a bag counts when one can be made out, clothing when garments are seen, worn or laid out).
The **tuning** part is the review photos on even rows of that file (0, 2, ...: 30 photos of people, garments and
parcels); the **report** part is the other 30 review photos and all 76 face photos (a set never tuned on, all of
people: crowds, close-ups, masks).

- Full run: the local detector scores all 60; each label's calibration (Platt scaling of its raw score,
  ``services.dataset_filter.calibration``) is fitted on the tuning part only, and precision and recall are
  reported on the report part only, at the threshold (default 0.8, the job's default) and at 0.5, for the whole
  report part, and for its review photos alone (``reviews``: the photos the issue was found on) and its face
  photos alone (``faces``).
  ``--write-calibration`` stores the fitted calibration in services/dataset_filter/data/label_calibration.json.
  The tuning part's own figures (``tuning_at_threshold``, and ``tuning_log_loss``: the calibrated confidences'
  log-loss on the photos they were fitted on) are printed too: they are what a choice of evidence is made on,
  never the report part's.
- ``--quick``: only the report part, scored with the committed calibration.

Bag has an extra **tuning** set: ``benchmarks/filter_bags/labels.csv``, 189 labelled public COCO photos (21 with a
bag), materialised by ``benchmarks/filter_bags_data.py``. A full run adds them to the tuning part for bag only (its
calibration and ``tuning_*`` figures: 219 photos, 23 with a bag, instead of 30 with 2); the other labels are not
labelled on them. They never enter the report part. ``--no-extra-bags`` fits bag on the 30 alone (and is needed
when the extra photos are not materialised).

Each figure comes with its counts (kept, right, showing, wrongly kept of those not showing) and Wilson 95% bounds
on precision and recall (``precision_95``, ``recall_95``): the report part has 4 bag and 4 box photos, where one
photo moves recall by 0.25.

"before" is the detector this replaced, on the same report photos: the WordNet ImageNet sum at the threshold.
The last line is one JSON object: labels, precision, recall (per label, at the threshold), and the details.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time

from common import OUT, ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LABELS = ("person", "shoe", "bag", "clothing", "box")
CSV = ROOT / "benchmarks" / "filter_labels.csv"
SHARED = ROOT.parent / "shared" / "samples"


def read_labels() -> list[dict]:
    """The labelled rows, each with its part (tuning: a review photo on an even row; report: every other)."""
    with open(CSV, newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["part"] = "tuning" if row["photo"].startswith("reviews/") and i % 2 == 0 else "report"
        for label in LABELS:
            row[label] = row[label] == "1"
    return rows


def score(rows: list[dict]) -> tuple[dict[str, list[float]], dict[str, list[float]], float]:
    """Raw scores of the current detector and the WordNet-sum scores of the one it replaced, per label."""
    from services.dataset_filter.imagenet_hierarchy import load
    from services.dataset_filter.local_detector import LocalImageNetDetector

    detector = LocalImageNetDetector(models_dir=OUT / "models")
    datas = [(SHARED / row["photo"]).read_bytes() for row in rows]
    detector.detect_many(datas[:2], wanted=list(LABELS))  # warm up the models
    start = time.perf_counter()
    found = detector.detect_many(datas, wanted=list(LABELS))
    seconds = time.perf_counter() - start
    raw = {label: [float(f[label].raw if f[label].raw is not None else f[label].confidence) for f in found]
           for label in LABELS}
    hierarchy = load()
    probs = detector.probabilities([detector.prepare(d) for d in datas])
    before = {label: [float(min(1.0, p[hierarchy.class_ids(label)].sum())) for p in probs] for label in LABELS}
    return raw, before, seconds


def score_extra_bags() -> tuple[list[float], list[bool]]:
    """Bag's raw scores and labels on the extra tuning set (benchmarks/filter_bags). Raises SystemExit when its
    photos are not materialised."""
    import filter_bags_data

    from services.dataset_filter.local_detector import LocalImageNetDetector

    rows = filter_bags_data.read_rows()
    missing = [r["id"] for r in rows if not filter_bags_data.photo_path(r).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} extra bag photos missing: run benchmarks/filter_bags_data.py "
                         f"(or pass --no-extra-bags)")
    detector = LocalImageNetDetector(models_dir=OUT / "models")
    found = detector.detect_many([filter_bags_data.photo_path(r).read_bytes() for r in rows], wanted=["bag"])
    return [float(f["bag"].raw) for f in found], [bool(r["bag"]) for r in rows]


def wilson(hits: int, n: int, *, z: float = 1.96) -> list[float] | None:
    """Wilson score interval (95%) of a proportion hits / n, or None when n is 0: with 4 bag photos a recall
    of 0.5 is anything from 0.15 to 0.85."""
    if n == 0:
        return None
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def figures(conf: list[float], truth: list[bool], threshold: float) -> dict:
    kept = [c >= threshold for c in conf]
    tp = sum(k and t for k, t in zip(kept, truth))
    n_kept, n_pos = sum(kept), sum(truth)
    return {"kept": n_kept, "true_kept": tp, "showing": n_pos, "photos": len(truth),
            "precision": round(tp / n_kept, 3) if n_kept else None, "recall": round(tp / n_pos, 3) if n_pos else None,
            "precision_95": wilson(tp, n_kept), "recall_95": wilson(tp, n_pos),
            "false_kept": n_kept - tp, "not_showing": len(truth) - n_pos}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the report part only, with the committed calibration")
    ap.add_argument("--write-calibration", action="store_true", help="store the calibration fitted on the tuning part")
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--no-extra-bags", action="store_true",
                    help="fit bag on the 30 tuning photos alone, without benchmarks/filter_bags")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(json.dumps({"error": f"{SHARED} not found: the labelled sample photos are needed"}))
        return 1
    from services.dataset_filter import calibration

    rows = read_labels()
    if args.quick:
        rows = [r for r in rows if r["part"] == "report"]
    raw, before, seconds = score(rows)
    tuning = [i for i, r in enumerate(rows) if r["part"] == "tuning"]
    report = [i for i, r in enumerate(rows) if r["part"] == "report"]
    extra: dict[str, tuple[list[float], list[bool]]] = {}  # label -> extra tuning raws and labels
    if not args.quick and not args.no_extra_bags:
        extra["bag"] = score_extra_bags()
    if args.quick:
        cals = {label: calibration.load()[label] for label in LABELS}
    else:
        cals = {label: calibration.fit([raw[label][i] for i in tuning] + extra.get(label, ([], []))[0],
                                       present=[rows[i][label] for i in tuning] + extra.get(label, ([], []))[1],
                                       label=label)
                for label in LABELS}
        if args.write_calibration:
            calibration.write(list(cals.values()), fitted_on=(
                f"benchmarks/filter_labels.py: the tuning part of benchmarks/filter_labels.csv (the review photos on "
                f"its even rows, {len(tuning)} photos)"
                + (f", for bag also the {len(extra['bag'][0])} labelled COCO photos of benchmarks/filter_bags"
                   if "bag" in extra else "")
                + "; reported on the other review photos and the face photos"))
    reviews = [i for i in report if rows[i]["photo"].startswith("reviews/")]
    faces = [i for i in report if rows[i]["photo"].startswith("faces/")]
    out: dict = {"labels": list(LABELS), "threshold": args.threshold, "precision": {}, "recall": {},
                 "tuning_photos": len(tuning), "report_photos": len(report), "at_threshold": {}, "at_0.5": {},
                 "reviews_at_threshold": {}, "faces_at_threshold": {}, "before_at_threshold": {}, "calibration": {},
                 "tuning_at_threshold": {}, "tuning_log_loss": {}, "seconds_per_photo": round(seconds / len(rows), 3),
                 "extra_tuning_photos": {label: len(v[0]) for label, v in extra.items()}}
    print(f"{len(rows)} photos scored ({seconds / len(rows) * 1000:.0f} ms each); tuning {len(tuning)}, "
          f"report {len(report)}; figures on the report part", flush=True)
    for label in LABELS:
        cal = cals[label]
        truth = [rows[i][label] for i in report]
        conf = [cal.apply(raw[label][i]) for i in report]
        at, half = figures(conf, truth, args.threshold), figures(conf, truth, 0.5)
        old = figures([before[label][i] for i in report], truth, args.threshold)
        for name, part in (("reviews", reviews), ("faces", faces)):
            out[f"{name}_at_threshold"][label] = figures([cal.apply(raw[label][i]) for i in part],
                                                         [rows[i][label] for i in part], args.threshold)
        out["precision"][label], out["recall"][label] = at["precision"], at["recall"]
        out["at_threshold"][label], out["at_0.5"][label], out["before_at_threshold"][label] = at, half, old
        out["calibration"][label] = {"slope": cal.slope, "intercept": cal.intercept, "photos": cal.photos,
                                     "positives": cal.positives}
        if tuning:
            tuned = [cal.apply(raw[label][i]) for i in tuning] + [cal.apply(r) for r in extra.get(label, ([], []))[0]]
            shown = [rows[i][label] for i in tuning] + extra.get(label, ([], []))[1]
            out["tuning_at_threshold"][label] = tune = figures(tuned, shown, args.threshold)
            out["tuning_log_loss"][label] = round(-sum(math.log(max(1e-9, c if t else 1.0 - c))
                                                       for c, t in zip(tuned, shown)), 3)
            print(f"{label:9s} tuning part (fitted on, {len(shown)} photos): kept {tune['kept']} ({tune['true_kept']} "
                  f"right) of {tune['showing']} at {args.threshold:g}, log-loss {out['tuning_log_loss'][label]}",
                  flush=True)
        print(f"{label:9s} at {args.threshold:g}: kept {at['kept']:2d} ({at['true_kept']} right) of "
              f"{at['showing']:2d} showing it: precision {at['precision']} (95% {at['precision_95']}), recall "
              f"{at['recall']} (95% {at['recall_95']}); wrongly kept {at['false_kept']} of {at['not_showing']} "
              f"not showing it | at 0.5: kept "
              f"{half['kept']}, precision {half['precision']}, recall {half['recall']} | before: kept {old['kept']}",
              flush=True)
        misses = [rows[i]["photo"] for i, c, t in zip(report, conf, truth) if t and c < args.threshold]
        wrong = [rows[i]["photo"] for i, c, t in zip(report, conf, truth) if not t and c >= args.threshold]
        if misses or wrong:
            print(f"          missed: {', '.join(m.rsplit('/', 1)[-1][:28] for m in misses) or '-'}; "
                  f"wrongly kept: {', '.join(w.rsplit('/', 1)[-1][:28] for w in wrong) or '-'}", flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

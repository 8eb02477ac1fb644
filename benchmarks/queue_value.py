"""Which order of the human queue teaches the model fastest: a labelling simulation with the console's own code.

    python benchmarks/queue_value.py [--quick] [--pool DIR] [--batch 20] [--hours 24] [--arrival-hours 24] [--copies 0.3]

Start: the 60 labelled photos of ../shared/samples/reviews (a folder per class) train the first head. The pool:
a folder per class (``--pool``; default benchmarks/out/train_set, the training set in progress, when it exists,
else the seed's own photos re-split with a fixed seed, said so in the output; the unseen set is reserved for
reporting and is used only when passed explicitly). A fixed-seed share of the pool (``--eval-share``, split by the
manifest's groups so near copies stay together) is held out for evaluation and never labelled; the rest is the
backlog, submitted over ``--arrival-hours``. Each round, as the console does: the head is retrained on every
label (``services.models.training.cross_validate`` for the out-of-fold figures, temperature and certified
thresholds, ``services.models.head.fit_head`` for the model; embeddings and person cues from
``services.models.features.FeatureExtractor``, cached in benchmarks/out/queue_value_features.npz); the backlog
is re-scored (``services.reviews.rescore``: photos at or over their certified threshold are decided
automatically and leave the queue); then an inspector labels the next ``--batch`` photos of the queue in the
order under test:

- oldest first: ``queue_value_hours`` = 0;
- uncertainty: the console's rank, ``services.reviews.queue_value.queue_rank`` at ``--hours``;
- uncertainty + diversity: the same, and of the next ``services.hitl.queue.SHORTLIST`` photos the first not
  near-identical (``services.hitl.diversity.NEAR_IDENTICAL``) to one of the latest ``--recent`` labels (ten
  minutes at ten seconds a label).

Reported after each batch: the certified automatic share at 98% on the labelled set's out-of-fold predictions
(what the console would certify; ``oof_metrics(...)["at_target"]["automatic_share"]``), the top-1 accuracy on the
held-out part, and, on the held-out part, the share the certified thresholds decide automatically with its
accuracy; also the share at the point-estimate thresholds (not certified, an earlier signal). ``--copies``
adds reposted near copies (slightly cropped, rescaled, re-encoded) of a share of the backlog, as a queue with
reused photos has: the case the diversity step is for. Per ordering: the labels needed to reach certified
shares of 25%, 50% and 76% (null if the pool runs out first), the mean held-out top-1 over the curve, and the
curve. The last line is one JSON object. Photos in shared/holdout are never read.

Note: benchmarks/unseen/README.md reserves the unseen set for reporting: passed as ``--pool``, throwaway heads are
fitted in memory on its backlog part (nothing is saved or shipped), and no setting may be chosen from those figures.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT, ROOT, SAMPLES

from services.core.config import CLASSES
from services.hitl.diversity import NEAR_IDENTICAL
from services.hitl.queue import SHORTLIST
from services.models.certify import temper
from services.models.evaluation import TARGET_ACCURACY, check_counts
from services.models.head import fit_head
from services.models.training import cross_validate
from services.reviews.queue_value import queue_rank

SEED = 20260415
UNSEEN = OUT / "unseen"
TRAIN_SET = OUT / "train_set"
CACHE = OUT / "queue_value_features.npz"
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SHARES = (0.25, 0.50, 0.76)
ORDERINGS = ("oldest_first", "uncertainty", "uncertainty_diversity")
T0 = 1_780_000_000.0  # the backlog's first submission (epoch seconds); only differences matter


@dataclass
class Data:
    paths: list[Path]
    y: np.ndarray
    emb: np.ndarray
    cues: np.ndarray
    seed: np.ndarray  # indices labelled at the start
    backlog: np.ndarray  # indices waiting in the queue
    held_out: np.ndarray  # indices never labelled, for evaluation
    submitted: np.ndarray  # per index, epoch seconds (backlog only)
    source: str


def folder_photos(root: Path) -> list[tuple[Path, str]]:
    return [(p, c) for c in CLASSES for p in sorted((root / c).glob("*")) if p.suffix.lower() in SUFFIXES]


def features(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, person cues) as training computes them, cached by each file's sha256."""
    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if CACHE.exists():
        with np.load(CACHE) as z:
            known = {s: (e, c) for s, e, c in zip(z["sha"].tolist(), z["emb"], z["cues"])}
    missing = [i for i, s in enumerate(shas) if s not in known]
    if missing:
        import tempfile

        from services.core.config import Workspace
        from services.models.features import CUES_SIDE, FeatureExtractor

        print(f"features: computing {len(missing)} photos (cached after this run)", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            extractor = FeatureExtractor.shared(Workspace.open(tmp).models_dir)
            for start in range(0, len(missing), 16):
                part = missing[start:start + 16]
                data = [paths[i].read_bytes() for i in part]
                emb = extractor.embed([FeatureExtractor.decode(d, max_pixels=80_000_000) for d in data])
                cues = extractor.cues([FeatureExtractor.decode(d, max_pixels=80_000_000, side=CUES_SIDE) for d in data])
                known.update({shas[i]: (e, c) for i, e, c in zip(part, emb, cues)})
        OUT.mkdir(parents=True, exist_ok=True)
        keys = sorted(known)
        np.savez(CACHE, sha=np.array(keys), emb=np.stack([known[k][0] for k in keys]),
                 cues=np.stack([known[k][1] for k in keys]))
    return np.stack([known[s][0] for s in shas]), np.stack([known[s][1] for s in shas])


def groups_of(paths: list[Path], *, pool: Path) -> list[str]:
    """Near-copy groups from the manifest of a set materialised in benchmarks/out/<name>/ (benchmarks/<name>/
    manifest.csv, whose ids are the file stems: unseen, train_set); else one group per photo."""
    groups: dict[str, str] = {}
    manifest = ROOT / "benchmarks" / pool.resolve().name / "manifest.csv"
    if pool.resolve().parent == OUT.resolve() and manifest.exists():
        groups = {row["id"]: row["group"] for row in csv.DictReader(manifest.open())}
    return [groups.get(p.stem, str(p)) for p in paths]


def split(labels: list[str], groups: list[str], share: float, rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(kept, held out): about ``share`` of each class's groups held out, whole groups at a time."""
    kept, held = [], []
    for cls in CLASSES:
        names = sorted({g for g, c in zip(groups, labels) if c == cls})
        out = set(rng.permutation(names)[: round(share * len(names))].tolist())
        for i, (g, c) in enumerate(zip(groups, labels)):
            if c == cls:
                (held if g in out else kept).append(i)
    return kept, held


def load(args: argparse.Namespace) -> Data:
    """The seed, the backlog and the held-out part, with features; NEVER reads shared/holdout."""
    rng = np.random.default_rng(SEED)
    seed_photos = folder_photos(SAMPLES)
    if not seed_photos:
        raise SystemExit(f"no labelled seed photos in {SAMPLES}/<class>/")
    pool_dir = args.pool or (TRAIN_SET if TRAIN_SET.is_dir() else None)
    if pool_dir is not None and "holdout" in Path(pool_dir).resolve().parts:
        raise SystemExit("shared/holdout is reserved: never read here")
    if pool_dir is not None:
        seen = {hashlib.sha256(p.read_bytes()).hexdigest() for p, _ in seed_photos}
        pool_photos = [(p, c) for p, c in folder_photos(Path(pool_dir))
                       if hashlib.sha256(p.read_bytes()).hexdigest() not in seen]  # a seed photo is not unlabelled
        source = f"pool {pool_dir} ({len(pool_photos)} photos), seed {SAMPLES} ({len(seed_photos)} photos)"
        if Path(pool_dir).resolve() == UNSEEN.resolve():
            source += " [the unseen set is reserved for reporting: choose no setting from these figures]"
        seed_part = seed_photos
    else:  # the seed re-split: a third of each class stays the seed, the rest becomes the pool
        by_class = {c: [x for x in seed_photos if x[1] == c] for c in CLASSES}
        order = {c: rng.permutation(len(v)).tolist() for c, v in by_class.items()}
        seed_part = [by_class[c][i] for c in CLASSES for i in order[c][: len(order[c]) // 3]]
        pool_photos = [by_class[c][i] for c in CLASSES for i in order[c][len(order[c]) // 3:]]
        source = (f"NO POOL FOLDER: the seed's {len(seed_photos)} photos re-split with a fixed seed: "
                  f"{len(seed_part)} seed, {len(pool_photos)} pool")
    paths = [p for p, _ in seed_part] + [p for p, _ in pool_photos]
    labels = [c for _, c in seed_part] + [c for _, c in pool_photos]
    emb, cues = features(paths)
    n_seed = len(seed_part)
    pool_idx = list(range(n_seed, len(paths)))
    kept, held = split([labels[i] for i in pool_idx], groups_of([paths[i] for i in pool_idx], pool=Path(pool_dir or SAMPLES)),
                       args.eval_share, rng)
    backlog = [pool_idx[i] for i in kept]
    if args.quick:  # half the backlog, by the same fixed seed
        backlog = sorted(rng.permutation(backlog)[: len(backlog) // 2].tolist())
    if args.copies:  # reposted photos: a near copy of a share of the backlog joins it
        originals = sorted(rng.permutation(backlog)[: round(args.copies * len(backlog))].tolist())
        copies = [repost(paths[i], rng) for i in originals]
        c_emb, c_cues = features(copies)
        backlog += list(range(len(paths), len(paths) + len(copies)))
        paths += copies
        labels += [labels[i] for i in originals]
        emb, cues = np.vstack([emb, c_emb]), np.vstack([cues, c_cues])
        source += f"; {len(copies)} reposted near copies of backlog photos added to it"
    submitted = np.zeros(len(paths))
    submitted[backlog] = T0 + rng.uniform(0, args.arrival_hours * 3600.0, len(backlog))
    return Data(paths, np.array(labels), emb, cues, np.arange(n_seed), np.array(backlog),
                np.array([pool_idx[i] for i in held]), submitted, source)


def repost(path: Path, rng: np.random.Generator) -> Path:
    """A reposted copy of a photo (slightly cropped, rescaled, brightened, re-encoded) in benchmarks/out."""
    from PIL import Image, ImageEnhance, ImageOps

    with Image.open(path) as src:
        im = ImageOps.exif_transpose(src).convert("RGB")
    w, h = im.size
    cut = rng.uniform(0.0, 0.04, 4)
    im = im.crop((int(w * cut[0]), int(h * cut[1]), w - int(w * cut[2]), h - int(h * cut[3])))
    scale = rng.uniform(0.7, 1.0)
    im = im.resize((max(1, int(im.width * scale)), max(1, int(im.height * scale))))
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.92, 1.08))
    out = OUT / "queue_value_copies" / path.parent.name / f"{path.stem}_copy.jpg"
    out.parent.mkdir(parents=True, exist_ok=True)
    im.save(out, "JPEG", quality=int(rng.integers(70, 90)))
    return out


@dataclass
class Model:
    head: Any
    temperature: float
    thresholds: dict[str, float]
    certified_share: float
    point_share: float  # at the point-estimate thresholds (not certified): moves before the certified share does
    oof_accuracy: float


def train(data: Data, labelled: np.ndarray, *, target: float) -> Model:
    """Cross-validate and fit on every label, as ``services.models.training.train`` does."""
    emb, cues, y = data.emb[labelled], data.cues[labelled], data.y[labelled]
    cv = cross_validate(emb, cues, y, folds=check_counts(y, folds=5), c=1.0, target=target)
    return Model(fit_head(emb, y, cues, c=1.0), float(cv["temperature"]), cv["thresholds"],
                 float(cv["at_target"]["automatic_share"]), float(cv["point_estimate"]["automatic_share"]),
                 float(cv["accuracy"]))


def score(model: Model, data: Data, idx: np.ndarray) -> np.ndarray:
    """Calibrated probabilities over CLASSES (the console's ``registry.Calibrated``)."""
    if not len(idx):
        return np.zeros((0, len(CLASSES)))
    proba = model.head.predict_proba(data.emb[idx], lambda rows: data.cues[idx][rows])
    full = np.zeros((len(idx), len(CLASSES)))
    for j, k in enumerate(model.head.classes):
        full[:, CLASSES.index(k)] = proba[:, j]
    return temper(full, model.temperature)


def automatic(model: Model, proba: np.ndarray) -> np.ndarray:
    """Which photos the certified thresholds decide automatically (a threshold of 1.0 decides nothing)."""
    pred = np.array(CLASSES)[proba.argmax(1)]
    limits = np.array([model.thresholds.get(k, 1.0) for k in pred])
    return (limits < 1.0) & (proba.max(1) >= limits)


def choose(ranked: list[int], *, k: int, diverse: bool, recent: list[int], unit: np.ndarray, window: int) -> list[int]:
    """The next ``k`` photos an inspector labels from the queue (``ranked``: queue order)."""
    queue, picks = list(ranked), []
    while queue and len(picks) < k:
        pick = queue[0]
        if diverse and recent:
            seen = unit[recent[-window:]]
            near = [float((seen @ unit[c]).max()) >= NEAR_IDENTICAL for c in queue[:SHORTLIST]]
            pick = next((c for c, n in zip(queue[:SHORTLIST], near) if not n), queue[0])
        picks.append(pick)
        recent.append(pick)
        queue.remove(pick)
    return picks


def simulate(data: Data, ordering: str, args: argparse.Namespace) -> dict[str, Any]:
    """Label batch after batch in ``ordering``; the curve after each retraining."""
    unit = data.emb / np.linalg.norm(data.emb, axis=1, keepdims=True)
    labelled, queue, recent, curve = list(data.seed), list(data.backlog), [], []
    hours = 0.0 if ordering == "oldest_first" else args.hours
    auto_decided = 0
    while True:
        model = train(data, np.array(labelled), target=args.target)
        held = score(model, data, data.held_out)
        held_auto = automatic(model, held)
        pred = np.array(CLASSES)[held.argmax(1)]
        truth = data.y[data.held_out]
        proba = score(model, data, np.array(queue, dtype=int))
        leave = automatic(model, proba) if len(queue) else np.zeros(0, bool)  # re-scoring decides these
        auto_decided += int(leave.sum())
        curve.append({"labels": len(labelled) - len(data.seed), "certified_share": round(model.certified_share, 4),
                      "heldout_top1": round(float((pred == truth).mean()), 4),
                      "heldout_auto_share": round(float(held_auto.mean()), 4),
                      "heldout_auto_accuracy": round(float((pred[held_auto] == truth[held_auto]).mean()), 4)
                      if held_auto.any() else None,
                      "point_share": round(model.point_share, 4), "oof_accuracy": round(model.oof_accuracy, 4),
                      "auto_decided": auto_decided})
        queue = [q for q, gone in zip(queue, leave) if not gone]
        proba = proba[~leave]
        if not queue or len(labelled) - len(data.seed) >= args.max_labels:
            break
        ranks = [queue_rank(submitted=float(data.submitted[q]), probabilities=p, hours=hours) for q, p in zip(queue, proba)]
        ranked = [q for _, q in sorted(zip(ranks, queue))]
        picks = choose(ranked, k=args.batch, diverse=ordering == "uncertainty_diversity", recent=recent, unit=unit,
                       window=args.recent)
        labelled += picks
        queue = [q for q in queue if q not in set(picks)]
    reached = {f"{s:.2f}": next((c["labels"] for c in curve if c["certified_share"] >= s), None) for s in SHARES}
    return {"labels_to_certified_share": reached,
            "mean_heldout_top1": round(float(np.mean([c["heldout_top1"] for c in curve])), 4),  # area under the curve
            "curve": curve}


def near_pairs(data: Data) -> int:
    """Pairs of backlog photos near-identical by the diversity step's measure (how much it can matter here)."""
    unit = data.emb[data.backlog] / np.linalg.norm(data.emb[data.backlog], axis=1, keepdims=True)
    return int(np.triu(unit @ unit.T >= NEAR_IDENTICAL, 1).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="half the backlog (fixed seed)")
    ap.add_argument("--pool", type=Path, default=None, help="a folder per class (default benchmarks/out/train_set)")
    ap.add_argument("--eval-share", type=float, default=0.3, help="share of the pool held out, never labelled")
    ap.add_argument("--batch", type=int, default=20, help="labels between retrainings")
    ap.add_argument("--hours", type=float, default=24.0, help="queue_value_hours for the value orderings")
    ap.add_argument("--arrival-hours", type=float, default=24.0, help="the backlog was submitted over this long")
    ap.add_argument("--recent", type=int, default=60, help="labels that count as recent for diversity")
    ap.add_argument("--copies", type=float, default=0.0, help="add a reposted near copy of this share of the backlog")
    ap.add_argument("--max-labels", type=int, default=10_000, help="stop after this many labels")
    ap.add_argument("--target", type=float, default=TARGET_ACCURACY)
    args = ap.parse_args()
    started = time.perf_counter()
    data = load(args)
    print(f"data: {data.source}; backlog {len(data.backlog)}, held out {len(data.held_out)}, "
          f"seed {len(data.seed)}; near-identical backlog pairs {near_pairs(data)}", flush=True)
    results = {}
    for ordering in ORDERINGS:
        results[ordering] = simulate(data, ordering, args)
        last = results[ordering]["curve"][-1]
        print(f"{ordering}: labels to certified share {results[ordering]['labels_to_certified_share']}; "
              f"mean held-out top-1 {results[ordering]['mean_heldout_top1']:.1%}; after {last['labels']} labels: "
              f"certified {last['certified_share']:.0%}, point estimate {last['point_share']:.0%}, held-out top-1 "
              f"{last['heldout_top1']:.1%}, auto-decided from the queue {last['auto_decided']}", flush=True)
        for c in results[ordering]["curve"]:
            print(f"  {ordering} {json.dumps(c)}", flush=True)
    print(json.dumps({
        "data": data.source, "seed_labels": len(data.seed), "backlog": len(data.backlog),
        "held_out": len(data.held_out), "near_identical_backlog_pairs": near_pairs(data), "batch": args.batch,
        "queue_value_hours": args.hours, "arrival_hours": args.arrival_hours, "target": args.target, "copies": args.copies,
        "quick": args.quick, "orderings": results, "seconds": round(time.perf_counter() - started, 1),
    }))


if __name__ == "__main__":
    main()

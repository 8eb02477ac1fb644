"""Automatic decisions on photos the model has never seen: train as the console does, decide as it would.

    python benchmarks/unseen_accuracy.py [--quick] [--train DIR] [--unseen DIR] [--target 0.98]

Trains the head the way ``services.cli train`` does (5-fold cross-validation, cross-fitted temperature,
thresholds certified for the target) on a folder per class (default: ../shared/samples/reviews), then scores
the independent set (default: benchmarks/out/unseen/<label>/, made by ``python benchmarks/unseen_data.py``;
see benchmarks/unseen/README.md: never trained or tuned on) and routes each photo with the certified
thresholds. Reported, with counts and the 95% one-sided Clopper-Pearson lower bound of the automatic
accuracy: the automatic share and accuracy, top-1 accuracy, and the same with face cues only (no body
extent) and at the point-estimate thresholds (the old behaviour, which trusts the training sample). The last
line is one JSON object: photos, automatic_share, automatic_accuracy, accuracy_low95, top1 and the parts.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import OUT, ROOT, SAMPLES

from services.core.config import CLASSES, Workspace
from services.core.storage import ObjectStore
from services.models.certify import clopper_pearson_low, temper
from services.models.features import CUES_SIDE, FeatureExtractor
from services.models.head import FACE_CUE_DIMS, fit_head
from services.models.training import cross_validate, example_features, import_folder, training_examples
from services.worker import kinds

UNSEEN = OUT / "unseen"
MANIFEST = ROOT / "benchmarks" / "unseen" / "manifest.csv"
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def unseen_photos(root: Path, *, quick: bool) -> list[tuple[Path, str]]:
    photos = [(p, label) for label in CLASSES for p in sorted((root / label).glob("*")) if p.suffix.lower() in SUFFIXES]
    if quick:
        photos = [x for i, x in enumerate(photos) if i % 4 == 0]
    return photos


def train_head(ws: Workspace, db: Any, *, train_dir: Path, face_only: bool, target: float) -> dict[str, Any]:
    """The head, its temperature and certified thresholds, as ``training.train`` makes them."""
    import_folder(db, root=str(train_dir), store=ObjectStore(), actor="cli:bench")
    kept, emb, cues, _ = example_features(ws, db, training_examples(db), ObjectStore())
    if face_only:
        cues = cues[:, :FACE_CUE_DIMS]
    y = np.array([e["label"] for e in kept])
    cv = cross_validate(emb, cues, y, folds=5, c=1.0, target=target)
    return {"head": fit_head(emb, y, cues, c=1.0), "temperature": cv["temperature"], "certified": cv["thresholds"],
            "point": cv["point_estimate"]["thresholds"], "train_photos": len(kept),
            "certificate": cv["certificate"]["text"]}


def score(model: dict[str, Any], emb: np.ndarray, cues: np.ndarray) -> np.ndarray:
    head = model["head"]
    proba = head.predict_proba(emb, lambda idx: cues[idx])
    full = np.zeros((len(emb), len(CLASSES)))
    for j, k in enumerate(head.classes):
        full[:, CLASSES.index(k)] = proba[:, j]
    return temper(full, model["temperature"])


def decide(proba: np.ndarray, y: np.ndarray, thresholds: dict[str, float]) -> dict[str, Any]:
    pred = np.array(CLASSES)[proba.argmax(1)]
    conf = proba.max(1)
    auto = np.array([thresholds.get(p, 1.0) < 1.0 and c >= thresholds.get(p, 1.0) for p, c in zip(pred, conf)])
    n, right = int(auto.sum()), int((pred[auto] == y[auto]).sum())
    errors = [f"{t}->{p}" for t, p in zip(y[auto], pred[auto]) if t != p]
    return {"photos": len(y), "automatic_photos": n, "automatic_share": n / len(y) if len(y) else 0.0,
            "automatic_accuracy": right / n if n else None, "accuracy_low95": clopper_pearson_low(right, n),
            "top1": float((pred == y).mean()), "errors": {e: errors.count(e) for e in sorted(set(errors))}}


def tag_errors(paths: list[Path], y: np.ndarray, proba: np.ndarray) -> dict[str, str]:
    """Top-1 accuracy per tag of the manifest (hard cases: waist crops, selfies, sitting people ...)."""
    if not MANIFEST.exists():
        return {}
    tags = {row["id"]: [t for t in row["tags"].split(";") if t] for row in csv.DictReader(MANIFEST.open())}
    pred = np.array(CLASSES)[proba.argmax(1)]
    out: dict[str, list[int]] = {}
    for p, t, k in zip(paths, y, pred):
        for tag in tags.get(p.stem, []):
            out.setdefault(tag, []).append(int(t == k))
    return {tag: f"{sum(v)}/{len(v)}" for tag, v in sorted(out.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a quarter of the unseen photos")
    ap.add_argument("--train", type=Path, default=SAMPLES, help="a folder per class to train on")
    ap.add_argument("--unseen", type=Path, default=UNSEEN, help="the independent set, a folder per class")
    ap.add_argument("--target", type=float, default=0.98)
    args = ap.parse_args()
    photos = unseen_photos(args.unseen, quick=args.quick)
    if not photos or not args.train.is_dir():
        raise SystemExit(f"need {args.unseen}/<class>/ (python benchmarks/unseen_data.py) and {args.train}/<class>/")
    kinds.install()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(tmp)
        db = ws.db()
        extractor = FeatureExtractor.shared(ws.models_dir)
        with_body = train_head(ws, db, train_dir=args.train, face_only=False, target=args.target)
        face_only = train_head(ws, db, train_dir=args.train, face_only=True, target=args.target)
        pics = [FeatureExtractor.decode(p.read_bytes(), max_pixels=80_000_000) for p, _ in photos]
        large = [FeatureExtractor.decode(p.read_bytes(), max_pixels=80_000_000, side=CUES_SIDE) for p, _ in photos]
        emb = extractor.embed(pics)
        cues = extractor.cues(large)
        y = np.array([label for _, label in photos])
        proba = score(with_body, emb, cues)
        proba_face = score(face_only, emb, cues[:, :FACE_CUE_DIMS])
        shipped = decide(proba, y, with_body["certified"])
        report = {
            **{k: shipped[k] for k in ("photos", "automatic_share", "automatic_accuracy", "accuracy_low95", "top1")},
            "automatic_photos": shipped["automatic_photos"], "errors": shipped["errors"],
            "train_photos": with_body["train_photos"], "target": args.target,
            "certificate": with_body["certificate"], "certified_thresholds": with_body["certified"],
            "per_class": {c: int((y == c).sum()) for c in CLASSES},
            "point_estimate": decide(proba, y, with_body["point"]),
            "face_cues_only": {"certified": decide(proba_face, y, face_only["certified"]),
                               "point_estimate": decide(proba_face, y, face_only["point"])},
            "top1_by_tag": tag_errors([p for p, _ in photos], y, proba),
            "seconds": round(time.perf_counter() - started, 1),
        }
        db.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()

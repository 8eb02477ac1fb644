"""Labelled examples and training the head.

Labels come from a folder per class, a SageMaker Ground Truth image-classification manifest, or
inspectors' decisions. Training computes features, reports stratified k-fold cross-validated
per-class precision, recall, F1, a confusion matrix and calibration, suggests per-class thresholds
for a target accuracy, fits the head on everything and saves a model version.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import sqlite_utils

from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, Workspace, get_settings, object_store
from services.core.errors import ConsoleError, InvalidInput, ModelError
from services.core.images import IMAGE_SUFFIXES
from services.core.storage import ObjectStore
from services.datasets.formats import norm
from services.datasets.groundtruth import NothingConverted
from services.datasets.layouts import read_groundtruth_classes
from services.models.evaluation import TARGET_ACCURACY, check_counts, oof_metrics, thin_classes
from services.models.features import CUE_NAMES, CUES_SIDE, FeatureExtractor
from services.models.head import fit_head
from services.models.registry import save_version


def _add_labels(db: sqlite_utils.Database, items: list[tuple[str, str]], *, source: str, store: ObjectStore) -> dict[str, Any]:
    added, failed = 0, []

    def read(uri: str) -> str | None:
        try:
            return hashlib.sha256(store.read(uri)).hexdigest()
        except ConsoleError as exc:
            failed.append({"uri": uri, "reason": str(exc)})
            return None

    with ThreadPoolExecutor(8) as pool:
        shas = list(pool.map(read, [u for u, _ in items]))
    with db.atomic():
        for (uri, label), sha in zip(items, shas):
            if sha is None:
                continue
            cur = db.execute(
                "INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sha256, source) DO UPDATE SET label = excluded.label, uri = excluded.uri "
                "WHERE labels.label != excluded.label",
                [uri, sha, label, source, now_iso()],
            )
            added += cur.rowcount
    return {"labels_added_or_changed": added, "failed": failed}


def import_folder(db: sqlite_utils.Database, *, root: str, store: ObjectStore, actor: str) -> dict[str, Any]:
    """Import ``root/<class>/<photo>`` as labels. Raises InvalidInput if no class folder is found."""
    require(db, actor=actor, action="jobs.manage")
    items, skipped = [], set()
    for obj in store.list(root, suffixes=IMAGE_SUFFIXES):
        parts = obj.key.split("/")
        if len(parts) < 2:
            continue
        if parts[0] not in CLASSES:
            skipped.add(parts[0])
            continue
        items.append((obj.uri, parts[0]))
    if not items:
        raise InvalidInput(f"no photos found in class folders under {root} (expected {', '.join(CLASSES)})")
    out = _add_labels(db, items, source="folder", store=store)
    out["photos"] = len(items)
    out["ignored_folders"] = sorted(skipped)
    record(db, actor=actor, action="labels.import", target=root, detail={"photos": len(items)})
    return out


def to_classes(records: list[Any], errors: list[dict[str, Any]], *,
               label_map: dict[str, str] | None) -> list[tuple[str, str]]:
    """(photo, class) of every record whose label, after ``label_map`` (normalised names: ``{"cat": "product"}``),
    is one of the console's classes; the others are added to ``errors`` with their line or image and a reason
    that says how to map them. Raises InvalidInput when the map names a target that is not a class."""
    label_map = label_map or {}
    wrong = sorted({v for v in label_map.values() if v not in CLASSES})
    if wrong:
        raise InvalidInput(f"--map can only map to {', '.join(CLASSES)}, not {', '.join(wrong)}")
    items = []
    for r in records:
        label = label_map.get(norm(r.label), r.label)
        if label in CLASSES:
            items.append((r.source, label))
        else:
            errors.append({**r.origin, "reason": f"class '{r.label}' is not one of {', '.join(CLASSES)} "
                                                 f"(map it, e.g. --map {norm(r.label) or 'name'}=product)"})
    return items


def import_groundtruth(db: sqlite_utils.Database, *, uri: str, store: ObjectStore, actor: str,
                       attribute: str | None = None, label_map: dict[str, str] | None = None) -> dict[str, Any]:
    """Import a Ground Truth image-classification manifest; bad lines are reported, others load.

    The label attribute is ``attribute`` when given (a line without it is reported: "no 'category' attribute;
    found source-ref, label, label-metadata"), else the key with a ``-metadata`` twin holding ``class-name``.
    ``label_map`` renames labels to classes first (``{"cat": "product"}``). Raises NothingConverted (an
    InvalidInput) with every bad line and its reason when no line can be used, InvalidInput for a bad map.
    """

    require(db, actor=actor, action="jobs.manage")
    text = store.read(uri).decode("utf-8", errors="replace")
    records, errors = read_groundtruth_classes(text, attribute=attribute, unique=False)
    items = to_classes(records, errors, label_map=label_map)
    errors.sort(key=lambda e: e["line"])
    if not items:
        raise NothingConverted(f"{uri}: no usable Ground Truth lines ({len(errors)} bad)", errors)
    out = _add_labels(db, items, source="groundtruth", store=store)
    out["lines"], out["errors"] = len(items) + len(errors), errors
    record(db, actor=actor, action="labels.import", target=uri, detail={"lines": len(items)})
    return out


def label_count(db: sqlite_utils.Database, *, actor: str) -> int:
    """How many labels are stored in this workspace (every source). Raises PermissionDenied."""
    require(db, actor=actor, action="jobs.manage")
    return int(db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])


def training_examples(db: sqlite_utils.Database, *, include_decisions: bool = True) -> list[dict[str, Any]]:
    """One example per photo (sha256): the latest human decision wins over imported labels."""
    examples: dict[str, dict[str, Any]] = {}
    for row in db.query("SELECT uri, sha256, label, source FROM labels ORDER BY id"):
        examples[row["sha256"]] = dict(row)
    if include_decisions:
        sql = (
            "SELECT i.uri, i.sha256, d.label, 'decision' AS source FROM images i "
            "JOIN decisions d ON d.id = i.decision_id WHERE d.source = 'human' AND i.sha256 IS NOT NULL"
        )
        for row in db.query(sql):
            examples[row["sha256"]] = dict(row)
    return list(examples.values())


def example_features(ws: Workspace, db: sqlite_utils.Database, examples: list[dict[str, Any]], store: ObjectStore):  # type: ignore[no-untyped-def]
    """Embeddings and cues per example (cached by sha256 in the embeddings table); drops unreadable ones."""
    extractor = FeatureExtractor.shared(ws.models_dir)
    max_pixels = get_settings(db)["max_pixels"]
    cached = {
        r["sha256"]: r
        for r in db.query("SELECT sha256, vector, cues FROM embeddings WHERE backbone = ?", [extractor.backbone])
    }
    keep, emb, cues, failed = [], [], [], []
    def current(sha: str) -> bool:  # cues stored, and with every cue the extractor gives today
        return sha in cached and bool(cached[sha]["cues"]) and len(json.loads(cached[sha]["cues"])) == len(CUE_NAMES)

    todo = [e for e in examples if not current(e["sha256"])]

    def load(e: dict[str, Any]):  # type: ignore[no-untyped-def]
        """(embedding-size, cue-size) decodes of one example's photo, or None when unreadable."""
        try:
            data = store.read(e["uri"])
            return (FeatureExtractor.decode(data, max_pixels=max_pixels),
                    FeatureExtractor.decode(data, max_pixels=max_pixels, side=CUES_SIDE))
        except ConsoleError as exc:
            failed.append({"uri": e["uri"], "reason": str(exc)})
            return None

    fresh: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with ThreadPoolExecutor(4) as pool:
        for i in range(0, len(todo), 32):
            part = todo[i : i + 32]
            pics = list(pool.map(load, part))
            ok = [(e, p) for e, p in zip(part, pics) if p is not None]
            if not ok:
                continue
            vecs = extractor.embed([small for _, (small, _) in ok])
            cue = extractor.cues([large for _, (_, large) in ok])
            for (e, _), v, c in zip(ok, vecs, cue):
                fresh[e["sha256"]] = (v, c)
    now = now_iso()
    with db.atomic():
        for sha, (v, c) in fresh.items():
            db.execute(
                "INSERT INTO embeddings (sha256, backbone, vector, cues, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(sha256, backbone) DO UPDATE SET cues = excluded.cues",
                [sha, extractor.backbone, v.astype(np.float32).tobytes(), json.dumps(c.tolist()), now],
            )
    for e in examples:
        sha = e["sha256"]
        if sha in fresh:
            v, c = fresh[sha]
        elif current(sha):
            v = np.frombuffer(cached[sha]["vector"], dtype=np.float32)
            c = np.array(json.loads(cached[sha]["cues"]), dtype=np.float32)
        else:
            continue
        keep.append(e)
        emb.append(v)
        cues.append(c)
    return keep, np.array(emb), np.array(cues), failed


def cross_validate(emb: np.ndarray, cues: np.ndarray, y: np.ndarray, *, folds: int, c: float, seed: int = 0,
                   target: float = TARGET_ACCURACY) -> dict[str, Any]:
    """Stratified k-fold out-of-fold metrics for the two-stage head (``oof_metrics`` plus ``_proba``)."""
    from sklearn.model_selection import StratifiedKFold

    classes = sorted(set(y.tolist()))
    proba = np.zeros((len(y), len(classes)))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(emb, y):
        head = fit_head(emb[tr], y[tr], cues[tr], c=c, seed=seed)
        p = head.predict_proba(emb[te], lambda idx, te=te: cues[te][idx])
        for j, k in enumerate(head.classes):
            proba[te, classes.index(k)] = p[:, j]
    return {"folds": folds, **oof_metrics(y, proba, classes, target=target), "_proba": proba}


def train(
    ws: Workspace,
    db: sqlite_utils.Database,
    *,
    actor: str,
    folds: int = 5,
    c: float = 1.0,
    activate: bool = True,
    target_accuracy: float = TARGET_ACCURACY,
) -> dict[str, Any]:
    """Train on every labelled example, cross-validate, save (and by default activate) a version.

    Raises ModelError when there are too few examples to train or cross-validate.
    """
    require(db, actor=actor, action="models.manage")
    store = object_store(db)
    examples = training_examples(db)
    if not examples:
        raise ModelError("no labelled photos yet: import a folder per class or a Ground Truth manifest first")
    kept, emb, cues, failed = example_features(ws, db, examples, store)
    y = np.array([e["label"] for e in kept])
    counts = {k: int((y == k).sum()) for k in sorted(set(y.tolist()))}
    k = check_counts(y, folds=folds)
    cv = cross_validate(emb, cues, y, folds=k, c=c, target=target_accuracy)
    cv.pop("_proba")
    thresholds = cv["thresholds"]
    cv["at_suggested_thresholds"] = cv["at_target"]
    head = fit_head(emb, y, cues, c=c)
    sources: dict[str, int] = {}
    for e in kept:
        sources[e["source"]] = sources.get(e["source"], 0) + 1
    version_id = save_version(
        db,
        head=head,
        models_dir=ws.models_dir,
        backbone=FeatureExtractor.backbone,
        hyperparams={"C": c, "folds": k, "person_stage": head.person is not None},
        metrics=cv,
        thresholds=thresholds,
        training_data={"examples": len(kept), "per_class": counts, "sources": sources, "unreadable": failed[:100]},
        activate=activate,
        actor=actor,
    )
    return {"model_version_id": version_id, "examples": len(kept), "per_class": counts, "unreadable": len(failed),
            "warnings": thin_classes(y), "suggested_thresholds": thresholds, **{k2: v for k2, v in cv.items() if k2 != "classes"}}

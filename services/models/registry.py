"""Model versions: save, list, activate; load the active head."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, set_setting
from services.core.errors import ModelError, NotFound
from services.models.certify import temper
from services.models.finetuned import FineTunedModel
from services.models.head import Head

_heads: dict[str, Head] = {}
_heads_lock = threading.Lock()


def save_version(
    db: sqlite_utils.Database,
    *,
    head: Head | None = None,
    model_file: str | None = None,
    name: str | None = None,
    classes: list[str] | None = None,
    models_dir: Path,
    backbone: str,
    hyperparams: dict[str, Any],
    metrics: dict[str, Any],
    thresholds: dict[str, float],
    training_data: dict[str, Any],
    activate: bool,
    actor: str,
) -> int:
    """Write the head file (or record ``model_file``, already written in ``models_dir``, with its ``name`` and
    ``classes``) and the model_versions row, activating it if asked. Returns the version id.
    Raises PermissionDenied unless ``actor`` may manage models."""
    require(db, actor=actor, action="models.manage")
    created = now_iso()
    if head is not None:
        # microseconds and a random suffix: two versions saved in the same second never share a file
        name = f"head-{created.replace(':', '').replace('-', '').replace('.', '')[:22]}-{secrets.token_hex(2)}"
        path = Path(models_dir) / f"{name}.npz"
        head.save(path)
        classes = head.classes
    elif model_file and name and classes:
        path = Path(models_dir) / model_file
    else:
        raise ValueError("save_version needs a head, or a model file with its name and classes")
    with db.atomic():
        cur = db.execute(
            "INSERT INTO model_versions (name, created_at, backbone, classes, hyperparams, metrics, thresholds, "
            "training_data, path, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            [
                name,
                created,
                backbone,
                json.dumps(classes),
                json.dumps(hyperparams),
                json.dumps(metrics),
                json.dumps(thresholds),
                json.dumps(training_data),
                path.name,
            ],
        )
        version_id = int(cur.lastrowid)
        record(db, actor=actor, action="model.train", target=str(version_id), detail={"name": name})
        if activate:
            activate_version(db, version_id=version_id, actor=actor)
    return version_id


def activate_version(db: sqlite_utils.Database, *, version_id: int, actor: str) -> None:
    """Make ``version_id`` the model that classifies. Raises NotFound, ModelError (no local model file)."""
    require(db, actor=actor, action="models.manage")
    with db.atomic():
        row = db.execute("SELECT name, path FROM model_versions WHERE id = ?", [version_id]).fetchone()
        if not row:
            raise NotFound(f"model version {version_id} does not exist")
        if not row[1]:
            raise ModelError(f"model version {row[0]} has no local model file (it scores where it was trained, "
                             "e.g. by SageMaker batch transform), so it cannot classify here")
        db.execute("UPDATE model_versions SET active = (id = ?)", [version_id])
        db.execute("UPDATE model_versions SET activated_at = ? WHERE id = ?", [now_iso(), version_id])
        record(db, actor=actor, action="model.activate", target=str(version_id))
        _follow_thresholds(db, version_id=version_id, actor=actor)


def _follow_thresholds(db: sqlite_utils.Database, *, version_id: int, actor: str) -> None:
    """Route with the thresholds certified for the version just activated (1.0, nothing automatic, for a class
    it does not know); an admin may change them afterwards on Models or Settings."""
    row = db.execute("SELECT thresholds FROM model_versions WHERE id = ?", [version_id]).fetchone()
    certified = json.loads(row[0]) if row and row[0] else {}
    if certified:
        set_setting(db, key="thresholds", value={c: float(certified.get(c, 1.0)) for c in CLASSES}, actor=actor)


def active_version(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The active model_versions row (JSON fields decoded), or None when no model exists yet."""
    rows = list(db.query("SELECT * FROM model_versions WHERE active = 1 LIMIT 1"))
    return _decode(rows[0]) if rows else None


def list_versions(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_decode(r) for r in db.query("SELECT * FROM model_versions ORDER BY id DESC")]


class Calibrated:
    """A version's model with the temperature fitted at training applied to every probability it gives, so
    new photos are scored on the scale its certified thresholds were chosen on (``services.models.certify``)."""

    def __init__(self, model: Head | FineTunedModel, temperature: float) -> None:
        self.model, self.temperature = model, float(temperature)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def predict_proba(self, emb: np.ndarray, cues_for: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        return temper(self.model.predict_proba(emb, cues_for), self.temperature)  # type: ignore[union-attr]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb, proba = self.model.run(batch)  # type: ignore[union-attr]
        return emb, temper(proba, self.temperature)


def load_head(version: dict[str, Any], *, models_dir: Path) -> Head | FineTunedModel | Calibrated:
    """The model of a version with its calibration (see ``load_model``). Raises ModelError."""
    model = load_model(version, models_dir=models_dir)
    temperature = float((version.get("metrics") or {}).get("temperature") or 1.0)
    return model if temperature == 1.0 else Calibrated(model, temperature)


def load_model(version: dict[str, Any], *, models_dir: Path) -> Head | FineTunedModel:
    """The model of a version, cached: a head over backbone embeddings, or a fine-tuned network (an ``.onnx``
    file) that embeds and scores photos itself. Its file lives in the workspace's model folder.
    Raises ModelError when the file is missing or damaged, or the version has no local model."""
    if not version.get("path"):
        raise ModelError(f"model version {version['name']} has no local model file (it runs where it was trained)")
    if version["path"].endswith(".onnx"):
        return FineTunedModel.shared(Path(models_dir) / version["path"], version["classes"])
    path = str((Path(models_dir) / version["path"]).resolve())
    with _heads_lock:
        if path not in _heads:
            _heads[path] = Head.load(Path(path))
        return _heads[path]


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("classes", "hyperparams", "metrics", "thresholds", "training_data"):
        out[key] = json.loads(row[key]) if row[key] else None
    return out


def comparison(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per version (newest first, as listed) with its cross-validated figures side by side: macro-F1,
    accuracy, the automatic share and accuracy at its suggested thresholds, photos, and F1 per class."""
    rows = []
    for v in versions:
        m = v.get("metrics") or {}
        at = m.get("at_suggested_thresholds") or {}
        row = {"version": v["id"], "name": v["name"], "created_at": v["created_at"], "active": bool(v["active"]),
               "photos": (v.get("training_data") or {}).get("examples"), "macro_f1": m.get("macro_f1"),
               "accuracy": m.get("accuracy"), "automatic_share": at.get("automatic_share"),
               "automatic_accuracy": at.get("automatic_accuracy")}
        for cls, figures in (m.get("per_class") or {}).items():
            row[f"f1_{cls}"] = figures.get("f1")
        rows.append(row)
    return rows

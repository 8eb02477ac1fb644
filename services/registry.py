"""Model versions: save, list, activate; load the active head."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from typing import Any

import sqlite_utils

from services.audit import record
from services.authz import require
from services.clock import now_iso
from services.errors import NotFound
from services.head import Head

_heads: dict[str, Head] = {}
_heads_lock = threading.Lock()


def save_version(
    db: sqlite_utils.Database,
    *,
    head: Head,
    models_dir: Path,
    backbone: str,
    hyperparams: dict[str, Any],
    metrics: dict[str, Any],
    thresholds: dict[str, float],
    training_data: dict[str, Any],
    activate: bool,
    actor: str,
) -> int:
    """Write the head file and its model_versions row (activating it if asked). Returns the version id."""
    created = now_iso()
    # microseconds and a random suffix: two versions saved in the same second never share a file
    name = f"head-{created.replace(':', '').replace('-', '').replace('.', '')[:22]}-{secrets.token_hex(2)}"
    path = Path(models_dir) / f"{name}.npz"
    head.save(path)
    with db.atomic():
        cur = db.execute(
            "INSERT INTO model_versions (name, created_at, backbone, classes, hyperparams, metrics, thresholds, "
            "training_data, path, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
            [
                name,
                created,
                backbone,
                json.dumps(head.classes),
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
    """Make ``version_id`` the model that classifies. Raises NotFound."""
    require(db, actor=actor, action="models.manage")
    with db.atomic():
        if not db.execute("SELECT 1 FROM model_versions WHERE id = ?", [version_id]).fetchone():
            raise NotFound(f"model version {version_id} does not exist")
        db.execute("UPDATE model_versions SET active = (id = ?)", [version_id])
        record(db, actor=actor, action="model.activate", target=str(version_id))


def active_version(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The active model_versions row (JSON fields decoded), or None when no model exists yet."""
    rows = list(db.query("SELECT * FROM model_versions WHERE active = 1 LIMIT 1"))
    return _decode(rows[0]) if rows else None


def list_versions(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return [_decode(r) for r in db.query("SELECT * FROM model_versions ORDER BY id DESC")]


def load_head(version: dict[str, Any], *, models_dir: Path) -> Head:
    """The head of a version (its file lives in the workspace's model folder), cached. Raises ModelError."""
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

"""The workspace (one data directory) and the settings stored in its database."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from db.database import connect
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.private import private_dir, tighten_workspace
from services.core.settings import CLASSES as CLASSES
from services.core.settings import DEFAULTS as DEFAULTS
from services.core.settings import clean_setting
from services.core.storage import ObjectStore, normalise_root

DATA_DIR_ENV = "REVIEW_CONSOLE_DATA_DIR"
S3_ENDPOINT_ENV = "REVIEW_CONSOLE_S3_ENDPOINT_URL"
STORAGE_ROOTS_ENV = "REVIEW_CONSOLE_STORAGE_ROOTS"  # more roots from whoever starts the server (os.pathsep-separated)


def default_data_dir() -> Path:
    """``$REVIEW_CONSOLE_DATA_DIR`` if set, else ``./data`` beside the code."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "data"


@dataclass(frozen=True)
class Workspace:
    """One data directory: the database, the local object store and the model files."""

    root: Path

    @classmethod
    def open(cls, data_dir: str | Path | None = None) -> Workspace:
        """Create (if needed) and return the workspace at ``data_dir`` (default: ``default_data_dir()``).

        The workspace is private to this account: folders 0700, the database, model and index files 0600;
        a workspace made before that is tightened here. Raises OSError when it cannot be created or its
        modes cannot be set."""
        root = Path(data_dir).expanduser() if data_dir else default_data_dir()
        ws = cls(root.resolve())
        private_dir(ws.objects_dir)  # its photos need no walk: the folder keeps everyone else out
        tighten_workspace(ws.root, (ws.models_dir,))
        return ws

    @property
    def db_path(self) -> Path:
        return self.root / "console.db"

    @property
    def objects_dir(self) -> Path:
        return self.root / "objects"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def db(self) -> sqlite_utils.Database:
        """A new connection for the calling thread, schema migrated."""
        return connect(self.db_path)


def get_settings(db: sqlite_utils.Database) -> dict[str, Any]:
    """Every setting: stored values over defaults."""
    out = json.loads(json.dumps(DEFAULTS))
    for row in db.query("SELECT key, value FROM settings"):
        if row["key"] in out:
            out[row["key"]] = json.loads(row["value"])
    if not out["s3_endpoint_url"]:
        out["s3_endpoint_url"] = os.environ.get(S3_ENDPOINT_ENV, "")
    return out


def workspace_root(db: sqlite_utils.Database) -> Path:
    """The workspace folder of an open database (the folder holding its file)."""
    return Path(db.execute("PRAGMA database_list").fetchone()[2]).parent


def env_storage_roots() -> list[str]:
    """The storage roots given by ``$REVIEW_CONSOLE_STORAGE_ROOTS`` (absolute folders or s3:// prefixes,
    separated by ``:`` as in PATH; the colon of ``s3://`` separates nothing), normalised. Raises InvalidInput
    for a relative or malformed one."""
    return [normalise_root(r) for r in re.split(r":(?!//)", os.environ.get(STORAGE_ROOTS_ENV, "")) if r.strip()]


def object_store(db: sqlite_utils.Database, *, max_attempts: int = 3) -> ObjectStore:
    """The object store as Settings configure it: the S3 endpoint, the largest file read, and the storage
    roots every URI read or written must lie inside: this workspace, the folders and prefixes admins add in
    Settings (the SageMaker bucket among them) and those of ``$REVIEW_CONSOLE_STORAGE_ROOTS``. With
    none added, the workspace alone. Raises
    InvalidInput for a malformed root in the environment."""
    settings = get_settings(db)
    roots = [str(workspace_root(db)), *settings["storage_roots"], *env_storage_roots()]
    if settings["sagemaker_bucket"]:  # the bucket admins gave SageMaker for its manifests, models and outputs
        roots.append(f"s3://{settings['sagemaker_bucket']}/")
    return ObjectStore(endpoint_url=settings["s3_endpoint_url"] or None, max_attempts=max_attempts,
                       roots=roots, max_bytes=int(settings["max_read_mb"]) << 20)


def set_setting(db: sqlite_utils.Database, *, key: str, value: Any, actor: str) -> Any:
    """Validate and store one setting, with an audit entry. Raises InvalidInput."""
    require(db, actor=actor, action="settings.change")
    clean = clean_setting(key, value)
    with db.atomic():
        db.execute(
            "INSERT INTO settings (key, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at, "
            "updated_by = excluded.updated_by",
            [key, json.dumps(clean), now_iso(), actor],
        )
        record(db, actor=actor, action="setting.change", target=key, detail={"value": clean})
    return clean

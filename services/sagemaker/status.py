"""What the SageMaker page lists: its background jobs (training, grid tuning, batch transform) and the model
versions SageMaker trained."""

from __future__ import annotations

from typing import Any

import sqlite_utils

from services.core import jobs
from services.core.authz import require
from services.sagemaker import batch, training, tuning

KINDS = (training.KIND, tuning.KIND, batch.KIND)


def recent_jobs(db: sqlite_utils.Database, *, actor: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest SageMaker jobs first, params and result decoded (as ``jobs.get_job`` returns them).
    Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    return jobs.list_jobs(db, limit=limit, kinds=KINDS)


def model_versions(db: sqlite_utils.Database, *, actor: str) -> list[dict[str, Any]]:
    """The model versions trained on SageMaker, newest first, as {id, name}. Raises PermissionDenied."""
    require(db, actor=actor, action="models.manage")
    return list(db.query("SELECT id, name FROM model_versions WHERE backbone = ? ORDER BY id DESC",
                         [training.BACKBONE]))

"""Migration 012: hyperparameter grid searches."""

from __future__ import annotations

import sqlite_utils


def m012_grid_searches(db: sqlite_utils.Database) -> None:
    """Hyperparameter grid searches (local head, local fine-tuning, SageMaker tuning) and their grid points."""
    db["grid_searches"].create(
        {
            "id": int,
            "job_id": int,
            "backend": str,  # head | finetune | sagemaker
            "created_at": str,
            "finished_at": str,
            "actor": str,
            "grid": str,  # JSON: parameter -> list of values
            "folds": int,
            "examples": int,
            "state": str,  # running | done | failed
            "error": str,
            "external_name": str,  # the SageMaker tuning job's name
            "model_version_id": int,  # the version saved from the best point, if any
        },
        pk="id",
    )
    db["grid_points"].create(
        {
            "id": int,
            "search_id": int,
            "params": str,  # JSON: this point's values
            "macro_f1": float,
            "accuracy": float,
            "automatic_share": float,  # expected share decided automatically at the target accuracy
            "metrics": str,  # JSON: per_class, confusion_matrix, ... (whatever the backend reports)
            "seconds": float,
            "state": str,  # done | failed
            "error": str,
            "external_name": str,  # the SageMaker training job's name
        },
        pk="id",
        foreign_keys=[("search_id", "grid_searches", "id")],
    )
    db["grid_points"].create_index(["search_id"])

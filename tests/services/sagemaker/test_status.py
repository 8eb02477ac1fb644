"""What the SageMaker page lists: only SageMaker's jobs and model versions, newest first, for those who manage
models."""

from __future__ import annotations

import pytest

from services.access.accounts import create_user
from services.core.errors import PermissionDenied
from services.core.jobs import create_job
from services.models.registry import save_version
from services.sagemaker import batch as smb
from services.sagemaker import status
from services.sagemaker import training as smt
from services.sagemaker import tuning as smtu
from tests.conftest_sagemaker import ACTOR


def _sagemaker_version(db, name: str) -> int:
    desc = {"name": name, "status": "Completed", "metrics": {"validation:accuracy": 0.9}, "seconds": 60.0,
            "model_artifacts": f"s3://bucket/{name}/model.tar.gz", "hyperparameters": {"epochs": "5"},
            "training_image": "image-classification:1"}
    return smt.save_version(db, desc=desc, actor=ACTOR, training_data={})


def test_recent_jobs_are_sagemakers_newest_first_with_params_decoded(db):
    ids = {kind: create_job(db, kind=kind, params={"sagemaker_name": f"{kind}-1"}, actor=ACTOR)
           for kind in (smt.KIND, "classify", smtu.KIND, smb.KIND)}
    recent = status.recent_jobs(db, actor=ACTOR)
    assert [j["id"] for j in recent] == [ids[smb.KIND], ids[smtu.KIND], ids[smt.KIND]]  # no classify job
    assert recent[0]["kind"] == smb.KIND and recent[0]["state"] == "queued"
    assert recent[0]["params"] == {"sagemaker_name": f"{smb.KIND}-1"}
    assert [j["id"] for j in status.recent_jobs(db, actor=ACTOR, limit=2)] == [ids[smb.KIND], ids[smtu.KIND]]


def test_no_sagemaker_job_or_version_yet(db):
    create_job(db, kind="classify", params={}, actor=ACTOR)
    assert status.recent_jobs(db, actor=ACTOR) == []
    assert status.model_versions(db, actor=ACTOR) == []


def test_model_versions_are_those_sagemaker_trained_newest_first(ws, db):
    first = _sagemaker_version(db, "tj-1")
    save_version(db, model_file="local.onnx", name="local-1", classes=["product"], models_dir=ws.models_dir,
                 backbone="local-backbone", hyperparams={}, metrics={}, thresholds={}, training_data={},
                 activate=False, actor=ACTOR)
    second = _sagemaker_version(db, "tj-2")
    assert status.model_versions(db, actor=ACTOR) == [{"id": second, "name": "sm-tj-2"},
                                                      {"id": first, "name": "sm-tj-1"}]


def test_listings_are_for_those_who_manage_models(db):
    create_user(db, username="ines", password="a long enough passphrase", roles=["inspector"], actor=ACTOR)
    for listing in (status.recent_jobs, status.model_versions):
        with pytest.raises(PermissionDenied, match="ines may not manage models: that needs the admin role"):
            listing(db, actor="ines")

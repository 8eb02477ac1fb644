"""Shared set-up for the SageMaker tests: moto for AWS (no account), settings and labels in a fresh workspace."""

from __future__ import annotations

import hashlib

import boto3
import pytest

from services.core.clock import now_iso
from services.core.config import CLASSES, set_setting

BUCKET = "console-sm"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ACTOR = "cli:test"


@pytest.fixture
def aws_env(monkeypatch):
    """Fake credentials and a region for boto3, no SDK role check (moto has no IAM policy simulator)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SAGEMAKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


@pytest.fixture
def moto(aws_env):
    """moto's AWS in this process, with the console's bucket."""
    from moto import mock_aws

    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield


def configure(db, **overrides) -> None:
    values = {"sagemaker_region": "us-east-1", "sagemaker_role_arn": ROLE, "sagemaker_bucket": BUCKET,
              "sagemaker_prefix": "rc", "sagemaker_train_instance_type": "ml.p3.2xlarge",
              "sagemaker_train_instance_count": 2, "sagemaker_max_runtime_seconds": 7200, **overrides}
    for key, value in values.items():
        set_setting(db, key=key, value=value, actor=ACTOR)


def add_labels(db, per_class: int = 5, *, local: int = 0) -> list[str]:
    """Label rows as an import would leave them: ``per_class`` photos of every class in S3, ``local`` on disk."""
    uris = []
    for cls in CLASSES:
        for n in range(per_class):
            uris.append(f"s3://{BUCKET}/photos/{cls}/{n}.jpg")
    rows = [(u, u.split("/")[-2]) for u in uris] + [(f"/data/photos/local{n}.jpg", "product") for n in range(local)]
    for uri, label in rows:
        db.execute("INSERT INTO labels (uri, sha256, label, source, imported_at) VALUES (?, ?, ?, 'folder', ?)",
                   [uri, hashlib.sha256(uri.encode()).hexdigest(), label, now_iso()])
    return uris

"""SageMaker batch transform: the exact CreateModel / CreateTransformJob requests, a run under moto whose real
``.out`` files (put in moto's S3) become predictions under the version and routed decisions, bad outputs."""

from __future__ import annotations

import json

import boto3
import pytest

from services.core.clock import now_iso
from services.core.errors import InvalidInput, NotFound
from services.core.jobs import get_job, run_job
from services.sagemaker import batch as smb
from services.sagemaker import training as smt
from tests.conftest_sagemaker import ACTOR, BUCKET, ROLE, configure

ARTIFACTS = f"s3://{BUCKET}/rc/output/tj-1/output/model.tar.gz"


def _version(db) -> int:
    desc = {"name": "tj-1", "status": "Completed", "metrics": {"validation:accuracy": 0.9}, "seconds": 600.0,
            "model_artifacts": ARTIFACTS, "hyperparameters": {"epochs": "5", "num_layers": "18"},
            "training_image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"}
    return smt.save_version(db, desc=desc, actor=ACTOR, training_data={})


def _photo(db, n: int, uri: str, *, status: str = "queued", reason: str | None = "no_model") -> int:
    db.execute("INSERT OR IGNORE INTO reviews (id, review_type, submitted_at, created_at) VALUES (?, 'product', ?, ?)",
               [f"r{n}", now_iso(), now_iso()])
    return int(db.execute("INSERT INTO images (review_id, uri, sha256, status, queue_reason, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?)", [f"r{n}", uri, f"ff{n:062x}", status, reason, now_iso()]).lastrowid)


def test_dry_run_requests(db, aws_env):
    configure(db, sagemaker_transform_instance_type="ml.c5.2xlarge", sagemaker_transform_instance_count=3)
    version_id = _version(db)
    out = smb.start_transform(db, actor=ACTOR, input_uri=f"s3://{BUCKET}/incoming/batch-7", dry_run=True)
    model = out["requests"]["CreateModel"]
    assert model["PrimaryContainer"] == {"Image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1",
                                         "ModelDataUrl": ARTIFACTS}
    assert model["ExecutionRoleArn"] == ROLE and model["ModelName"].startswith(f"console-{version_id}-")
    job = out["requests"]["CreateTransformJob"]
    assert job["ModelName"] == model["ModelName"]
    assert job["TransformInput"] == {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                                                     "S3Uri": f"s3://{BUCKET}/incoming/batch-7/"}},
                                     "ContentType": "application/x-image"}
    assert job["TransformOutput"]["S3OutputPath"].startswith(f"s3://{BUCKET}/rc/transform/")
    assert job["TransformOutput"]["Accept"] == "application/json"
    assert job["TransformResources"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 3}


def test_inputs_are_checked(db, aws_env):
    configure(db)
    with pytest.raises(NotFound, match="no SageMaker model version yet"):
        smb.launch(db, actor=ACTOR, input_uri=f"s3://{BUCKET}/in")
    _version(db)
    with pytest.raises(InvalidInput, match="must be an s3://bucket/prefix"):
        smb.launch(db, actor=ACTOR, input_uri="/data/photos")


def test_parse_output():
    assert smb.parse_output(b'{"prediction": [0.1, 0.7, 0.1, 0.1]}') == [0.1, 0.7, 0.1, 0.1]
    for bad, why in ((b"oops", "not JSON"), (b'{"prediction": [0.5, 0.5]}', "4 probabilities"),
                     (b'{"prediction": [0.9, 0.9, 0.1, 0.1]}', "add up to 2.000"),
                     (b'{"prediction": ["a", 0, 0, 1]}', "numbers from 0 to 1")):
        with pytest.raises(InvalidInput, match=why):
            smb.parse_output(bad)


def test_transform_under_moto_writes_predictions_and_routes(ws, db, moto):
    configure(db)
    version_id = _version(db)
    s3 = boto3.client("s3", region_name="us-east-1")
    inp, out = f"s3://{BUCKET}/incoming/b1", f"s3://{BUCKET}/results/b1"
    sure = _photo(db, 1, f"{inp}/a.jpg")
    unsure = _photo(db, 2, f"{inp}/sub/b.jpg")
    done = _photo(db, 3, f"{inp}/c.jpg", status="decided", reason=None)
    for key, body in (("a.jpg.out", {"prediction": [0.01, 0.97, 0.01, 0.01]}),
                      ("sub/b.jpg.out", {"prediction": [0.2, 0.3, 0.4, 0.1]}),
                      ("c.jpg.out", {"prediction": [0.95, 0.03, 0.01, 0.01]}),
                      ("stranger.jpg.out", {"prediction": [0.25, 0.25, 0.25, 0.25]})):
        s3.put_object(Bucket=BUCKET, Key=f"results/b1/{key}", Body=json.dumps(body).encode())
    s3.put_object(Bucket=BUCKET, Key="results/b1/broken.jpg.out", Body=b"<html>502</html>")
    job_id = smb.launch(db, actor=ACTOR, input_uri=inp, output_uri=out, poll_seconds=0)
    assert run_job(ws, job_id=job_id) == job_id
    job = get_job(db, job_id)
    assert job["state"] == "done", job["error"]
    res = job["result"]
    assert (res["outputs"], res["predictions"], res["unknown"], res["unparsable"]) == (5, 3, 1, 1)
    assert res["unknown_sample"] == [f"{inp}/stranger.jpg"]
    assert res["problems"][0]["photo"] == f"{inp}/broken.jpg" and "not JSON" in res["problems"][0]["reason"]
    preds = {r[0]: r[1:] for r in db.execute("SELECT image_id, model_version_id, label, confidence FROM predictions")}
    assert preds[sure] == (version_id, "product", 0.97) and preds[unsure][1] == "full_length"
    assert preds[done][1] == "package"
    status = {r[0]: r[1:] for r in db.execute("SELECT id, status, queue_reason, pred_label FROM images")}
    assert status[sure][0] == "decided"  # 0.97 is above the 0.9 threshold
    assert status[unsure] == ("queued", "low_confidence", "full_length")
    assert status[done] == ("decided", None, "package")  # a photo decided before keeps its decision
    (who, reason) = db.execute("SELECT decided_by, reason FROM decisions WHERE image_id = ?", [sure]).fetchone()
    assert who == "model:sm-tj-1" and reason.startswith("SageMaker batch transform: model: product at 97%")
    assert job["params"]["sagemaker_status"] == "Completed" and job["params"]["model_name"].startswith("console-")
    desc = boto3.client("sagemaker", region_name="us-east-1").describe_transform_job(
        TransformJobName=job["params"]["sagemaker_name"])
    assert desc["TransformInput"]["ContentType"] == "application/x-image"

"""SageMaker page: settings form, a dry run showing the exact request, launching a job that runs under moto,
job status and the tuning results table."""

from __future__ import annotations

from services.core.config import get_settings
from services.core.jobs import create_job, get_job, run_job
from services.models import grid_search
from services.models.registry import save_version
from services.sagemaker import training as smt
from tests.conftest_sagemaker import ACTOR, BUCKET, ROLE, add_labels, configure
from tests.pages.helpers import start_app, texts


def test_settings_form_saves_and_refuses_bad_values(db, aws_env):
    at = start_app("pages/sagemaker.py")
    at.text_input(key="sm_role_arn").set_value("not-a-role")
    at.button(key="sm_save").click().run()
    assert any("IAM role ARN" in e for e in texts(at.error))
    at.text_input(key="sm_role_arn").set_value(ROLE)
    at.text_input(key="sm_bucket").set_value(BUCKET)
    at.text_input(key="sm_region").set_value("eu-west-1")
    at.number_input(key="sm_train_instance_count").set_value(2)
    at.button(key="sm_save").click().run()
    assert not at.exception, at.exception
    settings = get_settings(db)
    assert (settings["sagemaker_role_arn"], settings["sagemaker_bucket"], settings["sagemaker_region"],
            settings["sagemaker_train_instance_count"]) == (ROLE, BUCKET, "eu-west-1", 2)


def test_dry_run_shows_the_request(db, aws_env):
    configure(db)
    at = start_app("pages/sagemaker.py")
    at.button(key="sm_train_dry").click().run()
    assert any("needs at least two classes" in e for e in texts(at.error))  # no labels yet: said plainly
    assert at.button(key="sm_train_start")  # the refusal does not hide the other button
    add_labels(db, per_class=3)
    at.selectbox(key="sm_layers").set_value(50)
    at.button(key="sm_train_dry").click().run()
    assert not at.exception, at.exception
    shown = [j.value for j in at.json]
    req = next(v for v in shown if "CreateTrainingJob" in v)
    assert '"num_layers": "50"' in req and "AugmentedManifestFile" in req
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_start_training_runs_as_a_job_and_shows_results(ws, db, moto):
    configure(db)
    add_labels(db, per_class=3)
    at = start_app("pages/sagemaker.py")
    at.button(key="sm_train_start").click().run()
    assert not at.exception, at.exception
    (job_id,) = db.execute("SELECT id FROM jobs WHERE kind = 'sagemaker-train'").fetchone()
    db.execute("UPDATE jobs SET params = json_set(params, '$.poll_seconds', 0) WHERE id = ?", [job_id])
    run_job(ws, job_id=job_id)
    assert get_job(db, job_id)["state"] == "done"
    search = grid_search.start_search(db, backend="sagemaker", grid={"epochs": [5], "num_layers": [18]}, actor=ACTOR,
                                      external_name="grid-1")
    grid_search.add_point(db, search_id=search, params={"epochs": 5, "num_layers": 18}, metrics={"accuracy": 0.9},
                          external_name="grid-1-001")
    at.run()
    assert not at.exception, at.exception
    tables = [d.value for d in at.dataframe]
    jobs_table = next(t for t in tables if "sagemaker status" in t.columns)
    assert jobs_table.iloc[0]["sagemaker status"] == "Completed" and jobs_table.iloc[0]["state"] == "done"
    results = next(t for t in tables if "num layers" in t.columns)
    assert results.iloc[0]["accuracy"] == 0.9 and results.iloc[0]["backend"] == "sagemaker"
    assert at.selectbox(key="sm_tf_version").options  # the new version can be used for batch transform


def test_jobs_and_versions_listed_are_sagemakers_only(ws, db, aws_env):
    configure(db)
    other = create_job(db, kind="classify", params={}, actor=ACTOR)
    at = start_app("pages/sagemaker.py")
    assert "No SageMaker job yet." in texts(at.caption)
    assert "No SageMaker model version yet: train or tune first." in texts(at.info)
    job_id = create_job(db, kind="sagemaker-train", params={"sagemaker_name": "tj-9", "sagemaker_status": "InProgress",
                                                            "polled_at": "2026-01-01T00:00:00Z"}, actor=ACTOR)
    save_version(db, model_file="local.onnx", name="local-1", classes=["product"], models_dir=ws.models_dir,
                 backbone="local-backbone", hyperparams={}, metrics={}, thresholds={}, training_data={},
                 activate=False, actor=ACTOR)
    desc = {"name": "tj-9", "status": "Completed", "metrics": {"validation:accuracy": 0.9}, "seconds": 60.0,
            "model_artifacts": f"s3://{BUCKET}/rc/tj-9/model.tar.gz", "hyperparameters": {"epochs": "5"},
            "training_image": "image-classification:1"}
    version_id = smt.save_version(db, desc=desc, actor=ACTOR, training_data={})
    at.run()
    assert not at.exception, at.exception
    jobs_table = next(d.value for d in at.dataframe if "sagemaker status" in d.value.columns)
    assert list(jobs_table["job"]) == [job_id] and other not in list(jobs_table["job"])
    row = jobs_table.iloc[0]
    assert (row["kind"], row["state"], row["sagemaker job"], row["sagemaker status"], row["checked"]) == (
        "sagemaker-train", "queued", "tj-9", "InProgress", "2026-01-01T00:00:00Z")
    assert at.selectbox(key="sm_job").value == job_id
    assert at.selectbox(key="sm_tf_version").options == [f"#{version_id} sm-tj-9"]  # not the local version

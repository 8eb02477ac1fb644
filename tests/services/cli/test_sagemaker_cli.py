"""SageMaker commands: a dry run prints the exact request as the JSON summary; a training run under moto."""

from __future__ import annotations

import json

from services.cli.main import main
from tests.conftest_sagemaker import add_labels, configure


def _last_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_dry_runs_print_the_requests(ws, db, aws_env, capsys):
    configure(db)
    add_labels(db, per_class=3)
    assert main(["--data-dir", str(ws.root), "sagemaker-tune", "--dry-run", "--epochs", "5,10",
                 "--num-layers", "18"]) == 0
    out = _last_json(capsys)
    ranges = out["requests"]["CreateHyperParameterTuningJob"]["HyperParameterTuningJobConfig"]["ParameterRanges"]
    assert ranges["CategoricalParameterRanges"][0] == {"Name": "epochs", "Values": ["5", "10"]}
    assert main(["--data-dir", str(ws.root), "sagemaker-transform", "--input", "s3://b/in", "--dry-run"]) == 1
    assert "no SageMaker model version yet" in _last_json(capsys)["error"]


def test_train_waits_on_the_job(ws, db, moto, capsys):
    configure(db)
    add_labels(db, per_class=3)
    assert main(["--data-dir", str(ws.root), "sagemaker-train", "--epochs", "3", "--poll-seconds", "0"]) == 0
    out = _last_json(capsys)
    assert out["state"] == "done" and out["sagemaker_status"] == "Completed"
    assert out["result"]["model_version_id"] == 1

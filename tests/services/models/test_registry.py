"""Model versions: activation routes with the version's certified thresholds, and its calibration scores photos."""

import numpy as np
import pytest

from services.core.config import get_settings
from services.models.certify import temper
from services.models.head import fit_head
from services.models.registry import Calibrated, activate_version, list_versions, load_head, load_model, save_version
from services.reviews.decisions import route


def _head():
    rng = np.random.default_rng(0)
    emb = np.r_[rng.normal(0, 1, (20, 8)), rng.normal(2, 1, (20, 8))]
    return fit_head(emb, np.array(["package"] * 20 + ["product"] * 20), None), emb


def _save(ws, db, *, thresholds, temperature, activate=True):
    head, _ = _head()
    return save_version(db, head=head, models_dir=ws.models_dir, backbone="b", hyperparams={},
                        metrics={"temperature": temperature}, thresholds=thresholds, training_data={},
                        activate=activate, actor="tester")


def test_activating_a_version_routes_with_its_certified_thresholds(ws, db):
    first = _save(ws, db, thresholds={"package": 0.9, "product": 0.95}, temperature=1.0)
    # classes the version does not know, or could not certify, are never automatic
    assert get_settings(db)["thresholds"] == {"package": 0.9, "product": 0.95, "full_length": 1.0, "half_length": 1.0}
    _save(ws, db, thresholds={"package": 1.0, "product": 0.8}, temperature=1.0)
    assert get_settings(db)["thresholds"]["package"] == 1.0
    activate_version(db, version_id=first, actor="tester")  # a rollback brings its own thresholds back
    assert get_settings(db)["thresholds"]["product"] == 0.95
    audit = [r["action"] for r in db.query("SELECT action FROM audit_log WHERE target = 'thresholds'")]
    assert audit == ["setting.change"] * 3


def test_an_inactive_version_leaves_the_routing_thresholds_alone(ws, db):
    before = get_settings(db)["thresholds"]
    _save(ws, db, thresholds={"package": 0.6, "product": 0.6}, temperature=1.0, activate=False)
    assert get_settings(db)["thresholds"] == before


def test_a_threshold_of_one_never_decides_automatically():
    assert not route(label="product", confidence=1.0, thresholds={"product": 1.0}, audit_rate=0, sha256="0" * 64).automatic
    assert route(label="product", confidence=0.96, thresholds={"product": 0.95}, audit_rate=0, sha256="0" * 64).automatic


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_the_version_temperature_calibrates_every_prediction(ws, db, temperature):
    version_id = _save(ws, db, thresholds={"package": 0.9, "product": 0.9}, temperature=temperature)
    version = next(v for v in list_versions(db) if v["id"] == version_id)
    _, emb = _head()
    model = load_head(version, models_dir=ws.models_dir)
    raw = load_model(version, models_dir=ws.models_dir).predict_proba(emb, lambda idx: None)
    got = model.predict_proba(emb, lambda idx: None)
    assert isinstance(model, Calibrated) == (temperature != 1.0)
    assert np.allclose(got, temper(raw, temperature)) and np.allclose(got.sum(1), 1.0)
    assert model.classes == ["package", "product"]

"""The audit watch: audited automatic decisions measure each class in production; a drift below the target sends
the class to people with an alert, and thin evidence raises the audit rate."""

import numpy as np
import pytest

from services.core.config import get_settings, set_setting
from services.core.errors import NotFound, PermissionDenied
from services.hitl import audit_watch
from services.models.head import fit_head
from services.models.registry import save_version
from services.reviews.decisions import audit_rate_of
from services.worker.housekeeping import Housekeeping


def _version(ws, db, *, thresholds):
    rng = np.random.default_rng(0)
    emb = np.r_[rng.normal(0, 1, (10, 4)), rng.normal(2, 1, (10, 4))]
    head = fit_head(emb, np.array(["package"] * 10 + ["product"] * 10), None)
    return save_version(db, head=head, models_dir=ws.models_dir, backbone="b", hyperparams={},
                        metrics={"target_accuracy": 0.98}, thresholds=thresholds, training_data={}, activate=True,
                        actor="tester")


def _audits(db, version_id, *, predicted, answers):
    """One audited automatic decision per answer: the model said ``predicted``, the inspector ``answer``."""
    base = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    with db.atomic():
        for n, answer in enumerate(answers, start=base):
            db.execute("INSERT INTO reviews (id, review_type) VALUES (?, 'product')", [f"r{n}"])
            image_id = db.execute("INSERT INTO images (review_id, uri, sha256, status) VALUES (?, ?, ?, 'decided')",
                                  [f"r{n}", f"/p/{n}.jpg", f"{n:064x}"]).lastrowid
            pred = db.execute("INSERT INTO predictions (image_id, model_version_id, label, confidence) "
                              "VALUES (?, ?, ?, 0.99)", [image_id, version_id, predicted]).lastrowid
            db.execute("INSERT INTO answers (image_id, inspector, label, kind, prediction_id, queue_reason) "
                       "VALUES (?, 'ines', ?, 'single', ?, 'audit')", [image_id, answer, pred])


def test_a_class_drifting_below_target_goes_to_people_with_an_alert(ws, db):
    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    _audits(db, version, predicted="product", answers=["product"] * 40 + ["package"] * 10)  # 80%: a new camera
    _audits(db, version, predicted="package", answers=["package"] * 30)
    state = audit_watch.production_accuracy(db)
    product = state["classes"]["product"]
    assert (product["audited"], product["right"], product["status"]) == (50, 40, "below_target")
    assert product["high95"] < 0.98 and state["classes"]["package"]["status"] == "watching"

    out = audit_watch.watch(db)
    assert out["sent_to_people"] == ["product"]
    assert get_settings(db)["thresholds"]["product"] == 1.0 and get_settings(db)["thresholds"]["package"] == 0.9
    [alert] = audit_watch.alerts(db, actor="admin-ann")
    assert alert["class"] == "product" and alert["audited"] == 50 and alert["right"] == 40
    assert "now go to people" in alert["detail"]
    logged = db.execute("SELECT actor, detail FROM audit_log WHERE action = 'model.class_sent_to_people'").fetchall()
    assert len(logged) == 1 and logged[0][0] == audit_watch.ACTOR
    assert audit_watch.watch(db)["sent_to_people"] == []  # once: the class already goes to people

    audit_watch.resolve_alert(db, alert_id=alert["id"], actor="admin-ann")
    assert audit_watch.alerts(db, actor="admin-ann") == []
    assert len(audit_watch.alerts(db, actor="admin-ann", open_only=False)) == 1
    with pytest.raises(NotFound):
        audit_watch.resolve_alert(db, alert_id=999, actor="admin-ann")


def test_audits_that_agree_leave_the_thresholds_and_certify_in_production(ws, db):
    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    _audits(db, version, predicted="product", answers=["product"] * 300)
    out = audit_watch.watch(db)
    assert out["sent_to_people"] == [] and get_settings(db)["thresholds"]["product"] == 0.95
    assert audit_watch.production_accuracy(db)["classes"]["product"]["status"] == "certified"


def test_thin_evidence_is_audited_more_and_certified_classes_at_the_base_rate(ws, db):
    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    set_setting(db, key="audit_rate", value=0.02, actor="tester")
    _audits(db, version, predicted="product", answers=["product"] * 300)
    audit_watch.watch(db)
    settings = get_settings(db)
    assert audit_rate_of(settings, "product") == 0.02  # certified in production
    assert audit_rate_of(settings, "package") == pytest.approx(0.1)  # no audits yet: five times as many


def test_the_watch_runs_in_the_worker_housekeeping(ws, db):
    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    _audits(db, version, predicted="package", answers=["product"] * 20)
    assert Housekeeping(ws).run_all()["sent_to_people"] == ["package"]


def test_a_split_vote_counts_for_nobody_and_undone_answers_do_not_count(ws, db):
    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    _audits(db, version, predicted="product", answers=["package"])
    image_id = db.execute("SELECT MAX(id) FROM images").fetchone()[0]
    pred = db.execute("SELECT id FROM predictions WHERE image_id = ?", [image_id]).fetchone()[0]
    db.execute("INSERT INTO answers (image_id, inspector, label, kind, prediction_id, queue_reason) "
               "VALUES (?, 'ivo', 'product', 'overlap', ?, 'audit')", [image_id, pred])
    assert audit_watch.production_accuracy(db)["classes"]["product"]["audited"] == 0  # one each way


def test_only_admins_read_or_resolve_alerts(ws, db):
    from services.access.accounts import create_user

    create_user(db, username="ines", password="correct horse battery", roles=["inspector"], actor="tester")
    with pytest.raises(PermissionDenied):
        audit_watch.alerts(db, actor="ines")
    assert audit_watch.upper_bound(10, 10) == 1.0 and audit_watch.upper_bound(0, 10) < 0.3

"""Settings page: routing thresholds, credit rules, limits, and model versions."""

from __future__ import annotations

import json

import pytest

from services.core.config import DEFAULTS, get_settings, set_setting
from services.core.errors import InvalidInput
from services.models.registry import active_version, list_versions, load_model, save_version
from tests.pages.helpers import start_app
from tests.pages.markdown_check import shown_text


def audit_rows(db) -> list[tuple[str, str, str]]:
    return [(r["actor"], r["action"], r["target"]) for r in db.query(
        "SELECT actor, action, target FROM audit_log WHERE action = 'setting.change' ORDER BY id")]


def test_saving_a_threshold_stores_it_with_an_audit_entry(ws, db):
    at = start_app("pages/settings.py")
    assert at.slider(key="set_thr_product").value == DEFAULTS["thresholds"]["product"]
    at.slider(key="set_thr_product").set_value(0.75)
    at.button(key="set_save_routing").click().run()
    assert not at.exception and not at.error

    assert get_settings(db)["thresholds"] == {**DEFAULTS["thresholds"], "product": 0.75}
    assert audit_rows(db) == [
        ("local operator", "setting.change", "thresholds"),
        ("local operator", "setting.change", "audit_rate"),
        ("local operator", "setting.change", "hide_suggestion"),
    ]
    detail = json.loads(db.execute(
        "SELECT detail FROM audit_log WHERE target = 'thresholds' ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert detail["value"]["product"] == 0.75
    assert "Saved thresholds" in [t.value for t in at.toast]
    # a fresh session reads the stored value back
    assert start_app("pages/settings.py").slider(key="set_thr_product").value == 0.75


def test_audit_rate_and_hidden_suggestion_are_saved_together(ws, db):
    at = start_app("pages/settings.py")
    at.slider(key="set_audit").set_value(0.1)
    at.toggle(key="set_hide").set_value(True)
    at.button(key="set_save_routing").click().run()
    assert not at.exception and not at.error
    settings = get_settings(db)
    assert settings["audit_rate"] == 0.1 and settings["hide_suggestion"] is True


def test_a_rule_without_classes_is_refused_and_the_old_rule_kept(ws, db):
    at = start_app("pages/settings.py")
    assert at.multiselect(key="set_rule_classes_product").value == ["product"]
    at.multiselect(key="set_rule_classes_product").set_value([])
    at.button(key="set_save_rules").click().run()
    assert not at.exception
    assert len(at.error) == 1
    assert "rule for 'product': classes must be a non-empty subset" in shown_text(at.error[0].value)
    assert get_settings(db)["credit_rules"] == DEFAULTS["credit_rules"]
    assert audit_rows(db) == []


def test_removing_every_review_type_is_refused(ws, db):
    at = start_app("pages/settings.py")
    at.checkbox(key="set_rule_remove_product").check()
    at.checkbox(key="set_rule_remove_style").check()
    at.button(key="set_save_rules").click().run()
    assert not at.exception
    assert "credit rules must map each review type to a rule" in at.error[0].value
    assert get_settings(db)["credit_rules"] == DEFAULTS["credit_rules"]


def test_changing_adding_and_removing_rules(ws, db):
    at = start_app("pages/settings.py")
    at.multiselect(key="set_rule_classes_style").set_value(["full_length", "half_length"])
    at.radio(key="set_rule_mode_style").set_value("all")
    at.checkbox(key="set_rule_remove_product").check()
    at.text_input(key="set_rule_new").input("  bundle ")
    at.button(key="set_save_rules").click().run()
    assert not at.exception and not at.error
    assert get_settings(db)["credit_rules"] == {
        "style": {"classes": ["full_length", "half_length"], "mode": "all"},
        "bundle": {"classes": ["product"], "mode": "any"},
    }
    assert audit_rows(db) == [("local operator", "setting.change", "credit_rules")]
    # the new review type is offered on the other pages
    at.switch_page("pages/reviews.py").run()
    assert at.selectbox(key="rv_type").options == ["all", "style", "bundle"]


def test_storage_and_limits(ws, db):
    at = start_app("pages/settings.py")
    at.number_input(key="set_max_pixels").set_value(5_000_000)
    at.text_input(key="set_endpoint").input("http://127.0.0.1:8333")
    at.button(key="set_save_limits").click().run()
    assert not at.exception and not at.error
    settings = get_settings(db)
    assert settings["max_pixels"] == 5_000_000 and settings["s3_endpoint_url"] == "http://127.0.0.1:8333"


def test_no_model_versions_yet(ws):
    at = start_app("pages/settings.py")
    assert any(i.value.startswith("No model yet.") for i in at.info)
    assert not at.expander


def test_model_versions_are_listed_and_their_thresholds_applied(trained_ws):
    db = trained_ws.db()
    try:
        (version,) = list_versions(db)
        at = start_app("pages/settings.py")
        assert not at.exception
        assert not at.info
        titles = [e.label for e in at.expander]
        assert len(titles) == 1 and titles[0].startswith(f"● {version['name']} — macro-F1 ")
        assert f"on {version['training_data']['examples']} photos" in titles[0]
        assert not [b for b in at.button if b.key == f"set_mv_activate_{version['id']}"]  # already active
        assert len([d for d in at.dataframe if d.key != "set_shifts"]) == 2  # per-class metrics and the confusion matrix

        at.button(key=f"set_mv_thr_{version['id']}").click().run()
        assert not at.exception and not at.error
        suggested = {**DEFAULTS["thresholds"], **version["thresholds"]}
        assert get_settings(db)["thresholds"] == suggested
        assert audit_rows(db)[-1] == ("local operator", "setting.change", "thresholds")
        # the routing sliders move to the applied thresholds...
        for cls, value in suggested.items():
            assert at.slider(key=f"set_thr_{cls}").value == pytest.approx(value), cls
        # ...so saving the routing form afterwards (here: only the audit share changed) keeps them
        at.slider(key="set_audit").set_value(0.05)
        at.button(key="set_save_routing").click().run()
        assert not at.exception and not at.error
        assert get_settings(db)["thresholds"] == pytest.approx(suggested)
        assert get_settings(db)["audit_rate"] == 0.05
    finally:
        db.close()


def test_activating_another_model_version(trained_ws):
    db = trained_ws.db()
    try:
        first = active_version(db)
        second_id = save_version(
            db, head=load_model(first, models_dir=trained_ws.models_dir), models_dir=trained_ws.models_dir,
            backbone=first["backbone"], hyperparams=first["hyperparams"], metrics=first["metrics"],
            thresholds={**first["thresholds"], "product": 0.5}, training_data=first["training_data"],
            activate=False, actor="test",
        )
        at = start_app("pages/settings.py")
        titles = [e.label for e in at.expander]
        assert len(titles) == 2 and titles[1].startswith("● ") and not titles[0].startswith("● ")
        at.button(key=f"set_mv_activate_{second_id}").click().run()
        assert not at.exception and not at.error
        assert active_version(db)["id"] == second_id
        titles = [e.label for e in at.expander]
        assert titles[0].startswith("● ") and not titles[1].startswith("● ")
        assert not [b for b in at.button if b.key == f"set_mv_activate_{second_id}"]
    finally:
        db.close()


def test_line_settings_are_saved_and_bad_shifts_refused(ws, db):
    at = start_app("pages/settings.py")
    at.number_input(key="set_line_alert_pct").set_value(20.0)
    at.number_input(key="set_line_alert_minutes").set_value(30)
    at.button(key="set_save_lines").click().run()
    assert not at.exception
    stored = get_settings(db)
    assert stored["line_alert_pct"] == 20.0 and stored["line_alert_minutes"] == 30
    assert [s["name"] for s in stored["shifts"]] == ["early", "late", "night"]
    with pytest.raises(InvalidInput, match="HH:MM"):
        set_setting(db, key="shifts", value=[{"name": "x", "start": "25:00", "end": "06:00"}], actor="t")
    with pytest.raises(InvalidInput, match="twice"):
        set_setting(db, key="shifts", value=[{"name": "a", "start": "01:00", "end": "02:00"},
                                             {"name": "a", "start": "03:00", "end": "04:00"}], actor="t")


def test_retraining_settings_and_a_forced_run_with_its_log(trained_ws):
    from services.core.jobs import run_job
    from tests.pages.helpers import start_app

    at = start_app("pages/settings.py")
    at.number_input(key="set_retrain_need").set_value(50)
    at.button(key="set_save_retrain").click().run()
    db = trained_ws.db()
    assert db.execute("SELECT value FROM settings WHERE key = 'retrain_min_new_labels'").fetchone() == ("50",)
    at.button(key="set_retrain_now").click().run()
    (job_id,) = db.execute("SELECT id FROM jobs WHERE kind = 'retrain'").fetchone()
    assert run_job(trained_ws, job_id=job_id) == job_id
    at.run()
    logs = [d.value for d in at.dataframe if "outcome" in d.value.columns]  # read-only tables have no key here
    assert len(logs) == 1 and list(logs[0]["outcome"]) == ["promoted"] and list(logs[0]["trigger"]) == ["forced"]
    compare = [d.value for d in at.dataframe if "macro_f1" in d.value.columns]  # the versions side by side
    assert len(compare) == 1 and len(compare[0]) == 2 and list(compare[0]["active"]) == [True, False]
    assert {"f1_product", "f1_package", "automatic_share"} <= set(compare[0].columns)
    assert len(at.get("plotly_chart")) == 1


def test_queue_value_hours_are_saved(ws, db):
    at = start_app("pages/settings.py")
    assert at.number_input(key="set_queue_value_hours").value == 24.0
    at.number_input(key="set_queue_value_hours").set_value(6.0)
    at.button(key="set_save_labelling").click().run()
    assert not at.exception
    assert get_settings(db)["queue_value_hours"] == 6.0


def test_saving_storage_roots_names_only_what_changed_and_the_caption_follows(ws, db, tmp_path):
    at = start_app("pages/settings.py")
    assert any("No storage roots added" in c.value for c in at.caption)
    at.text_area(key="set_storage_roots").input(str(tmp_path))
    at.button(key="set_save_limits").click().run()
    assert not at.exception and not at.error
    assert [t.value for t in at.toast] == ["Saved storage roots"]  # not the limits left as they were
    assert not any("No storage roots added" in c.value for c in at.caption)
    assert get_settings(db)["storage_roots"] == [str(tmp_path)]

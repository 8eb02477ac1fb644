"""Models page: grid searches started and reported, and thresholds picked on a version's trade-off curve."""

from __future__ import annotations

from streamlit.elements.lib.utils import user_key_from_element_id

from services.core import jobs
from services.core.config import get_settings
from services.core.storage import ObjectStore
from services.models.registry import active_version
from services.models.training import import_folder
from tests.pages.helpers import start_app


def table_with(at, column: str):
    """The displayed table holding ``column`` (display-only dataframes carry no key in the test tree)."""
    tables = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(tables) == 1, [list(d.value.columns) for d in at.dataframe]
    return tables[0]


def test_a_head_grid_search_runs_and_each_point_shows_its_report(ws, db, samples):
    import_folder(db, root=str(samples), store=ObjectStore(), actor="test")
    at = start_app("pages/models.py")
    assert not at.exception
    at.multiselect(key="mdl_c").set_value([0.3, 1.0])
    at.number_input(key="mdl_folds").set_value(3)
    at.button(key="mdl_start").click().run()
    assert not at.exception and not at.error
    job_id = at.session_state["mdl_job"]
    assert jobs.get_job(db, job_id)["kind"] == "grid-search"
    jobs.run_job(ws, job_id=job_id)
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    # the samples hold 10 to 23 photos a class: the thin ones are named with what they need
    assert sorted(w.value for w in at.warning) == [
        "full_length has 17 labelled photos: 3 more make its figures dependable",
        "half_length has 10 labelled photos: 10 more make its figures dependable",
        "package has 10 labelled photos: 10 more make its figures dependable"]
    table = table_with(at, "C")  # columns in words: "C", "macro f1", not param_C, macro_f1
    assert sorted(table["C"]) == [0.3, 1.0] and table["macro f1"].between(0.8, 1).all()
    assert not [c for c in table.columns if "_" in c]
    keys = {user_key_from_element_id(c.proto.id) for c in at.get("plotly_chart")}
    assert {"mdl_bar", "mdl_point_report_pc_chart", "mdl_point_report_cm", "mdl_point_report_tradeoff"} <= keys
    # points and searches in words, not dict reprs (issue 20 item 9: '{'C': 0.1}' was a label)
    assert sorted(o.split(" — ")[0] for o in at.selectbox(key="mdl_point").options) == ["C = 0.3", "C = 1"]
    assert "(C 0.3, 1)" in at.selectbox(key="mdl_search").options[0]
    at.button(key="mdl_train_best").click().run()
    train = db.execute("SELECT params FROM jobs WHERE kind = 'train'").fetchone()
    assert train is not None and '"activate": false' in train[0]


def test_an_empty_grid_is_refused_with_the_reason(ws, db):
    at = start_app("pages/models.py")
    at.multiselect(key="mdl_c").set_value([])
    at.button(key="mdl_start").click().run()
    assert not at.exception and at.error and "positive values of C" in at.error[0].value
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_a_target_picked_on_the_tradeoff_curve_sets_the_routing_thresholds(trained_ws):
    db = trained_ws.db()
    version = active_version(db)
    curve = {p["target"]: p for p in version["metrics"]["tradeoff"]}
    at = start_app("pages/models.py")
    assert not at.exception
    assert at.select_slider(key="mdl_tgt").value == 0.98
    # 60 photos certify little at 98%: the page says so, and how many more labels would help
    assert any(c.value.startswith("Certified: ") and "more labelled photos would certify more" in c.value
               for c in at.caption)
    at.select_slider(key="mdl_tgt").set_value(0.9).run()
    assert table_with(at, "product").iloc[0].to_dict() == {k.replace("_", " "): v  # classes in words (issue 20 item 9)
                                                            for k, v in curve[0.9]["thresholds"].items()}
    assert f"{curve[0.9]['automatic_share']:.1%}" in [m.value for m in at.metric]
    assert f"{curve[0.9]['point_share']:.1%}" in [m.value for m in at.metric]  # the point estimate beside it
    at.button(key="mdl_apply").click().run()
    assert not at.exception and at.success
    assert get_settings(db)["thresholds"] == curve[0.9]["thresholds"]


def test_searches_are_compared_in_one_table(ws, db, samples):
    from services.models import model_search

    import_folder(db, root=str(samples), store=ObjectStore(), actor="test")
    for c in (0.1, 1.0):
        jobs.run_job(ws, job_id=model_search.queue(db, actor="test", backend="head", grid={"C": [c]}, folds=2))
    at = start_app("pages/models.py")
    [other] = at.multiselect(key="mdl_compare").options
    at.multiselect(key="mdl_compare").set_value([other]).run()
    assert not at.exception
    both = table_with(at, "search")
    assert sorted(both["C"]) == [0.1, 1.0] and both["search"].nunique() == 2


def test_a_sagemaker_search_shows_its_points_without_local_training(ws, db):
    from services.models import grid_search

    search = grid_search.start_search(db, backend="sagemaker", grid={"epochs": [5], "num_layers": [18, 34]},
                                      actor="test", external_name="tune-1")
    grid_search.add_point(db, search_id=search, params={"epochs": 5, "num_layers": 18}, metrics={"accuracy": 0.91},
                          external_name="tune-1-001")
    grid_search.add_point(db, search_id=search, params={"epochs": 5, "num_layers": 34}, metrics={},
                          error="AlgorithmError: out of memory", external_name="tune-1-002")
    grid_search.finish_search(db, search_id=search)
    at = start_app("pages/models.py")
    assert not at.exception and not at.error
    table = table_with(at, "num layers")
    assert list(table["accuracy"].fillna(-1)) == [0.91, -1] and "out of memory" in table["error"].iloc[1]
    assert not [b for b in at.button if b.key == "mdl_train_best"]
    assert any("SageMaker saves the best point" in c.value for c in at.caption)


def test_a_class_below_target_in_production_shows_its_alert_until_dealt_with(ws, db):
    from services.hitl import audit_watch
    from tests.services.hitl.test_audit_watch import _audits, _version

    version = _version(ws, db, thresholds={"package": 0.9, "product": 0.95})
    _audits(db, version, predicted="product", answers=["product"] * 20 + ["package"] * 10)
    audit_watch.watch(db)
    at = start_app("pages/models.py")
    assert not at.exception
    status = table_with(at, "at most (95%)").set_index("class")["status"]
    assert status["product"] == "below target" and status["package"] == "watching: more audits needed"
    assert any("product photos now go to people" in w.value for w in at.warning)
    [alert] = audit_watch.alerts(db, actor="tester")
    at.button(key=f"mdl_alert_{alert['id']}").click().run()
    assert not at.exception and not any("now go to people" in w.value for w in at.warning)
    assert audit_watch.alerts(db, actor="tester") == []

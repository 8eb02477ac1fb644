"""Roles enforced inside the services: each entry point, called directly as each role, refuses what the
role may not do with a message naming the role needed, and lets through what it may."""

from __future__ import annotations

import pytest

from services.access import accounts, sso
from services.core import audit, authz, config, jobs
from services.core.errors import ConsoleError, PermissionDenied
from services.core.storage import ObjectStore
from services.dataset_filter import checks as filter_checks
from services.dataset_filter import job as dataset_filter
from services.hitl import answers, consensus, export, gold, inspector_stats, mistakes, queue
from services.lines import feed as lines
from services.lines import stats as line_stats
from services.lines import targets as line_targets
from services.models import registry, training
from services.reuse import detection as reuse
from services.reviews import classify, ingest
from services.reviews import outcomes as reviews
from services.sagemaker import status as sagemaker_status

GOOD = "correct horse battery staple"
PEOPLE = {"ines": ["inspector"], "otto": ["ops"], "ada": ["admin"]}


@pytest.fixture
def people(db):
    for name, roles in PEOPLE.items():
        accounts.create_user(db, username=name, password=GOOD, roles=roles, actor="cli:root")
    return db


def _calls(ws, tmp_path):  # type: ignore[no-untyped-def]
    """(name, action, call(db, actor)) for every service entry point that acts for a person."""
    store = ObjectStore()
    missing = str(tmp_path / "missing.jsonl")
    return [
        ("queue.claim_next", "reviews.label", lambda db, a: queue.claim_next(db, inspector=a)),
        ("queue.peek_next", "reviews.label", lambda db, a: queue.peek_next(db, inspector=a)),
        ("queue.release", "reviews.label", lambda db, a: queue.release(db, image_id=1, inspector=a)),
        ("queue.flag", "reviews.label", lambda db, a: queue.flag(db, image_id=1, inspector=a, reason="broken")),
        ("answers.submit", "reviews.label", lambda db, a: answers.submit(db, image_id=1, label="product", actor=a)),
        ("answers.undo_last", "reviews.label", lambda db, a: answers.undo_last(db, actor=a)),
        ("filter_checks.claim", "reviews.label", lambda db, a: filter_checks.claim_next_check(db, inspector=a)),
        ("filter_checks.release", "reviews.label", lambda db, a: filter_checks.release_check(db, check_id=1, inspector=a)),
        ("filter_checks.answer", "reviews.label",
         lambda db, a: filter_checks.answer_check(db, check_id=1, yes=True, actor=a, store=store)),
        ("reviews.list_images", "reviews.read", lambda db, a: reviews.list_images(db, actor=a)),
        ("reviews.review_detail", "reviews.read", lambda db, a: reviews.review_detail(db, "r1", actor=a)),
        ("consensus.adjudicate", "quality.manage", lambda db, a: consensus.adjudicate(db, image_id=1, label="product", actor=a)),
        ("mistakes.requeue", "quality.manage", lambda db, a: mistakes.requeue(db, image_id=1, actor=a, reason="check")),
        ("gold.mark_gold", "quality.manage", lambda db, a: gold.mark_gold(db, image_id=1, label="product", actor=a)),
        ("gold.unmark_gold", "quality.manage", lambda db, a: gold.unmark_gold(db, image_id=1, actor=a)),
        ("export.to_csv", "quality.manage", lambda db, a: export.to_csv(db, actor=a)),
        ("export.to_groundtruth", "quality.manage", lambda db, a: export.to_groundtruth(db, actor=a)),
        ("config.set_setting", "settings.change", lambda db, a: config.set_setting(db, key="audit_rate", value=0.05, actor=a)),
        ("registry.activate_version", "models.manage", lambda db, a: registry.activate_version(db, version_id=99, actor=a)),
        ("training.train", "models.manage", lambda db, a: training.train(ws, db, actor=a)),
        ("training.import_folder", "jobs.manage",
         lambda db, a: training.import_folder(db, root=str(tmp_path / "none"), store=store, actor=a)),
        ("training.import_groundtruth", "jobs.manage",
         lambda db, a: training.import_groundtruth(db, uri=missing, store=store, actor=a)),
        ("jobs.create_job", "jobs.manage", lambda db, a: jobs.create_job(db, kind="classify", params={}, actor=a)),
        ("jobs.cancel_job", "jobs.manage", lambda db, a: jobs.cancel_job(db, job_id=99, actor=a)),
        ("jobs.resume_job", "jobs.manage", lambda db, a: jobs.resume_job(db, job_id=99, actor=a)),
        ("jobs.job_ids", "jobs.manage", lambda db, a: jobs.job_ids(db, kind="classify", actor=a)),
        ("training.label_count", "jobs.manage", lambda db, a: training.label_count(db, actor=a)),
        ("classify.pending_count", "jobs.manage", lambda db, a: classify.pending_count(db, actor=a)),
        ("sagemaker_status.recent_jobs", "models.manage", lambda db, a: sagemaker_status.recent_jobs(db, actor=a)),
        ("sagemaker_status.model_versions", "models.manage",
         lambda db, a: sagemaker_status.model_versions(db, actor=a)),
        ("ingest.ingest_manifest", "jobs.manage", lambda db, a: ingest.ingest_manifest(db, uri=missing, store=store, actor=a)),
        ("ingest.ingest_listing", "jobs.manage",
         lambda db, a: ingest.ingest_listing(db, prefix_uri=str(tmp_path / "none"), store=store, review_type="product", actor=a)),
        ("dataset_filter.launch", "jobs.manage", lambda db, a: dataset_filter.launch(db, {}, actor=a, store=store)),
        ("line_targets.set_target", "lines.targets",
         lambda db, a: line_targets.set_target(db, line_id="L1", shift="early", trays_per_hour=100.0, actor=a)),
        ("line_targets.clear_target", "lines.targets",
         lambda db, a: line_targets.clear_target(db, line_id="L1", shift="early", actor=a)),
        ("line_stats.dashboard_data", "lines.read",
         lambda db, a: line_stats.dashboard_data(db, actor=a, since_ts=0.0, until_ts=3600.0)),
        ("lines.ingest_source", "lines.ingest",
         lambda db, a: lines.ingest_source(db, uri=str(tmp_path / "none"), store=store, actor=a)),
        ("lines.forget_file", "lines.ingest", lambda db, a: lines.forget_file(db, uri="x.jsonl", actor=a)),
        ("accounts.create_user", "users.manage",
         lambda db, a: accounts.create_user(db, username=f"new-{a}", password=GOOD, roles=["ops"], actor=a)),
        ("accounts.set_roles", "users.manage", lambda db, a: accounts.set_roles(db, username="otto", roles=["ops"], actor=a)),
        ("accounts.set_disabled", "users.manage",
         lambda db, a: accounts.set_disabled(db, username="nobody", disabled=False, actor=a)),
        ("accounts.set_password", "users.manage",
         lambda db, a: accounts.set_password(db, username="nobody", password=GOOD + "!", actor=a)),
        ("accounts.list_users", "users.manage", lambda db, a: accounts.list_users(db, actor=a)),
        ("audit.entries", "audit.read", lambda db, a: audit.entries(db, actor=a)),
        ("reviews.overview", "stats.read", lambda db, a: reviews.overview(db, actor=a)),
        ("inspector_stats.inspector_stats", "stats.read", lambda db, a: inspector_stats.inspector_stats(db, actor=a)),
        ("inspector_stats.team_daily", "stats.read", lambda db, a: inspector_stats.team_daily(db, actor=a)),
        ("sso.set_mapping", "users.manage",
         lambda db, a: sso.set_mapping(db, kind="group", subject="qa", roles=["inspector"], actor=a)),
        ("sso.remove_mapping", "users.manage", lambda db, a: sso.remove_mapping(db, kind="group", subject="x", actor=a)),
        ("sso.mappings", "users.manage", lambda db, a: sso.mappings(db, actor=a)),
        ("reuse.list_flags", "quality.manage", lambda db, a: reuse.list_flags(db, actor=a)),
        ("reuse.accounts_involved", "quality.manage", lambda db, a: reuse.accounts_involved(db, actor=a)),
        ("reuse.resolve", "quality.manage", lambda db, a: reuse.resolve(db, flag_id=9, status="cleared", actor=a)),
    ]


def test_every_entry_point_refuses_the_roles_that_may_not_and_admits_those_that_may(people, ws, tmp_path):
    calls = _calls(ws, tmp_path)
    assert {action for _, action, _ in calls} == set(authz.PERMISSIONS)  # every action is exercised
    checked = 0
    for name, action, call in calls:
        for person, roles in PEOPLE.items():
            may = bool(authz.PERMISSIONS[action] & set(roles))
            if not may:
                with pytest.raises(PermissionDenied, match=f"{person} may not .*needs the .*role") as refused:
                    try:
                        call(people, person)
                    except ConsoleError as exc:
                        assert isinstance(exc, PermissionDenied), f"{name} as {person}: {exc!r}"
                        raise
                    pytest.fail(f"{name} let {person} ({roles}) through")
                assert all(r in str(refused.value) for r in authz.PERMISSIONS[action]), name
            else:
                try:
                    call(people, person)
                except PermissionDenied as exc:  # pragma: no cover - the failure message names the call
                    pytest.fail(f"{name} refused {person} ({roles}): {exc}")
                except ConsoleError:
                    pass  # allowed through the check; the call itself found nothing to work on
            checked += 1
    assert checked == len(calls) * len(PEOPLE)


def test_a_refused_call_changes_nothing(people):
    before = people.execute("SELECT COUNT(*) FROM settings").fetchone()[0]
    with pytest.raises(PermissionDenied):
        config.set_setting(people, key="audit_rate", value=0.5, actor="ines")
    assert people.execute("SELECT COUNT(*) FROM settings").fetchone()[0] == before
    assert config.get_settings(people)["audit_rate"] == config.DEFAULTS["audit_rate"]


def test_roles_are_read_at_each_call_so_a_demotion_or_disabling_counts_at_once(people):
    config.set_setting(people, key="audit_rate", value=0.05, actor="ada")
    accounts.set_roles(people, username="ada", roles=["inspector"], actor="cli:root")
    with pytest.raises(PermissionDenied, match="ada may not change settings"):
        config.set_setting(people, key="audit_rate", value=0.06, actor="ada")
    queue.claim_next(people, inspector="ines")  # allowed (an empty queue)
    accounts.set_disabled(people, username="ines", disabled=True, actor="cli:root")
    with pytest.raises(PermissionDenied, match="ines may not label photos"):
        queue.claim_next(people, inspector="ines")


def test_unknown_names_get_nothing_once_accounts_exist_and_everything_in_set_up_mode(db):
    assert authz.roles_of(db, "anyone") == frozenset(authz.ROLES)  # set-up mode: the local operator
    accounts.create_user(db, username="ada", password=GOOD, roles=["admin"], actor="cli:root")
    assert authz.roles_of(db, "anyone") == frozenset()
    with pytest.raises(PermissionDenied):
        reviews.list_images(db, actor="anyone")
    assert authz.roles_of(db, "cli:root") == frozenset(authz.ROLES)  # the server's shell and the console itself


def test_user_names_cannot_pose_as_system_principals(db):
    with pytest.raises(ConsoleError, match="colons"):
        accounts.create_user(db, username="cli:root", password=GOOD, roles=["inspector"], actor="cli:root")


def test_users_may_change_their_own_password_but_not_someone_elses(people):
    accounts.set_password(people, username="ines", password=GOOD + " 2", actor="ines")
    with pytest.raises(PermissionDenied):
        accounts.set_password(people, username="otto", password=GOOD + " 2", actor="ines")

"""Issue 19 item 10: every public service function that acts for a person (a keyword-only ``actor``) refuses
an unknown actor and a user without the role it needs, before it reads its other arguments.

The list is built by scanning every module of ``services`` (``inspect.signature``), so a new writer that
forgets ``authz.require`` fails here without anyone adding it to a table."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest

import services
from services.access import accounts
from services.core.errors import PermissionDenied
from services.core.storage import ObjectStore
from services.models import grid_search
from services.reviews import decisions, ingest

GOOD = "correct horse battery staple"

# Functions with an ``actor`` keyword that legitimately accept any actor, and why.
ALLOWLIST = {
    "services.core.audit.record": "writes the audit trail for any actor, including refused sign-ins",
    "services.core.authz.allowed": "is the check itself",
    "services.core.authz.require": "is the check itself",
    "services.hitl.answers.last_answer": "reads only the actor's own answers (none for an unknown name)",
}


def _actor_functions() -> list[tuple[str, Callable[..., Any]]]:
    """(dotted name, function) for every public function of services/ with a keyword-only ``actor``."""
    found = []
    for info in pkgutil.walk_packages(services.__path__, "services."):
        if ".data" in info.name or info.name.startswith("services.cli"):
            continue  # bundled conversion scripts; the command line (it calls the services below)
        module = importlib.import_module(info.name)
        for name, func in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(func) or func.__module__ != module.__name__:
                continue
            param = inspect.signature(func).parameters.get("actor")
            if param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY:
                found.append((f"{module.__name__}.{name}", func))
    return sorted(found, key=lambda item: item[0])


FUNCTIONS = _actor_functions()


def _call(func: Callable[..., Any], db: Any, actor: str) -> Any:
    """Call ``func`` as ``actor`` with the database and None for every other required argument: the role
    check comes first, so nothing else is read."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {"actor": actor}
    for p in inspect.signature(func).parameters.values():
        if p.name == "actor" or p.default is not inspect.Parameter.empty:
            continue
        value = db if p.name == "db" else None
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            args.append(value)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
    return func(*args, **kwargs)


@pytest.fixture
def people(db):
    """Not set-up mode: an ops user exists, so an unknown name holds no role."""
    accounts.create_user(db, username="otto", password=GOOD, roles=["ops"], actor="cli:root")
    accounts.create_user(db, username="ines", password=GOOD, roles=["inspector"], actor="cli:root")
    return db


def test_the_scan_finds_the_writers():
    names = {name for name, _ in FUNCTIONS}
    assert len(names) > 40
    for expected in ("services.reviews.decisions.decide", "services.models.grid_search.start_search",
                     "services.reviews.ingest.ingest_rows", "services.models.registry.save_version"):
        assert expected in names
    assert set(ALLOWLIST) <= names  # no stale entries


@pytest.mark.parametrize("name,func", [f for f in FUNCTIONS if f[0] not in ALLOWLIST], ids=lambda v: v
                         if isinstance(v, str) else "")
def test_every_actor_function_refuses_an_unknown_actor(people, name, func):
    with pytest.raises(PermissionDenied):
        _call(func, people, "nobody")


@pytest.mark.parametrize("call,wrong", [
    (lambda db, a: decisions.decide(db, image_id=1, label="product", actor=a), "otto"),
    (lambda db, a: grid_search.start_search(db, backend="head", grid={"c": [1.0]}, actor=a), "otto"),
    (lambda db, a: grid_search.start_search(db, backend="head", grid={"c": [1.0]}, actor=a), "ines"),
    (lambda db, a: ingest.ingest_rows(db, rows=[], store=ObjectStore(), batch="b", actor=a), "otto"),
    (lambda db, a: ingest.ingest_rows(db, rows=[], store=ObjectStore(), batch="b", actor=a), "ines"),
], ids=["decide-ops", "start_search-ops", "start_search-inspector", "ingest_rows-ops", "ingest_rows-inspector"])
def test_writers_refuse_unknown_actors_and_wrong_roles(people, call, wrong):
    for actor in ("nobody", wrong):
        with pytest.raises(PermissionDenied):
            call(people, actor)
    assert people.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0
    assert people.execute("SELECT COUNT(*) FROM grid_searches").fetchone()[0] == 0


def test_decide_by_consensus_is_authorised_as_the_system(people):
    with pytest.raises(PermissionDenied):
        decisions.decide(people, image_id=1, label="product", actor="consensus")

"""Fixtures: a fresh workspace per test, the real models shared per session, real sample photos."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from services.core.config import DATA_DIR_ENV, STORAGE_ROOTS_ENV, Workspace
from services.models.embedder import BACKBONE, export_onnx
from services.worker import kinds

pytest_plugins = ["tests.conftest_s3", "tests.conftest_sagemaker"]

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples" / "reviews"

os.environ.setdefault("REVIEW_CONSOLE_WORKER", "off")  # tests run jobs explicitly, never on a hidden thread
kinds.install()  # every job kind known to the runner, as the app and the command line have them


@pytest.fixture(scope="session", autouse=True)
def _test_files_are_a_storage_root(tmp_path_factory):
    """Tests keep their photos, manifests and outputs beside the workspace, in pytest's temporary folders, and
    read the shared sample photos: the console may read and write there as a deployer's
    ``REVIEW_CONSOLE_STORAGE_ROOTS`` would allow. Tests of the default (the workspace only) take it away
    (``tests/services/core/test_storage_default.py``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(STORAGE_ROOTS_ENV, os.pathsep.join([str(tmp_path_factory.getbasetemp().resolve()),
                                                      str(SHARED.resolve())]))
        yield


@pytest.fixture(scope="session")
def backbone_onnx(tmp_path_factory) -> Path:
    """The backbone exported once per test session (the same export the app does on first use), or the
    export named by ``REVIEW_CONSOLE_TEST_BACKBONE`` (the mutation run exports it once for every mutant)."""
    given = os.environ.get("REVIEW_CONSOLE_TEST_BACKBONE")
    if given and Path(given).is_file():
        return Path(given)
    return export_onnx(tmp_path_factory.mktemp("models") / f"{BACKBONE}.onnx")


@pytest.fixture
def ws(tmp_path, backbone_onnx, monkeypatch) -> Workspace:
    """A fresh, empty workspace with its own database; the exported backbone is linked in."""
    workspace = Workspace.open(tmp_path / "ws")
    (workspace.models_dir / backbone_onnx.name).symlink_to(backbone_onnx)
    monkeypatch.setenv(DATA_DIR_ENV, str(workspace.root))
    return workspace


@pytest.fixture
def db(ws):
    conn = ws.db()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def samples() -> Path:
    """../shared/samples/reviews, or a clean skip when this checkout has no shared folder (a failure in CI)."""
    if not SAMPLES.is_dir():
        pytest.skip(f"sample photos not found at {SAMPLES} (a fresh clone has no ../shared)")
    return SAMPLES


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory, backbone_onnx, samples) -> Path:
    """A workspace with the sample labels imported and a model trained once per session."""
    from services.core.storage import ObjectStore
    from services.models.training import import_folder, train

    root = tmp_path_factory.mktemp("trained") / "ws"
    template = Workspace.open(root)
    (template.models_dir / backbone_onnx.name).symlink_to(backbone_onnx)
    conn = template.db()
    import_folder(conn, root=str(samples), store=ObjectStore(), actor="test")
    train(template, conn, actor="test")
    conn.close()
    return root


@pytest.fixture
def trained_ws(tmp_path, trained_template, monkeypatch) -> Workspace:
    """A fresh copy of the trained workspace for this test."""
    root = tmp_path / "trained"
    shutil.copytree(trained_template, root, symlinks=True)
    monkeypatch.setenv(DATA_DIR_ENV, str(root))
    return Workspace(root)


def jpeg_bytes(size=(64, 48), color=(200, 30, 30), **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="JPEG", **save)
    return out.getvalue()


PYTEST_MAIN = sys.modules["__main__"]


@pytest.fixture(autouse=True)
def _pytest_is_main_again(monkeypatch):
    """Streamlit's script runner (AppTest) leaves its script as ``__main__``; a process started by spawn would run
    that script (app.py) first and die in it. Each test starts with pytest's own ``__main__``."""
    monkeypatch.setitem(sys.modules, "__main__", PYTEST_MAIN)


@pytest.fixture(autouse=True)
def _apptest_runs_the_router_every_time(monkeypatch):
    """AppTest forgets between runs that app.py called st.navigation, so with a ``pages/`` folder it runs
    a rerun's page file on its own (Streamlit's old multipage mode). A real server runs app.py (sign-in,
    roles, navigation) on every run once any session has called st.navigation: make AppTest do the same."""
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.testing.v1 import app_test

    class RouterFirst(PagesManager):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            PagesManager.uses_pages_directory = False

    monkeypatch.setattr(app_test, "PagesManager", RouterFirst)


def in_ci() -> bool:
    """Whether this run is CI's (``CI=true``), where ../shared is always laid beside the clone."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a test that skips for want of ../shared fails instead: there it is always present, so a skip
    would hide a regression (every trained-model test needs the sample photos). Outside CI (a fresh clone
    without ../shared) such tests still skip cleanly. Every skip that names ``shared`` counts, whether it
    comes from a fixture (``samples``) or a ``skipif`` marker."""
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()) or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if "shared" in reason:
        report.outcome = "failed"
        report.longrepr = f"{reason}\nCI always has ../shared beside the clone: this test fails there instead of skipping."

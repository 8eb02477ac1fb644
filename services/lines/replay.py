"""Replay a frame file into another at real speed (paced by its timestamps), for demos."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

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
    head, lines, ts_col = _source_lines(store, src)
    sink = _Sink.open(dst, head=head, store=store, clock=clock, flush_s=s3_flush_s)
    pace = _Pace(speed=speed, clock=clock, start=clock())
    try:
        for raw in lines:
            ts = _line_ts(raw, ts_col)
            due = None if ts is None else pace.frame_at(ts)
            if due is not None and due >= min_wait_s:
                sink.flush()
                sleep(due)
                pace.waited += due
            sink.pending.append(raw)
        sink.flush(force=True)
    except OSError as exc:
        raise local_error(sink.path, exc) from exc
    finally:
        sink.close()
    span = 0.0 if pace.first_ts is None else pace.latest - pace.first_ts
    return {"lines": len(lines), "frames": pace.frames, "waited_s": round(pace.waited, 6), "span_s": span,
            "speed": speed, "dst": dst}


def _source_lines(store: ObjectStore, src: str) -> tuple[list[bytes], list[bytes], int | None]:
    """(header lines to copy first, the lines to replay, the ts column of a CSV file or None). Every line
    ends with a newline. Raises NotFound/StorageError for ``src``, InvalidInput for an unusable CSV header."""
    data = store.read(src)
    lines = data.splitlines(keepends=True)
    if lines and not lines[-1].endswith(b"\n"):
        lines[-1] += b"\n"
    if src.lower().endswith(".csv") and lines:
        header = csv_header(lines[0].lstrip(b"\xef\xbb\xbf"))
        return lines[:1], lines[1:], header.index("ts")
    return [], lines, None


class _Sink:
    """The replay's destination: a local file (appended to, flushed on every ``flush``) or an S3 object
    (rewritten whole with everything so far, at most every ``flush_s`` seconds unless forced)."""

    def __init__(self, dst: str, *, head: list[bytes], store: ObjectStore, clock: Callable[[], float],
                 flush_s: float) -> None:
        self.dst = dst
        self.local = not is_s3(dst)
        self.path = (dst[7:] if dst.startswith("file://") else dst) if self.local else ""
        self.store = store
        self.clock = clock
        self.flush_s = flush_s
        self.written: list[bytes] = list(head)
        self.pending: list[bytes] = list(head)
        self.last_flush = 0.0
        self.fh: BinaryIO | None = None

    @classmethod
    def open(cls, dst: str, *, head: list[bytes], store: ObjectStore, clock: Callable[[], float],
             flush_s: float) -> _Sink:
        """A sink for ``dst``, a local one created empty. Raises NotFound/StorageError if it cannot be."""
        sink = cls(dst, head=head, store=store, clock=clock, flush_s=flush_s)
        if sink.local:
            try:
                parent = os.path.dirname(os.path.abspath(sink.path))
                os.makedirs(parent, exist_ok=True)
                sink.fh = open(sink.path, "wb")  # noqa: SIM115
            except OSError as exc:
                raise local_error(sink.path, exc) from exc
        return sink

    def flush(self, *, force: bool = False) -> None:
        """Write the pending lines out (to S3 only when forced or ``flush_s`` after the last write). Raises
        OSError (local) or StorageError (S3)."""
        if not self.pending:
            return
        if self.fh is not None:
            self.fh.write(b"".join(self.pending))
            self.fh.flush()
            self.pending = []
        elif force or self.clock() - self.last_flush >= self.flush_s:
            self.written.extend(self.pending)
            self.pending = []
            self.store.write(self.dst, b"".join(self.written))
            self.last_flush = self.clock()

    def close(self) -> None:
        """Close a local file. Raises OSError if it cannot be."""
        if self.fh is not None:
            self.fh.close()


@dataclass
class _Pace:
    """The replay's clock: frames seen, the first and latest timestamps, and the time waited."""

    speed: float
    clock: Callable[[], float]
    start: float  # clock() when the replay started
    first_ts: float | None = None
    latest: float = -math.inf
    frames: int = 0
    waited: float = 0.0

    def frame_at(self, ts: float) -> float | None:
        """Count a frame stamped ``ts``: the seconds left before it is due (None when it is not newer than
        the latest frame, so it does not wait). Raises nothing."""
        self.frames += 1
        if self.first_ts is None:
            self.first_ts = ts
        if not ts > self.latest:
            return None
        self.latest = ts
        return (ts - self.first_ts) / self.speed - (self.clock() - self.start)

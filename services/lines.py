"""Packaging-line counting: ingest detector frames, run the counter, keep bins and per-minute roll-ups.

Sources are JSON Lines (.jsonl, .ndjson, .json: one object per line) or CSV files with the fields
``line_id``, ``camera_id`` (default ``cam1``), ``ts`` (ISO-8601, naive = UTC, or epoch seconds), ``count``
and optionally ``boxes`` (a list of ``{"confidence": ...}``; in CSV a JSON text). With boxes, the count
stored is the number of boxes at or above the ``line_min_confidence`` setting and ``raw_count`` keeps
the reported count. A CSV's quoted fields must not span lines.

Each file is read once: ``line_files`` keeps its size, etag (local files: the modification time in ns),
and the byte offset after the last complete line consumed. A file that grew (still being written) is
resumed at that offset; a last line without its newline is left for the next pass, except when it
is certainly whole: a JSON object that parses, any line of an S3 object (S3 objects are written whole),
or a local file untouched for ``settle_seconds``. A file that got smaller than what was read, or whose
byte before the offset is no longer a newline, was rewritten: it is reported under ``files_changed``
(state ``changed``) and not read again silently. The frames of one chunk of a file and its new offset
are written in one transaction, so a crash neither loses nor double-counts a frame.

A bad row is skipped and counted under a reason (``REASONS``); the first few are kept with their line
numbers in ``line_files.samples``. For every file: rows = frames_added + duplicates + sum(skipped
reasons other than "late"). "late" counts frames that were stored but are not newer than the line's
``counted_to_ts`` (they arrived after the counter had passed their time): they cannot change closed
bins and are left out of the minute roll-ups; they are also part of frames_added.

Several cameras on one line: the counter sees, for each timestamp, the largest count any camera
reported at exactly that timestamp (the edge device stamps one line's cameras with one capture clock;
a camera hidden by a worker reports fewer trays, never more). Unsynchronised cameras interleave.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlite_utils

from db.database import immediate
from services import linecount
from services.audit import record
from services.clock import now_iso
from services.config import get_settings
from services.errors import ConsoleError, InvalidInput, NotFound, StorageError
from services.storage import ObjectStore, is_s3

SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv")
DEFAULT_CAMERA = "cam1"
MAX_COUNT = 500  # trays in one frame above this is a detector fault
MIN_TS = 946684800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE_S = 86400.0
MAX_SAMPLES = 10  # skipped lines kept per file, with their line numbers
CHUNK_BYTES = 4 << 20  # one transaction per chunk of a file
COUNT_BATCH = 500_000  # frames counted per transaction per line
SETTLE_SECONDS = 60.0
REASONS = {
    "malformed": "not valid JSON/CSV, not an object, or not UTF-8",
    "missing_field": "line_id, ts or count (or boxes) missing",
    "bad_ts": "ts is neither ISO-8601 nor epoch seconds",
    "bad_count": "count is not a whole number",
    "bad_boxes": "boxes is not a list of objects with a numeric confidence",
    "negative_count": "count below zero",
    "absurd_count": f"count above {MAX_COUNT}",
    "future_ts": "ts more than a day in the future",
    "past_ts": "ts before the year 2000",
    "unknown_line": "line id not registered (known_lines_only)",
}
ALIASES = {"line": "line_id", "camera": "camera_id", "timestamp": "ts", "time": "ts", "trays": "count",
           "detections": "boxes"}
_FIELDS = frozenset(("line_id", "camera_id", "ts", "count", "boxes"))
_STATE_FULL = "done"
_STATE_PARTIAL = "partial"
_STATE_CHANGED = "changed"


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class _Busy(Exception):
    """Another ingest moved this file's offset while we were reading it."""


# ---------------------------------------------------------------------------------------------------
# rows


def _parse_ts(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        ts = float(value)
    elif value is None or kind is bool or kind is dict or kind is list:
        raise _Skip("bad_ts", f"ts {value!r}")
    else:
        text = str(value).strip()
        if not text:
            raise _Skip("missing_field", "ts is empty")
        try:
            if text[4:5] == "-":  # 2024-01-01...: ISO-8601 (naive = UTC)
                dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
                ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
            else:
                ts = float(text)
        except ValueError:
            raise _Skip("bad_ts", f"ts {text[:40]!r} is neither ISO-8601 nor epoch seconds") from None
    if not math.isfinite(ts):
        raise _Skip("bad_ts", f"ts {value!r}")
    return ts


def _parse_int(value: Any, name: str) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool or kind is dict or kind is list:
        raise _Skip("bad_count", f"{name} {value!r} is not a number")
    try:
        number = value if kind is float else float(str(value).strip())
    except ValueError:
        raise _Skip("bad_count", f"{name} {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise _Skip("bad_count", f"{name} {value!r} is not a whole number")
    return int(number)


def _boxes_count(boxes: Any, min_confidence: float) -> tuple[int, int]:
    """(boxes at or above the confidence, all boxes)."""
    if isinstance(boxes, str):
        try:
            boxes = json.loads(boxes)
        except json.JSONDecodeError:
            raise _Skip("bad_boxes", "boxes is not JSON") from None
    if type(boxes) is not list:
        raise _Skip("bad_boxes", "boxes is not a list")
    kept = 0
    for box in boxes:
        if type(box) is not dict:
            raise _Skip("bad_boxes", "a box is not an object")
        conf = box.get("confidence")
        if conf is None:
            conf = box.get("score")
        kind = type(conf)
        if not (kind is float or kind is int) or not math.isfinite(conf):
            raise _Skip("bad_boxes", f"box confidence {conf!r} is not a number")
        if conf >= min_confidence:
            kept += 1
    return kept, len(boxes)


@dataclass
class _Rules:
    min_confidence: float
    now_ts: float
    known_lines: set[str] | None  # None: any line id is accepted (and registered)


def _frame(rec: dict[str, Any], rules: _Rules) -> tuple[str, str, float, int, int]:
    """One record -> (line_id, camera_id, ts, count, raw_count). Raises _Skip."""
    if not rec.keys() <= _FIELDS:
        rec = {ALIASES.get(str(k).strip(), str(k).strip()): v for k, v in rec.items() if k is not None}
    line_id = rec.get("line_id")
    line_id = "" if line_id is None else str(line_id).strip()
    if not line_id:
        raise _Skip("missing_field", "line_id missing")
    camera = rec.get("camera_id")
    if camera is None:
        camera = DEFAULT_CAMERA
    else:
        camera = str(camera).strip() or DEFAULT_CAMERA
    if rec.get("ts") is None:
        raise _Skip("missing_field", "ts missing")
    ts = _parse_ts(rec["ts"])
    boxes = rec.get("boxes")
    has_boxes = boxes is not None and not (isinstance(boxes, str) and not boxes.strip())
    count_value = rec.get("count")
    has_count = count_value is not None and not (isinstance(count_value, str) and not count_value.strip())
    if not has_count and not has_boxes:
        raise _Skip("missing_field", "count missing (and no boxes)")
    raw = _parse_int(count_value, "count") if has_count else None
    if has_boxes:
        count, n_boxes = _boxes_count(boxes, rules.min_confidence)
        raw = n_boxes if raw is None else raw
    else:
        count = raw  # type: ignore[assignment]
    assert raw is not None
    if raw < 0 or count < 0:
        raise _Skip("negative_count", f"count {raw}")
    if raw > MAX_COUNT or count > MAX_COUNT:
        raise _Skip("absurd_count", f"count {max(raw, count)} > {MAX_COUNT}")
    if ts > rules.now_ts + MAX_FUTURE_S:
        hint = " (epoch milliseconds? give seconds)" if ts > 1e11 else ""
        raise _Skip("future_ts", f"ts {ts:.0f} is more than a day in the future{hint}")
    if ts < MIN_TS:
        raise _Skip("past_ts", f"ts {ts:.0f} is before 2000")
    if rules.known_lines is not None and line_id not in rules.known_lines:
        raise _Skip("unknown_line", f"line id {line_id[:60]!r} is not registered")
    return line_id, camera, ts, int(count), int(raw)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Skip("malformed", "not valid UTF-8") from None


def _json_rows(lines: list[bytes], rules: _Rules) -> Iterable[tuple[int, Any]]:
    """(index of the line in ``lines``, frame tuple or _Skip) for every non-blank line."""
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise _Skip("malformed", f"not valid JSON: {exc.msg}") from None
            except UnicodeDecodeError:
                raise _Skip("malformed", "not valid UTF-8") from None
            if not isinstance(rec, dict):
                raise _Skip("malformed", "a line must be a JSON object")
            yield i, _frame(rec, rules)
        except _Skip as skip:
            yield i, skip


def _csv_header(raw: bytes) -> list[str]:
    """Column names of a CSV header line. Raises InvalidInput when the file cannot be frames."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the CSV header is not valid UTF-8") from None
    header = [ALIASES.get(h.strip(), h.strip()) for h in next(csv.reader([text.rstrip("\r\n")]), [])]
    missing = [c for c in ("line_id", "ts") if c not in header]
    if "count" not in header and "boxes" not in header:
        missing.append("count")
    if missing:
        raise InvalidInput(f"CSV missing column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}. "
                           "Expected line_id, camera_id, ts, count[, boxes]")
    return header


def _csv_rows(lines: list[bytes], header: list[str], rules: _Rules) -> Iterable[tuple[int, Any]]:
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            text = _decode(raw).rstrip("\r\n")
            try:
                values = next(csv.reader([text]))
            except csv.Error as exc:
                raise _Skip("malformed", f"not valid CSV: {exc}") from None
            if len(values) != len(header):
                raise _Skip("malformed", f"{len(values)} values for {len(header)} columns")
            yield i, _frame(dict(zip(header, values)), rules)
        except _Skip as skip:
            yield i, skip


# ---------------------------------------------------------------------------------------------------
# sources


class _File:
    """One source file: its bytes from an offset, and the size and etag seen while reading them."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.size_read = 0
        self.etag = ""
        self.settled = False  # the last line, even without its newline, is whole

    def read_from(self, offset: int) -> Iterable[bytes]:
        raise NotImplementedError

    def byte_at(self, pos: int) -> bytes:
        raise NotImplementedError

    def first_line(self) -> bytes:
        raise NotImplementedError

    def lines_before(self, offset: int) -> int:
        raise NotImplementedError


def _local_error(path: str, exc: OSError) -> ConsoleError:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"file not found: {path}. Was it moved or rotated away?")
    if isinstance(exc, PermissionError):
        return StorageError(f"permission denied for {path}: let the console's user read it.")
    return StorageError(f"cannot read {path}: {exc.strerror or exc}.")


class _LocalFile(_File):
    def __init__(self, uri: str, *, now_ts: float, settle_seconds: float) -> None:
        super().__init__(uri)
        self.path = uri[7:] if uri.startswith("file://") else uri
        self.now_ts = now_ts
        self.settle_seconds = settle_seconds

    def _open(self):  # type: ignore[no-untyped-def]
        try:
            return open(self.path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise _local_error(self.path, exc) from exc

    def stat(self) -> os.stat_result:
        try:
            return os.stat(self.path)
        except OSError as exc:
            raise _local_error(self.path, exc) from exc

    def read_from(self, offset: int) -> Iterable[bytes]:
        with self._open() as f:
            try:
                st = os.fstat(f.fileno())
                self.etag = str(st.st_mtime_ns)
                self.settled = self.now_ts - st.st_mtime >= self.settle_seconds
                f.seek(offset)
                self.size_read = offset
                while block := f.read(CHUNK_BYTES):
                    self.size_read += len(block)
                    yield block
            except OSError as exc:
                raise _local_error(self.path, exc) from exc

    def byte_at(self, pos: int) -> bytes:
        with self._open() as f:
            f.seek(pos)
            return f.read(1)

    def first_line(self) -> bytes:
        with self._open() as f:
            return f.readline()

    def lines_before(self, offset: int) -> int:
        n, left = 0, offset
        with self._open() as f:
            while left > 0 and (block := f.read(min(left, CHUNK_BYTES))):
                n += block.count(b"\n")
                left -= len(block)
        return n


class _S3File(_File):
    """S3 objects are written whole, so the object is read whole (once per pass)."""

    def __init__(self, uri: str, store: ObjectStore) -> None:
        super().__init__(uri)
        self.store = store
        self._data: bytes | None = None
        self.settled = True

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.store.read(self.uri)
            self.etag = hashlib.md5(self._data, usedforsecurity=False).hexdigest()  # S3's ETag for one-part objects
            self.size_read = len(self._data)
        return self._data

    def read_from(self, offset: int) -> Iterable[bytes]:
        data = self.data
        for start in range(offset, len(data), CHUNK_BYTES):
            yield data[start : start + CHUNK_BYTES]

    def byte_at(self, pos: int) -> bytes:
        return self.data[pos : pos + 1]

    def first_line(self) -> bytes:
        end = self.data.find(b"\n")
        return self.data if end < 0 else self.data[: end + 1]

    def lines_before(self, offset: int) -> int:
        return self.data.count(b"\n", 0, offset)


def _listing(uri: str, store: ObjectStore) -> list[tuple[str, int]]:
    """(uri, size) of every frame file at ``uri``: one file, a folder or an S3 prefix."""
    if is_s3(uri):
        if uri.lower().endswith(SUFFIXES):
            try:
                return [(uri, store.size(uri))]
            except NotFound:
                pass  # maybe a prefix that happens to end like a file name
        return [(o.uri, o.size) for o in store.list(uri, suffixes=SUFFIXES)]
    path = uri[7:] if uri.startswith("file://") else uri
    if os.path.isfile(path):
        return [(uri, os.path.getsize(path))]
    return [(o.uri, o.size) for o in store.list(uri, suffixes=SUFFIXES)]


# ---------------------------------------------------------------------------------------------------
# ingest


@dataclass
class _FileReport:
    rows: int = 0
    frames_added: int = 0
    duplicates: int = 0
    late: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


def _file_row(db: sqlite_utils.Database, uri: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM line_files WHERE uri = ?", [uri]))
    return rows[0] if rows else None


def _store_chunk(db: sqlite_utils.Database, *, uri: str, expect_offset: int, new_offset: int, size: int, etag: str,
                 frames: list[tuple[str, str, float, int, int]], skipped: dict[str, int],
                 samples: list[dict[str, Any]], register: bool, report: _FileReport) -> None:
    """Frames, new lines, last_frame_ts and the file's offset in one transaction. Raises _Busy."""
    now = now_iso()
    with immediate(db):
        row = _file_row(db, uri)
        if (row["offset"] if row else 0) != expect_offset:
            raise _Busy(uri)
        line_ids = sorted({f[0] for f in frames})
        counted_to: dict[str, float] = {}
        for i in range(0, len(line_ids), 500):
            part = line_ids[i : i + 500]
            counted_to.update(db.execute(
                f"SELECT line_id, counted_to_ts FROM line_state WHERE line_id IN ({','.join('?' * len(part))})",
                part).fetchall())
        fresh, old = [], []
        for f in frames:
            done = counted_to.get(f[0])
            (old if done is not None and f[2] <= done else fresh).append((*f, uri))
        sql = ("INSERT OR IGNORE INTO line_frames (line_id, camera_id, ts, count, raw_count, file) "
               "VALUES (?, ?, ?, ?, ?, ?)")
        added = db.conn.executemany(sql, fresh).rowcount if fresh else 0
        late = db.conn.executemany(sql, old).rowcount if old else 0
        if register and line_ids:
            db.conn.executemany("INSERT OR IGNORE INTO lines (id, name, created_at) VALUES (?, ?, ?)",
                                [(lid, lid, now) for lid in line_ids])
        last: dict[str, float] = {}
        for f in frames:
            if f[2] > last.get(f[0], -math.inf):
                last[f[0]] = f[2]
        db.conn.executemany(
            "UPDATE lines SET last_frame_ts = MAX(COALESCE(last_frame_ts, 0), ?) WHERE id = ?",
            [(ts, lid) for lid, ts in last.items()])
        chunk_skipped = dict(skipped)
        if late:
            chunk_skipped["late"] = late
        old_skipped = json.loads(row["skipped"] or "{}") if row else {}
        for reason, n in chunk_skipped.items():
            old_skipped[reason] = old_skipped.get(reason, 0) + n
        old_samples = json.loads(row["samples"] or "[]") if row else []
        old_samples = (old_samples + samples)[:MAX_SAMPLES]
        duplicates = len(frames) - added - late
        db.execute(
            "INSERT INTO line_files (uri, offset, size, etag, frames_added, duplicates, skipped, samples, state, "
            "first_seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(uri) DO UPDATE SET "
            "offset = excluded.offset, size = excluded.size, etag = excluded.etag, "
            "frames_added = line_files.frames_added + excluded.frames_added, "
            "duplicates = line_files.duplicates + excluded.duplicates, skipped = excluded.skipped, "
            "samples = excluded.samples, state = excluded.state, updated_at = excluded.updated_at",
            [uri, new_offset, size, etag, added + late, duplicates, json.dumps(old_skipped, sort_keys=True),
             json.dumps(old_samples), _STATE_FULL if new_offset >= size else _STATE_PARTIAL, now, now])
    report.frames_added += added + late
    report.late += late
    report.duplicates += duplicates
    for reason, n in skipped.items():
        report.skipped[reason] = report.skipped.get(reason, 0) + n


def _tail_is_whole(src: _File, tail: bytes, *, is_csv: bool) -> bool:
    """A last line without its newline: consume it only when it cannot be a line still being written."""
    if src.settled:
        return True
    if is_csv:
        return False
    try:  # a JSON object cut short never parses
        return isinstance(json.loads(tail), dict)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def _ingest_file(db: sqlite_utils.Database, src: _File, *, listed_size: int, rules: _Rules, register: bool,
                 report: _FileReport, sample_room: int) -> str:
    """Read what is new in one file. Returns 'read', 'unchanged', 'changed' or 'busy'.

    Raises NotFound/StorageError for the file, InvalidInput when a CSV header is unusable.
    """
    prev = _file_row(db, src.uri)
    offset = prev["offset"] if prev else 0
    if prev:
        if prev["state"] == _STATE_CHANGED:
            return "changed"
        if listed_size < prev["size"]:
            _mark_changed(db, src.uri, f"the file shrank from {prev['size']} to {listed_size} bytes after {offset} "
                                       "were read: it was rewritten; not read again")
            return "changed"
        if listed_size == prev["size"]:
            if offset >= listed_size:
                return "unchanged"
            if isinstance(src, _LocalFile):  # only a pending last line: read it once the file has settled
                st = src.stat()
                if st.st_size == prev["size"] and rules.now_ts - st.st_mtime < src.settle_seconds:
                    return "unchanged"
        if offset > 0 and src.byte_at(offset - 1) != b"\n":
            _mark_changed(db, src.uri, f"the byte before offset {offset} is no longer a line end: the file was "
                                       "rewritten; not read again")
            return "changed"
    is_csv = src.uri.lower().endswith(".csv")
    header = _csv_header(src.first_line()) if is_csv and offset > 0 else None
    base_line: int | None = 0 if offset == 0 else None  # lines before `offset`, counted only when a sample needs it
    consumed = 0  # lines consumed in this pass
    pos = offset
    carry = b""
    blocks = iter(src.read_from(offset))
    while True:
        block = next(blocks, None)
        eof = block is None
        if not eof:
            carry += block
            if len(carry) < CHUNK_BYTES:
                continue
        data = carry
        cut = data.rfind(b"\n") + 1
        if eof and cut < len(data) and _tail_is_whole(src, data[cut:], is_csv=is_csv):
            cut = len(data)
        if cut == 0 and not eof:
            continue  # one very long line: read on
        body, carry = data[:cut], data[cut:]
        lines = body.split(b"\n")
        if body.endswith(b"\n") or not body:
            lines.pop()
        first = 0
        if pos == 0 and lines:
            if lines[0].startswith(b"\xef\xbb\xbf"):
                lines[0] = lines[0][3:]
            if is_csv:
                header = _csv_header(lines[0])
                first = 1
        frames: list[tuple[str, str, float, int, int]] = []
        skipped: dict[str, int] = {}
        samples: list[dict[str, Any]] = []
        rows = _csv_rows(lines[first:], header or [], rules) if is_csv else _json_rows(lines[first:], rules)
        for i, res in rows:
            report.rows += 1
            if isinstance(res, _Skip):
                skipped[res.reason] = skipped.get(res.reason, 0) + 1
                if len(samples) < sample_room:
                    if base_line is None:
                        base_line = src.lines_before(offset)
                    line = base_line + consumed + first + i + 1
                    samples.append({"line": line, "reason": res.reason, "detail": res.detail})
            else:
                frames.append(res)
        sample_room -= len(samples)
        consumed += len(lines)
        new_pos = pos + cut
        try:
            _store_chunk(db, uri=src.uri, expect_offset=pos, new_offset=new_pos, size=max(src.size_read, new_pos),
                         etag=src.etag, frames=frames, skipped=skipped, samples=samples, register=register,
                         report=report)
        except _Busy:
            return "busy"
        report.samples.extend({"uri": src.uri, **s} for s in samples)
        pos = new_pos
        if eof:
            break
    return "read" if pos > offset else "unchanged"


def _mark_changed(db: sqlite_utils.Database, uri: str, reason: str) -> None:
    with immediate(db):
        row = _file_row(db, uri) or {}
        samples = json.loads(row.get("samples") or "[]")
        samples.append({"line": None, "reason": "changed", "detail": reason})
        db.execute("UPDATE line_files SET state = ?, samples = ?, updated_at = ? WHERE uri = ?",
                   [_STATE_CHANGED, json.dumps(samples), now_iso(), uri])


def ingest_source(db: sqlite_utils.Database, *, uri: str, store: ObjectStore, actor: str,
                  known_lines_only: bool = False, now_ts: float | None = None,
                  settle_seconds: float = SETTLE_SECONDS, count: bool = True) -> dict[str, Any]:
    """Read new frames from a file, a folder or an S3 prefix, then run the counter (``count_lines``).

    Returns a report: files (listed), files_read, files_unchanged, files_changed [uri], files_busy [uri],
    rows, frames_added, duplicates, late, skipped {reason: n}, samples [{uri, line, reason, detail}],
    errors [{uri, reason}] (a file that could not be read or whose CSV header is unusable; the other
    files are still read), pending_files (files with a last line left for later) and counted (the
    count_lines report). ``now_ts`` (default: now) bounds future timestamps and settles local files.
    Raises NotFound (missing folder, bucket or file), InvalidInput (bad URI) or StorageError for the
    source as a whole.
    """
    now = time.time() if now_ts is None else float(now_ts)
    settings = get_settings(db)
    known = None
    if known_lines_only:
        known = {r[0] for r in db.execute("SELECT id FROM lines")}
    rules = _Rules(min_confidence=float(settings["line_min_confidence"]), now_ts=now, known_lines=known)
    out: dict[str, Any] = {"uri": uri, "files": 0, "files_read": 0, "files_unchanged": 0, "files_changed": [],
                           "files_busy": [], "errors": []}
    total = _FileReport()
    seen: list[str] = []
    for file_uri, size in _listing(uri, store):
        out["files"] += 1
        seen.append(file_uri)
        src: _File = (_S3File(file_uri, store) if is_s3(file_uri)
                      else _LocalFile(file_uri, now_ts=now, settle_seconds=settle_seconds))
        try:
            outcome = _ingest_file(db, src, listed_size=size, rules=rules, register=not known_lines_only,
                                   report=total, sample_room=max(0, 50 - len(total.samples)))
        except ConsoleError as exc:
            out["errors"].append({"uri": file_uri, "reason": str(exc)})
            continue
        if outcome == "read":
            out["files_read"] += 1
        elif outcome == "unchanged":
            out["files_unchanged"] += 1
        elif outcome == "changed":
            out["files_changed"].append(file_uri)
        else:
            out["files_busy"].append(file_uri)
    out.update(rows=total.rows, frames_added=total.frames_added, duplicates=total.duplicates, late=total.late,
               skipped=dict(sorted(total.skipped.items())), samples=total.samples)
    out["pending_files"] = [r[0] for r in db.execute("SELECT uri FROM line_files WHERE state = ? AND uri IN "
                                                      "(SELECT value FROM json_each(?))",
                                                      [_STATE_PARTIAL, json.dumps(seen)])]
    out["counted"] = count_lines(db) if count else None
    if total.rows or out["files_changed"] or out["errors"]:
        record(db, actor=actor, action="lines.ingest", target=uri,
               detail={k: out[k] for k in ("files", "files_read", "rows", "frames_added", "duplicates", "late",
                                           "skipped", "files_changed")} | {"errors": len(out["errors"])})
    return out


def forget_file(db: sqlite_utils.Database, *, uri: str, actor: str) -> None:
    """Drop what is known about a file (e.g. one reported as changed) so the next ingest reads it from the start.

    Safe for the totals: frames already stored are duplicates when read again, and frames the counter has
    passed are stored as late. Raises NotFound if the file was never seen.
    """
    with immediate(db):
        if not db.execute("DELETE FROM line_files WHERE uri = ?", [uri]).rowcount:
            raise NotFound(f"no frame file {uri} has been read: check the URI (see the ingest report).")
        record(db, actor=actor, action="lines.forget_file", target=uri)


# ---------------------------------------------------------------------------------------------------
# counting


def _dump_state(state: linecount.LineState) -> str:
    data = state.to_json()
    return data if isinstance(data, str) else json.dumps(data)


def _load_state(text: str | None) -> linecount.LineState | None:
    return None if not text else linecount.LineState.from_json(text)


def _count_batch(db: sqlite_utils.Database, line_id: str, params: linecount.CounterParams,
                 totals: dict[str, Any]) -> int:
    """Count up to COUNT_BATCH new timestamps of one line in one transaction; returns how many."""
    now = now_iso()
    with immediate(db):
        row = db.execute("SELECT state, counted_to_ts FROM line_state WHERE line_id = ?", [line_id]).fetchone()
        state = _load_state(row[0]) if row else None
        counted_to = row[1] if row and row[1] is not None else -math.inf
        got = db.execute(
            "SELECT ts, MAX(count) FROM line_frames WHERE line_id = ? AND ts > ? GROUP BY ts ORDER BY ts LIMIT ?",
            [line_id, counted_to, COUNT_BATCH]).fetchall()
        if not got:
            return 0
        arr = np.array(got, dtype=np.float64)
        ts, counts = arr[:, 0], arr[:, 1].astype(np.int64)
        bins, state = linecount.count_frames(ts, counts, state=state, params=params)
        if bins:
            db.conn.executemany(
                "INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [(line_id, float(b.start_ts), float(b.end_ts), int(b.trays), str(b.reason), now) for b in bins])
        minute = (ts // 60).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, minute[1:] != minute[:-1]])  # ts sorted: one run per minute
        n = np.diff(np.r_[starts, len(ts)])
        sums = np.add.reduceat(counts, starts)
        maxes = np.maximum.reduceat(counts, starts)
        binned: dict[int, int] = {}
        for b in bins:
            m = int(b.end_ts // 60)
            binned[m] = binned.get(m, 0) + int(b.trays)
        rollup = [(line_id, int(minute[s]), int(k), float(total) / int(k), int(mx), binned.pop(int(minute[s]), 0))
                  for s, k, total, mx in zip(starts, n, sums, maxes)]
        # a bin may end at a timestamp of an earlier batch (the counter confirms a drop frames later)
        rollup += [(line_id, m, 0, 0.0, 0, t) for m, t in binned.items()]
        db.conn.executemany(
            "INSERT INTO line_minutes (line_id, minute, frames, mean_count, max_count, trays_binned) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(line_id, minute) DO UPDATE SET "
            "mean_count = CASE WHEN line_minutes.frames + excluded.frames > 0 THEN "
            "(line_minutes.mean_count * line_minutes.frames + excluded.mean_count * excluded.frames) "
            "/ (line_minutes.frames + excluded.frames) ELSE 0 END, "
            "frames = line_minutes.frames + excluded.frames, "
            "max_count = MAX(line_minutes.max_count, excluded.max_count), "
            "trays_binned = line_minutes.trays_binned + excluded.trays_binned", rollup)
        db.execute(
            "INSERT INTO line_state (line_id, state, counted_to_ts, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(line_id) DO UPDATE SET state = excluded.state, counted_to_ts = excluded.counted_to_ts, "
            "updated_at = excluded.updated_at",
            [line_id, _dump_state(state), float(ts[-1]), now])
    totals["frames"] += len(ts)
    totals["bins"] += len(bins)
    totals["trays"] += sum(int(b.trays) for b in bins)
    return len(ts)


def count_lines(db: sqlite_utils.Database, *, params: linecount.CounterParams | None = None,
                line_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """Run the counter over every line's frames newer than its ``counted_to_ts``, from its saved state.

    New bins go to line_bins, per-minute roll-ups to line_minutes and the state to line_state, in one
    transaction per line and batch of frames, so a restart continues exactly where the count stopped.
    Frames reported at the same timestamp by several cameras of a line count once, with the largest
    count. Returns {lines, frames, bins, trays}. Raises sqlite3.Error if the database fails.
    """
    params = params or linecount.CounterParams()
    ids = list(line_ids) if line_ids is not None else [r[0] for r in db.execute("SELECT id FROM lines ORDER BY id")]
    totals: dict[str, Any] = {"lines": 0, "frames": 0, "bins": 0, "trays": 0}
    for line_id in ids:
        before = totals["frames"]
        while _count_batch(db, line_id, params, totals) == COUNT_BATCH:
            pass
        totals["lines"] += totals["frames"] > before
    return totals


def prune_raw(db: sqlite_utils.Database, *, older_than_days: int | None = None,
              now_ts: float | None = None) -> int:
    """Delete raw frames older than the retention (setting ``line_raw_retention_days``) that are counted.

    A frame the counter has not passed yet (ts > counted_to_ts) is kept whatever its age, and bins and
    minute roll-ups are never touched, so no total changes. Returns the number of frames deleted.
    Raises InvalidInput for a negative retention.
    """
    days = get_settings(db)["line_raw_retention_days"] if older_than_days is None else older_than_days
    if days is None or days < 0:
        raise InvalidInput(f"retention must be zero or more days, not {days!r}")
    cutoff = (time.time() if now_ts is None else float(now_ts)) - float(days) * 86400.0
    deleted = 0
    for line_id, counted_to in db.execute("SELECT line_id, counted_to_ts FROM line_state").fetchall():
        if counted_to is None:
            continue
        with immediate(db):
            deleted += db.execute("DELETE FROM line_frames WHERE line_id = ? AND ts < ? AND ts <= ?",
                                  [line_id, cutoff, counted_to]).rowcount
    return deleted


# ---------------------------------------------------------------------------------------------------
# views


def line_summary(db: sqlite_utils.Database, *, raw_frames: bool = False) -> list[dict[str, Any]]:
    """Per line: frames counted (from the roll-ups, so pruning does not change it), bins, trays (in finished
    bins), last_frame_ts, counted_to_ts, open_bin {start_ts, trays} (the bin filling now) or None, and
    raw_frames (frames stored now; counted only when asked: it scans the line's frames). Raises
    InvalidInput if a line's saved counter state is unreadable."""
    out = []
    raw_sql = "(SELECT COUNT(*) FROM line_frames f WHERE f.line_id = l.id)" if raw_frames else "NULL"
    rows = db.execute(
        "SELECT l.id, l.name, l.last_frame_ts, s.counted_to_ts, s.state, "
        "(SELECT COALESCE(SUM(frames), 0) FROM line_minutes m WHERE m.line_id = l.id), "
        f"{raw_sql}, "
        "(SELECT COUNT(*) FROM line_bins b WHERE b.line_id = l.id), "
        "(SELECT COALESCE(SUM(trays), 0) FROM line_bins b WHERE b.line_id = l.id) "
        "FROM lines l LEFT JOIN line_state s ON s.line_id = l.id ORDER BY l.id").fetchall()
    for line_id, name, last_ts, counted_to, state, frames, raw, bins, trays in rows:
        st = _load_state(state)
        ob = linecount.open_bin(st) if st is not None else None
        out.append({"line_id": line_id, "name": name, "frames": frames, "raw_frames": raw, "bins": bins,
                    "trays": trays, "last_frame_ts": last_ts, "counted_to_ts": counted_to,
                    "open_bin": None if ob is None else {"start_ts": float(ob[0]), "trays": int(ob[1])}})
    return out


# ---------------------------------------------------------------------------------------------------
# replay


def _line_ts(raw: bytes, ts_col: int | None) -> float | None:
    try:
        if ts_col is None:
            rec = json.loads(raw)
            value = rec.get("ts", rec.get("timestamp", rec.get("time"))) if isinstance(rec, dict) else None
        else:
            value = next(csv.reader([raw.decode("utf-8").rstrip("\r\n")]))[ts_col]
        return None if value is None else _parse_ts(value)
    except (ValueError, UnicodeDecodeError, IndexError, _Skip):
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
        header = _csv_header(lines[0].lstrip(b"\xef\xbb\xbf"))
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
            raise _local_error(out_path, exc) from exc
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
        raise _local_error(out_path, exc) from exc
    finally:
        if fh is not None:
            fh.close()
    span = 0.0 if first_ts is None else latest - first_ts
    return {"lines": len(lines), "frames": frames, "waited_s": round(waited, 6), "span_s": span,
            "speed": speed, "dst": dst}

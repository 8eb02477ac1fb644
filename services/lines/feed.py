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

import json
import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import sqlite_utils

from db.database import immediate
from services.core.audit import record
from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import get_settings
from services.core.errors import ConsoleError, InvalidInput, NotFound
from services.core.storage import ObjectStore, is_s3
from services.lines import counter as linecount
from services.lines.chunks import FileReport, ReadProgress, complete_line_chunks, parse_chunk
from services.lines.rows import (  # noqa: F401 - re-exported
    DEFAULT_CAMERA,
    MAX_COUNT,
    MAX_FUTURE_S,
    MIN_TS,
    REASONS,
    Rules,
    Skip,
    csv_header,
    csv_rows,
    json_rows,
)
from services.lines.sources import LocalFile, S3File, SourceFile, listing

MAX_SAMPLES = 10  # skipped lines kept per file, with their line numbers
COUNT_BATCH = 500_000  # frames counted per transaction per line
SETTLE_SECONDS = 60.0
_STATE_FULL = "done"
_STATE_PARTIAL = "partial"
_STATE_CHANGED = "changed"



class _Busy(Exception):
    """Another ingest moved this file's offset while we were reading it."""



# ---------------------------------------------------------------------------------------------------
# ingest


def _file_row(db: sqlite_utils.Database, uri: str) -> dict[str, Any] | None:
    rows = list(db.query("SELECT * FROM line_files WHERE uri = ?", [uri]))
    return rows[0] if rows else None


def _store_chunk(db: sqlite_utils.Database, *, uri: str, expect_offset: int, new_offset: int, size: int, etag: str,
                 frames: list[tuple[str, str, float, int, int]], skipped: dict[str, int],
                 samples: list[dict[str, Any]], register: bool, report: FileReport) -> None:
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


def _ingest_file(db: sqlite_utils.Database, src: SourceFile, *, listed_size: int, rules: Rules, register: bool,
                 report: FileReport, sample_room: int) -> str:
    """Read what is new in one file. Returns 'read', 'unchanged', 'changed' or 'busy'.

    Raises NotFound/StorageError for the file, InvalidInput when a CSV header is unusable.
    """
    prev = _file_row(db, src.uri)
    offset = prev["offset"] if prev else 0
    if prev:
        known = _outcome_without_reading(db, src, prev=prev, listed_size=listed_size, now_ts=rules.now_ts)
        if known is not None:
            return known
    is_csv = src.uri.lower().endswith(".csv")
    progress = ReadProgress.start(src, offset=offset, is_csv=is_csv, sample_room=sample_room)
    pos = offset
    for chunk in complete_line_chunks(src, offset=offset, is_csv=is_csv):
        parsed = parse_chunk(chunk, src=src, is_csv=is_csv, rules=rules, progress=progress, report=report)
        try:
            _store_chunk(db, uri=src.uri, expect_offset=chunk.start, new_offset=chunk.end,
                         size=max(src.size_read, chunk.end), etag=src.etag, frames=parsed.frames,
                         skipped=parsed.skipped, samples=parsed.samples, register=register, report=report)
        except _Busy:
            return "busy"
        report.samples.extend({"uri": src.uri, **s} for s in parsed.samples)
        pos = chunk.end
    return "read" if pos > offset else "unchanged"


def _outcome_without_reading(db: sqlite_utils.Database, src: SourceFile, *, prev: dict[str, Any], listed_size: int,
                             now_ts: float) -> str | None:
    """'changed' or 'unchanged' when a file read before is not to be read now (a rewritten one is marked
    changed), None when there may be something new. Raises NotFound/StorageError for the file."""
    offset = prev["offset"]
    if prev["state"] == _STATE_CHANGED:
        return "changed"
    if listed_size < prev["size"]:
        _mark_changed(db, src.uri, f"the file shrank from {prev['size']} to {listed_size} bytes after {offset} "
                                   "were read: it was rewritten; not read again")
        return "changed"
    if listed_size == prev["size"]:
        if offset >= listed_size:
            return "unchanged"
        if isinstance(src, LocalFile):  # only a pending last line: read it once the file has settled
            st = src.stat()
            if st.st_size == prev["size"] and now_ts - st.st_mtime < src.settle_seconds:
                return "unchanged"
    if offset > 0 and src.byte_at(offset - 1) != b"\n":
        _mark_changed(db, src.uri, f"the byte before offset {offset} is no longer a line end: the file was "
                                   "rewritten; not read again")
        return "changed"
    return None


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
    Raises NotFound (missing folder, bucket or file), InvalidInput (bad URI), PermissionDenied (outside the
    storage roots) or StorageError for the source as a whole.
    """
    require(db, actor=actor, action="lines.ingest")
    store.check_allowed(uri)  # local frame files are read directly, so the storage roots are checked here
    now = time.time() if now_ts is None else float(now_ts)
    settings = get_settings(db)
    known = None
    if known_lines_only:
        known = {r[0] for r in db.execute("SELECT id FROM lines")}
    rules = Rules(min_confidence=float(settings["line_min_confidence"]), now_ts=now, known_lines=known)
    out: dict[str, Any] = {"uri": uri, "files": 0, "files_read": 0, "files_unchanged": 0, "files_changed": [],
                           "files_busy": [], "errors": []}
    total = FileReport()
    seen: list[str] = []
    for file_uri, size in listing(uri, store):
        out["files"] += 1
        seen.append(file_uri)
        src: SourceFile = (S3File(file_uri, store) if is_s3(file_uri)
                      else LocalFile(file_uri, now_ts=now, settle_seconds=settle_seconds))
        try:
            store.check_allowed(file_uri)  # a link inside the feed folder must not lead out of the roots
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
    require(db, actor=actor, action="lines.ingest")
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
                "INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at, estimated, trays_low, "
                "trays_high) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(line_id, float(b.start_ts), float(b.end_ts), int(b.trays), str(b.reason), now, int(b.estimated),
                  int(b.low), int(b.high)) for b in bins])
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
    bins), estimated_bins (bins an outage hid, counted from the line's pace) and trays_range (low, high: the
    trays with those bins at either end of their range), last_frame_ts, counted_to_ts, open_bin {start_ts, trays} (the bin filling now) or None, and
    raw_frames (frames stored now; counted only when asked: it scans the line's frames). Raises
    InvalidInput if a line's saved counter state is unreadable."""
    out = []
    raw_sql = "(SELECT COUNT(*) FROM line_frames f WHERE f.line_id = l.id)" if raw_frames else "NULL"
    rows = db.execute(
        "SELECT l.id, l.name, l.last_frame_ts, s.counted_to_ts, s.state, "
        "(SELECT COALESCE(SUM(frames), 0) FROM line_minutes m WHERE m.line_id = l.id), "
        f"{raw_sql}, "
        "(SELECT COUNT(*) FROM line_bins b WHERE b.line_id = l.id), "
        "(SELECT COALESCE(SUM(trays), 0) FROM line_bins b WHERE b.line_id = l.id), "
        "(SELECT COUNT(*) FROM line_bins b WHERE b.line_id = l.id AND b.estimated), "
        "(SELECT COALESCE(SUM(trays_low), 0) FROM line_bins b WHERE b.line_id = l.id), "
        "(SELECT COALESCE(SUM(trays_high), 0) FROM line_bins b WHERE b.line_id = l.id) "
        "FROM lines l LEFT JOIN line_state s ON s.line_id = l.id ORDER BY l.id").fetchall()
    for line_id, name, last_ts, counted_to, state, frames, raw, bins, trays, est, low, high in rows:
        st = _load_state(state)
        ob = linecount.open_bin(st) if st is not None else None
        out.append({"line_id": line_id, "name": name, "frames": frames, "raw_frames": raw, "bins": bins,
                    "trays": trays, "estimated_bins": est, "trays_range": (low, high), "last_frame_ts": last_ts, "counted_to_ts": counted_to,
                    "open_bin": None if ob is None else {"start_ts": float(ob[0]), "trays": int(ob[1])}})
    return out

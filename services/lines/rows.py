"""Detector frame rows: JSON Lines or CSV rows parsed into frames, or skipped with a counted reason.

Fields: ``line_id``, ``camera_id`` (default ``cam1``), ``ts`` (ISO-8601, naive = UTC, or epoch seconds),
``count`` and optionally ``boxes`` (a list of ``{"confidence": ...}``; in CSV a JSON text). With boxes, the
count is the number of boxes at or above the minimum confidence; the reported count is kept as raw.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.core.errors import InvalidInput

DEFAULT_CAMERA = "cam1"
MAX_COUNT = 500  # trays in one frame above this is a detector fault
MIN_TS = 946684800.0  # 2000-01-01T00:00:00Z
MAX_FUTURE_S = 86400.0
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


class Skip(Exception):
    """A row that cannot be a frame: ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def parse_ts(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int:
        ts = float(value)
    elif value is None or kind is bool or kind is dict or kind is list:
        raise Skip("bad_ts", f"ts {value!r}")
    else:
        text = str(value).strip()
        if not text:
            raise Skip("missing_field", "ts is empty")
        try:
            if text[4:5] == "-":  # 2024-01-01...: ISO-8601 (naive = UTC)
                dt = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
                ts = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
            else:
                ts = float(text)
        except ValueError:
            raise Skip("bad_ts", f"ts {text[:40]!r} is neither ISO-8601 nor epoch seconds") from None
    if not math.isfinite(ts):
        raise Skip("bad_ts", f"ts {value!r}")
    return ts


def _parse_int(value: Any, name: str) -> int:
    kind = type(value)
    if kind is int:
        return value
    if kind is bool or kind is dict or kind is list:
        raise Skip("bad_count", f"{name} {value!r} is not a number")
    try:
        number = value if kind is float else float(str(value).strip())
    except ValueError:
        raise Skip("bad_count", f"{name} {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(number) or number != int(number):
        raise Skip("bad_count", f"{name} {value!r} is not a whole number")
    return int(number)


def _boxes_count(boxes: Any, min_confidence: float) -> tuple[int, int]:
    """(boxes at or above the confidence, all boxes)."""
    if isinstance(boxes, str):
        try:
            boxes = json.loads(boxes)
        except json.JSONDecodeError:
            raise Skip("bad_boxes", "boxes is not JSON") from None
    if type(boxes) is not list:
        raise Skip("bad_boxes", "boxes is not a list")
    kept = 0
    for box in boxes:
        if type(box) is not dict:
            raise Skip("bad_boxes", "a box is not an object")
        conf = box.get("confidence")
        if conf is None:
            conf = box.get("score")
        kind = type(conf)
        if not (kind is float or kind is int) or not math.isfinite(conf):
            raise Skip("bad_boxes", f"box confidence {conf!r} is not a number")
        if conf >= min_confidence:
            kept += 1
    return kept, len(boxes)


@dataclass
class Rules:
    min_confidence: float
    now_ts: float
    known_lines: set[str] | None  # None: any line id is accepted (and registered)


def _frame(rec: dict[str, Any], rules: Rules) -> tuple[str, str, float, int, int]:
    """One record -> (line_id, camera_id, ts, count, raw_count). Raises Skip."""
    if not rec.keys() <= _FIELDS:
        rec = {ALIASES.get(str(k).strip(), str(k).strip()): v for k, v in rec.items() if k is not None}
    line_id = rec.get("line_id")
    line_id = "" if line_id is None else str(line_id).strip()
    if not line_id:
        raise Skip("missing_field", "line_id missing")
    camera = rec.get("camera_id")
    if camera is None:
        camera = DEFAULT_CAMERA
    else:
        camera = str(camera).strip() or DEFAULT_CAMERA
    if rec.get("ts") is None:
        raise Skip("missing_field", "ts missing")
    ts = parse_ts(rec["ts"])
    boxes = rec.get("boxes")
    has_boxes = boxes is not None and not (isinstance(boxes, str) and not boxes.strip())
    count_value = rec.get("count")
    has_count = count_value is not None and not (isinstance(count_value, str) and not count_value.strip())
    if not has_count and not has_boxes:
        raise Skip("missing_field", "count missing (and no boxes)")
    raw = _parse_int(count_value, "count") if has_count else None
    if has_boxes:
        count, n_boxes = _boxes_count(boxes, rules.min_confidence)
        raw = n_boxes if raw is None else raw
    else:
        count = raw  # type: ignore[assignment]
    assert raw is not None
    if raw < 0 or count < 0:
        raise Skip("negative_count", f"count {raw}")
    if raw > MAX_COUNT or count > MAX_COUNT:
        raise Skip("absurd_count", f"count {max(raw, count)} > {MAX_COUNT}")
    if ts > rules.now_ts + MAX_FUTURE_S:
        hint = " (epoch milliseconds? give seconds)" if ts > 1e11 else ""
        raise Skip("future_ts", f"ts {ts:.0f} is more than a day in the future{hint}")
    if ts < MIN_TS:
        raise Skip("past_ts", f"ts {ts:.0f} is before 2000")
    if rules.known_lines is not None and line_id not in rules.known_lines:
        raise Skip("unknown_line", f"line id {line_id[:60]!r} is not registered")
    return line_id, camera, ts, int(count), int(raw)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Skip("malformed", "not valid UTF-8") from None


def json_rows(lines: list[bytes], rules: Rules) -> Iterable[tuple[int, Any]]:
    """(index of the line in ``lines``, frame tuple or Skip) for every non-blank line."""
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise Skip("malformed", f"not valid JSON: {exc.msg}") from None
            except UnicodeDecodeError:
                raise Skip("malformed", "not valid UTF-8") from None
            if not isinstance(rec, dict):
                raise Skip("malformed", "a line must be a JSON object")
            yield i, _frame(rec, rules)
        except Skip as skip:
            yield i, skip


def csv_header(raw: bytes) -> list[str]:
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


def csv_rows(lines: list[bytes], header: list[str], rules: Rules) -> Iterable[tuple[int, Any]]:
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            text = _decode(raw).rstrip("\r\n")
            try:
                values = next(csv.reader([text]))
            except csv.Error as exc:
                raise Skip("malformed", f"not valid CSV: {exc}") from None
            if len(values) != len(header):
                raise Skip("malformed", f"{len(values)} values for {len(header)} columns")
            yield i, _frame(dict(zip(header, values)), rules)
        except Skip as skip:
            yield i, skip

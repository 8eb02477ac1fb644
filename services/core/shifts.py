"""Shifts from the ``shifts`` setting: UTC ``HH:MM`` start (inclusive) and end (exclusive); an end before the
start crosses midnight, an end equal to the start is a 24-hour shift; where shifts overlap the first listed wins."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.core.errors import InvalidInput

DAY_S = 86_400


@dataclass(frozen=True)
class Shift:
    """One shift definition: name, start and length in seconds after UTC midnight."""

    index: int
    name: str
    start_s: int
    length_s: int


def _hhmm(text: Any) -> int | None:
    """Seconds after midnight of ``HH:MM``, or None when the text is not a time of day."""
    hh, sep, mm = str(text).partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and 0 <= int(hh) < 24 and 0 <= int(mm) < 60):
        return None
    return (int(hh) * 60 + int(mm)) * 60


def validate_shifts(value: Any) -> list[dict[str, str]]:
    """The ``shifts`` setting cleaned: a non-empty list of {name, start "HH:MM", end "HH:MM"} with unique names.
    Raises InvalidInput."""
    if not isinstance(value, list) or not value:
        raise InvalidInput("shifts must be a non-empty list of {name, start, end}")
    out, names = [], set()
    for shift in value:
        if not isinstance(shift, dict) or not str(shift.get("name", "")).strip():
            raise InvalidInput("every shift needs a name")
        name = str(shift["name"]).strip()
        if name in names:
            raise InvalidInput(f"shift '{name}' is defined twice")
        names.add(name)
        for edge in ("start", "end"):
            if _hhmm(shift.get(edge, "")) is None:
                raise InvalidInput(f"shift '{name}': {edge} must be HH:MM, got {str(shift.get(edge, ''))!r}")
        out.append({"name": name, "start": shift["start"], "end": shift["end"]})
    return out


def parse_shifts(shifts: Sequence[dict[str, Any]]) -> list[Shift]:
    """The ``shifts`` setting as ``Shift`` objects, in the listed order. Raises InvalidInput for a bad entry."""
    out = []
    for i, shift in enumerate(shifts):
        try:
            name, start, end = str(shift["name"]), _hhmm(shift["start"]), _hhmm(shift["end"])
        except (KeyError, TypeError) as exc:
            raise InvalidInput(f"bad shift definition {shift!r}: needs name, start and end as HH:MM") from exc
        if start is None or end is None:
            raise InvalidInput(f"bad shift definition {shift!r}: needs name, start and end as HH:MM")
        out.append(Shift(index=i, name=name, start_s=start, length_s=(end - start) % DAY_S or DAY_S))
    return out


def _as_shifts(shifts: Sequence[dict[str, Any]] | Sequence[Shift]) -> list[Shift]:
    if shifts and isinstance(shifts[0], Shift):
        return list(shifts)  # type: ignore[arg-type]
    return parse_shifts(shifts)  # type: ignore[arg-type]


def shift_of(ts: float, shifts: Sequence[dict[str, Any]] | Sequence[Shift]) -> tuple[str, float] | None:
    """(name, start ts) of the shift instance containing ``ts``, or None when no shift covers it.

    ``shifts`` is the ``shifts`` setting. A shift crossing midnight started the day before for an
    instant after midnight. Raises InvalidInput for a bad shift definition.
    """
    secs = ts % DAY_S
    day = ts - secs
    for shift in _as_shifts(shifts):
        start = day + shift.start_s - (DAY_S if secs < shift.start_s else 0)
        if ts - start < shift.length_s:
            return shift.name, float(start)
    return None


def shift_instances(since_ts: float, until_ts: float,
                    shifts: Sequence[dict[str, Any]] | Sequence[Shift]) -> list[dict[str, Any]]:
    """Every shift instance overlapping ``[since_ts, until_ts)``: {shift, index, start_ts, end_ts} (not clipped),
    by start. Raises InvalidInput for a bad shift definition."""
    parsed = _as_shifts(shifts)
    out = []
    for day in range(math.floor(since_ts / DAY_S) - 1, math.floor(until_ts / DAY_S) + 1):
        for shift in parsed:
            start = day * DAY_S + shift.start_s
            end = start + shift.length_s
            if start < until_ts and end > since_ts:
                out.append({"shift": shift.name, "index": shift.index, "start_ts": float(start), "end_ts": float(end)})
    return sorted(out, key=lambda r: (r["start_ts"], r["index"]))

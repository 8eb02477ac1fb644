"""Shifts from the ``shifts`` setting: UTC ``HH:MM`` start (inclusive) and end (exclusive); an end before the
start crosses midnight, an end equal to the start is a 24-hour shift; where shifts overlap the first listed wins."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from services.errors import InvalidInput

DAY_S = 86_400


@dataclass(frozen=True)
class Shift:
    """One shift definition: name, start and length in seconds after UTC midnight."""

    index: int
    name: str
    start_s: int
    length_s: int


def parse_shifts(shifts: Sequence[dict[str, Any]]) -> list[Shift]:
    """The ``shifts`` setting as ``Shift`` objects, in the listed order. Raises InvalidInput for a bad entry."""
    out = []
    for i, shift in enumerate(shifts):
        try:
            name = str(shift["name"])
            sh, sm = (int(x) for x in str(shift["start"]).split(":"))
            eh, em = (int(x) for x in str(shift["end"]).split(":"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"bad shift definition {shift!r}: needs name, start and end as HH:MM") from exc
        start, end = (sh * 60 + sm) * 60, (eh * 60 + em) * 60
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

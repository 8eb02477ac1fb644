"""Time in one place: ISO-8601 UTC strings in the database."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now_ts() -> float:
    """Current time, epoch seconds. Pages read "now" here, so a test can freeze it
    (``monkeypatch.setattr(clock, "now_ts", lambda: T)``) and seed data relative to the same instant."""
    return time.time()


def now_iso() -> str:
    """Current UTC time, ISO-8601 with seconds and a Z suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> str:
    """Normalise an ISO-8601 date or time to UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'. Raises ValueError."""
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

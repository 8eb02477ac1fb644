"""Cells for CSV files a spreadsheet may open: text that a spreadsheet would run as a formula is neutralised.

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with an
apostrophe (the OWASP advice against CSV injection), so ``=HYPERLINK(...)`` shows as text. Numbers stay numbers
(``-3`` as an int or float is written as is); ``None`` stays empty for the writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(*, value: Any) -> Any:
    """``value`` with a leading apostrophe when it is text that starts like a formula; anything else (numbers,
    booleans, None) unchanged. Raises nothing."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(*, row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a DictWriter row with every cell passed through :func:`safe_cell`. Raises nothing."""
    return {key: safe_cell(value=value) for key, value in row.items()}


def safe_cells(*, row: Iterable[Any]) -> list[Any]:
    """A csv.writer row with every cell passed through :func:`safe_cell`. Raises nothing."""
    return [safe_cell(value=value) for value in row]

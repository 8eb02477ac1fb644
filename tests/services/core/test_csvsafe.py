"""CSV cells that a spreadsheet would run as formulas are neutralised; numbers stay numbers."""

from __future__ import annotations

import pytest

from services.core.csvsafe import safe_cell, safe_cells, safe_row


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_text_gets_a_leading_apostrophe(text):
    assert safe_cell(value=text) == "'" + text


@pytest.mark.parametrize("value", [-3, -2.5, 0, 7, None, True, "", "plain", "a=b", "1-1", "'=already"])
def test_numbers_and_plain_text_are_unchanged(value):
    assert safe_cell(value=value) == value


def test_rows_of_both_writer_kinds():
    assert safe_row(row={"a": "=1", "b": -1, "c": "x"}) == {"a": "'=1", "b": -1, "c": "x"}
    assert safe_cells(row=["@x", 2, None]) == ["'@x", 2, None]

"""The throughput CSV: a line name a spreadsheet would run as a formula is written as text; numbers stay numbers."""

from __future__ import annotations

import csv
import io

from services.lines import stats


def test_dashboard_csv_neutralises_formula_cells(monkeypatch):
    row = {"period": "day", "line_id": "@SUM(A1)", "line_name": '=HYPERLINK("http://evil.example","x")',
           "bins": 3, "trays": 10, "vs_target_pct": -3.5}
    monkeypatch.setattr(stats, "_csv_rows", lambda data: iter([row]))
    out = next(csv.DictReader(io.StringIO(stats.csv_from_dashboard({}))))
    assert out["line_id"] == "'@SUM(A1)" and out["line_name"] == '\'=HYPERLINK("http://evil.example","x")'
    assert out["vs_target_pct"] == "-3.5" and out["trays"] == "10" and out["shift"] == ""

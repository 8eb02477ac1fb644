"""The audit log export: text a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io

from services.core import audit


def test_audit_csv_neutralises_formula_cells(db):
    audit.record(db, actor='=HYPERLINK("http://evil.example","x")', action="user.sign_in", target="@SUM(A1)",
                 detail=None)
    rows = audit.entries(db, actor="cli:test")
    row = next(csv.DictReader(io.StringIO(audit.to_csv(rows))))
    assert row["actor"] == '\'=HYPERLINK("http://evil.example","x")' and row["target"] == "'@SUM(A1)"
    assert row["action"] == "user.sign_in" and row["id"].isdigit()

"""The filter report CSV: an object key a spreadsheet would run as a formula is written as text."""

from __future__ import annotations

import csv
import io

from services.dataset_filter import outputs


def test_report_csv_neutralises_formula_cells(db, monkeypatch):
    rows = [{"seq": 1, "uri": "s3://b/=HYPERLINK(1)", "outcome": "kept", "label": "-1+1", "confidence": 0.5,
             "copied_to": "+evil", "check_status": None, "detail": {"error": "@SUM(A1)", "detections": {}}}]
    monkeypatch.setattr(outputs, "results", lambda db, **kw: rows)
    text, n = outputs.report_text(db, job_id=1)
    out = next(csv.DictReader(io.StringIO(text)))
    assert n == 1 and out["uri"] == "s3://b/=HYPERLINK(1)"  # only a leading formula character matters
    assert (out["label"], out["copied_to"], out["error"]) == ("'-1+1", "'+evil", "'@SUM(A1)")
    assert out["seq"] == "1" and out["confidence"] == "0.5000"

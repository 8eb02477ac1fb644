"""The job widgets' pure part: a job's stored result read as figures and tables, never as raw JSON or reprs."""

from __future__ import annotations

from pages.job_panel import figures


def test_a_result_reads_as_figures_and_tables():
    rows, tables = figures({
        "images_done": 3, "faces_found": 12, "destination": "/out", "share": 0.123456, "dry_run": False,
        "nothing_kept": {"message": "no image scored 0.8", "best": [0.41, 0.3]},
        "flagged": [{"key": "a.jpg", "faces": 14, "reasons": ["crowd: 14 faces"], "box": {"x1": 1, "y1": 2}}],
        "empty": [], "last_import": "2026-12-06T03:36:03.094702Z",
    })
    assert rows == [{"what": "images done", "value": "3"}, {"what": "faces found", "value": "12"},
                    {"what": "destination", "value": "/out"}, {"what": "share", "value": "0.1235"},
                    {"what": "dry run", "value": "no"},
                    {"what": "nothing kept · message", "value": "no image scored 0.8"},
                    {"what": "nothing kept · best", "value": "0.41, 0.3"}, {"what": "empty", "value": ""},
                    {"what": "last import", "value": "2026-12-06 03:36 UTC"}]  # a time as the app shows times
    assert tables == {"flagged": [{"key": "a.jpg", "faces": "14", "reasons": "crowd: 14 faces", "box": "x1 1; y1 2"}]}
    shown = repr(rows) + repr(tables)
    assert "{'x1'" not in shown and "['crowd" not in shown  # no Python repr reaches a cell

"""The lines-* commands: simulate a stream, ingest it, count, summarise, prune; the JSON summary line."""

from __future__ import annotations

import json

from services.cli import main as cli


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1]), out.err


def test_simulate_ingest_count_and_summarise_from_the_command_line(ws, tmp_path, capsys):
    d = str(ws.root)
    code, sim, _ = run(capsys, "--data-dir", d, "lines-simulate", "--out", str(tmp_path / "feed"), "--lines", "2",
                       "--hours", "0.5", "--start-ts", "1790000000")
    assert code == 0 and sim["frames"] > 0 and set(sim["truth_trays"]) == {"line-1", "line-2"}
    code, report, _ = run(capsys, "--data-dir", d, "lines-ingest", "--source", str(tmp_path / "feed"))
    assert code == 0 and report["frames_added"] == sim["frames"] and report["files_read"] == 1
    code, again, _ = run(capsys, "--data-dir", d, "lines-ingest", "--source", str(tmp_path / "feed"))
    assert again["frames_added"] == 0  # each file once
    code, summary, _ = run(capsys, "--data-dir", d, "lines-summary")
    by_line = {row["line_id"] if "line_id" in row else row["id"]: row for row in summary["lines"]}
    for line, truth in sim["truth_trays"].items():
        counted = by_line[line]["trays"] + ((by_line[line]["open_bin"] or {}).get("trays") or 0)
        assert abs(counted - truth) <= max(1, 0.02 * truth), (line, counted, truth)
    code, pruned, _ = run(capsys, "--data-dir", d, "lines-prune", "--older-than-days", "1")
    assert code == 0 and 0 < pruned["deleted"] <= sim["frames"]  # weeks old: every counted frame goes
    code, after, _ = run(capsys, "--data-dir", d, "lines-summary")
    assert [r["trays"] for r in after["lines"]] == [r["trays"] for r in summary["lines"]]  # pruning keeps totals


def test_a_missing_source_is_reported_as_an_error(ws, tmp_path, capsys):
    code, out, _ = run(capsys, "--data-dir", str(ws.root), "lines-ingest", "--source", str(tmp_path / "nope"))
    assert code == 1 and "nope" in out["error"]

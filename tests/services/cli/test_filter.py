"""The filter commands: estimate, dry run, a job run to the end, status, and a yes/no check answered."""

from __future__ import annotations

import json

import pytest

from services.cli import main as cli
from services.dataset_filter import job as dataset_filter
from tests.conftest import jpeg_bytes


def run(capsys, *argv):
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, json.loads(out.out.strip().splitlines()[-1]), out.err


class Fixed:
    """A detector that says what the file name says (the mechanics are under test, not the model)."""

    name = "local"
    cost_per_image = 0.0

    def __init__(self, *args, **kwargs) -> None:
        pass

    def detect(self, *, data, uri, wanted):
        from services.dataset_filter.label_detectors import Detection

        conf = 0.95 if "bird" in uri else 0.6 if "maybe" in uri else 0.01
        return {w: Detection(name=w, confidence=conf, matched=[w], boxes=[], image_size=None) for w in wanted}


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i, name in enumerate(["bird1.jpg", "maybe2.jpg", "cat3.jpg", "bird4.jpg"]):
        (src / name).write_bytes(jpeg_bytes(color=(i * 40, 80, 120)))
    (src / "notes.txt").write_text("not an image")
    return src


def test_estimate_dry_run_and_a_run_to_the_end(ws, folder, tmp_path, capsys, monkeypatch):
    d, dst = str(ws.root), str(tmp_path / "dst")
    base = ("--data-dir", d, "filter", "--source", str(folder), "--destination", dst, "--label", "bird")
    code, est, _ = run(capsys, *base, "--estimate")
    assert code == 0 and est["images_in_scope"] == 4 and est["non_images"] == 1
    code, dry, _ = run(capsys, *base, "--dry-run")
    assert code == 0 and len(dry["items"]) == 4
    code, bad, _ = run(capsys, "--data-dir", d, "filter", "--source", str(folder), "--destination", dst,
                       "--label", "birb", "--estimate")
    assert code == 1 and "bird" in bad["error"]  # a typo is caught before anything is scanned
    monkeypatch.setitem(dataset_filter.DETECTORS, "local", Fixed)
    code, done, _ = run(capsys, *base, "--threshold", "0.9", "--band-low", "0.5", "--wait")
    assert code == 0 and (done["kept"], done["band"], done["rejected"]) == (2, 1, 1)
    assert sorted(p.name for p in (tmp_path / "dst" / "bird").iterdir()) == ["bird1.jpg", "bird4.jpg", "manifest.jsonl",
                                                                           "report.csv"]
    code, status, _ = run(capsys, "--data-dir", d, "filter-status", str(done["job"]), "--results", "--outcome", "band")
    assert [r["uri"].rsplit("/", 1)[-1] for r in status["results"]] == ["maybe2.jpg"]
    code, summary, _ = run(capsys, "--data-dir", d, "filter-checks")
    assert summary["open"] == 1
    check_id = ws.db().execute("SELECT id FROM filter_checks").fetchone()[0]
    code, _, _ = run(capsys, "--data-dir", d, "filter-checks", "--answer", str(check_id), "--yes")
    assert code == 0 and (tmp_path / "dst" / "bird" / "maybe2.jpg").exists()  # a person said yes: copied

"""``cli export --format csv`` publishes the decided photos: a photo with label boxes to hide gets its redacted
copy under ``--published-prefix`` (default ``published/`` in the workspace), named by ``published_uri``."""

from __future__ import annotations

import csv
import io
import json

from services.cli import main as cli
from services.core.storage import ObjectStore
from services.redaction.labels import LabelBox
from services.redaction.store import save_found
from services.reviews.decisions import decide
from services.reviews.ingest import Row, ingest_rows
from tests.services.redaction.parcel import jpeg, parcel_photo


def test_the_cli_export_writes_the_published_copies_where_asked(ws, db, tmp_path, capsys):
    frame, items = parcel_photo()
    (tmp_path / "parcel.jpg").write_bytes(jpeg(frame))
    ingest_rows(db, rows=[Row(1, "r1", "product", [str(tmp_path / "parcel.jpg")])], store=ObjectStore(),
                batch=str(tmp_path), actor="t")
    image_id = db.execute("SELECT id FROM images").fetchone()[0]
    save_found(db, image_id=image_id, boxes=[LabelBox("qr", *items["qr"], 1.0)])
    decide(db, image_id=image_id, label="package", actor="cli:test")
    out, prefix = tmp_path / "out.csv", tmp_path / "site"
    code = cli.main(["--data-dir", str(ws.root), "export", "--format", "csv", "--out", str(out),
                     "--published-prefix", str(prefix)])
    assert code == 0 and json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == 1
    (row,) = csv.DictReader(io.StringIO(out.read_text()))
    published = row["published_uri"]
    assert published.startswith(str(prefix) + "/") and published.endswith(".jpg")
    assert [p for p in prefix.rglob("*") if p.is_file()] == [prefix / f"{image_id}" / published.rsplit("/", 1)[1]]

"""m016: ``line_bins`` gains ``estimated`` and the trays range; bins counted before it were seen whole."""

from __future__ import annotations

from db.database import connect
from db.migrations import MIGRATIONS, apply_migrations

BEFORE = [(n, fn) for n, fn in MIGRATIONS if n < "m016"]


def test_existing_bins_are_exact_and_the_new_columns_exist(tmp_path, monkeypatch):
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", BEFORE)
    db = connect(tmp_path / "c.db")
    db.execute("INSERT INTO lines (id, name) VALUES ('L1', 'L1')")
    db.execute("INSERT INTO line_bins (line_id, start_ts, end_ts, trays, reason, created_at) "
               "VALUES ('L1', 0, 60, 24, 'zero', 'x')")
    monkeypatch.setattr("db.migrations.registry.MIGRATIONS", MIGRATIONS)
    assert apply_migrations(db)[0] == "m016_estimated_bins"  # then any later ones
    assert db.execute("SELECT trays, estimated, trays_low, trays_high FROM line_bins").fetchall() == [(24, 0, 24, 24)]

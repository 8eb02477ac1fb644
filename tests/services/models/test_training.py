"""Labels stored for training: how many a workspace holds."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from services.core.storage import ObjectStore
from services.models.training import import_folder, label_count


def _photo(path: Path, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), color).save(path, format="JPEG")


def test_label_count_counts_the_labels_stored(db, tmp_path):
    assert label_count(db, actor="t") == 0
    root = tmp_path / "labelled"
    _photo(root / "product" / "a.jpg", (200, 10, 10))
    _photo(root / "product" / "b.jpg", (10, 10, 200))
    _photo(root / "package" / "c.jpg", (10, 200, 10))
    import_folder(db, root=str(root), store=ObjectStore(), actor="t")
    assert label_count(db, actor="t") == 3
    import_folder(db, root=str(root), store=ObjectStore(), actor="t")
    assert label_count(db, actor="t") == 3  # importing the same photos again adds none

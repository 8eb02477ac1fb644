"""The similarity index: kept current from the embeddings table, persisted, rebuilt when it cannot be trusted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.core.errors import ModelError
from services.reuse.near_copies import HashIndex, perceptual_hash
from services.reuse.similarity import SimilarityIndex


def _store(db, n: int, start: int = 0, backbone: str = "bb", ndim: int = 1280) -> np.ndarray:
    rng = np.random.default_rng(start)
    vecs = rng.normal(0, 1, (n, ndim)).astype(np.float32)
    for k, v in enumerate(vecs):
        db.execute("INSERT INTO embeddings (sha256, backbone, vector, created_at) VALUES (?, ?, ?, 'now')",
                   [f"sha{start + k}", backbone, v.tobytes()])
    return vecs


def test_sync_adds_only_new_rows_and_search_finds_the_nearest(db, tmp_path):
    vecs = _store(db, 50)
    _store(db, 5, start=1000, backbone="other")  # another backbone's rows are not this index's
    index = SimilarityIndex(tmp_path / "index", "bb")
    assert index.sync(db) == 50 and index.sync(db) == 0
    more = _store(db, 10, start=50)
    assert index.sync(db) == 10 and len(index) == 60
    hits = index.search(db, more[3] + 0.01, k=3)
    assert hits[0].sha256 == "sha53" and hits[0].similarity > 0.99
    assert all(h.similarity >= 0.2 for h in index.search(db, vecs[0], k=5, min_similarity=0.2))


def test_the_index_is_saved_and_a_damaged_or_foreign_file_is_rebuilt(db, tmp_path):
    _store(db, 30)
    SimilarityIndex(tmp_path / "index", "bb").sync(db)
    again = SimilarityIndex(tmp_path / "index", "bb")  # a new process: loaded from disk
    assert len(again) == 30 and again.sync(db) == 0
    meta = tmp_path / "index" / "bb.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "count": 7}))  # does not match the file
    damaged = SimilarityIndex(tmp_path / "index", "bb")
    assert len(damaged) == 0 and damaged.sync(db) == 30
    (tmp_path / "index" / "bb.usearch").write_bytes(b"garbage")
    assert len(SimilarityIndex(tmp_path / "index", "bb")) == 0
    assert len(SimilarityIndex(tmp_path / "index", "newer-backbone")) == 0  # a new backbone starts afresh


def test_vectors_of_the_wrong_size_say_so(db, tmp_path):
    _store(db, 2, ndim=64)
    with pytest.raises(ModelError, match="not 1280-dimensional"):
        SimilarityIndex(tmp_path / "index", "bb").sync(db)


def test_the_hash_index_finds_close_hashes_and_their_mirrors(db):
    from PIL import Image, ImageOps

    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).resize((320, 240)) for _ in range(20)]
    for k, pic in enumerate(pics):
        db.execute("INSERT INTO image_hashes (sha256, phash, phash_mirror) VALUES (?, ?, ?)", [f"h{k}", *perceptual_hash(pic)])
    index = HashIndex()
    assert index.sync(db) == 20 and index.sync(db) == 0
    assert index.near(db, perceptual_hash(ImageOps.mirror(pics[7])))[0] == ("h7", 0)
    assert [sha for sha, _ in index.near(db, perceptual_hash(pics[3]))] == ["h3"]

"""Nearest neighbours over every stored photo embedding: an HNSW index (usearch, cosine, half precision), one
file per backbone in the workspace, kept current from the ``embeddings`` table.

usearch with 16-bit floats was chosen by ``benchmarks/near_duplicates.py`` against hnswlib and faiss HNSW
(32-bit floats), usearch with 8-bit integers and exact numpy search, at 100,000 vectors: it finds the same
top 10 as exact search (int8 only 85% of them) in under a millisecond, with half the memory of the
32-bit libraries (a million 1280-d embeddings in under 3 GB). The index key of an embedding is its
``embeddings`` rowid; what has been added is recorded beside the index (the highest rowid), so
``sync`` adds only the new rows, and a file from another backbone or a damaged file is rebuilt.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sqlite_utils
from usearch.index import Index

from services.core.errors import ModelError
from services.core.private import make_private, open_private, private_dir

NDIM = 1280
SYNC_BATCH = 20_000
_FORMAT = 2  # 2: half precision (1 was int8: rebuilt)
_shared: dict[str, SimilarityIndex] = {}
_shared_lock = threading.Lock()


@dataclass(frozen=True)
class Neighbour:
    rowid: int  # of the embedding
    sha256: str
    similarity: float  # cosine, 1.0 for the same vector


EXPANSION_SEARCH = 256  # at a million vectors 64 missed the true nearest for 19% of near copies (benchmark)


def _new_index(ndim: int) -> Index:
    return Index(ndim=ndim, metric="cos", dtype="f16", connectivity=16, expansion_add=64,
                 expansion_search=EXPANSION_SEARCH)


class SimilarityIndex:
    """One backbone's index. Thread-safe; load once per process with ``shared``."""

    def __init__(self, folder: Path, backbone: str, *, ndim: int = NDIM) -> None:
        self.folder = Path(folder)
        self.backbone = backbone
        self.ndim = ndim
        self.path = self.folder / f"{backbone}.usearch"
        self.meta_path = self.folder / f"{backbone}.json"
        self._lock = threading.RLock()
        self.max_rowid = 0
        self.index = self._load()

    @classmethod
    def shared(cls, folder: Path, backbone: str) -> SimilarityIndex:
        """The process-wide index for ``folder`` and ``backbone`` (loaded from disk on first use)."""
        key = f"{Path(folder).resolve()}::{backbone}"
        with _shared_lock:
            if key not in _shared:
                _shared[key] = cls(Path(folder), backbone)
            return _shared[key]

    def _load(self) -> Index:
        try:
            meta = json.loads(self.meta_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return _new_index(self.ndim)
        if meta.get("format") != _FORMAT or meta.get("backbone") != self.backbone or meta.get("ndim") != self.ndim:
            return _new_index(self.ndim)  # made by another backbone or version: rebuilt by the next sync
        index = _new_index(self.ndim)
        try:
            index.load(str(self.path))
        except (RuntimeError, ValueError, OSError):  # a damaged or missing file: start again from the table
            return _new_index(self.ndim)
        if len(index) != meta.get("count"):
            return _new_index(self.ndim)
        self.max_rowid = int(meta.get("max_rowid", 0))
        return index

    def __len__(self) -> int:
        return len(self.index)

    def sync(self, db: sqlite_utils.Database, *, save: bool = True, max_rows: int | None = None) -> int:
        """Add the embeddings of this backbone stored since the last sync (all, or at most ``max_rows``), then
        save unless ``save`` is off (a page catching up on another process's work); returns how many.
        Raises ModelError for a vector of the wrong size."""
        added = 0
        with self._lock:
            while max_rows is None or added < max_rows:
                batch = SYNC_BATCH if max_rows is None else min(SYNC_BATCH, max_rows - added)
                rows = db.execute("SELECT rowid, vector FROM embeddings WHERE backbone = ? AND rowid > ? ORDER BY rowid "
                                  "LIMIT ?", [self.backbone, self.max_rowid, batch]).fetchall()
                if not rows:
                    break
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
                if vectors.size != len(rows) * self.ndim:
                    raise ModelError(f"stored embeddings of {self.backbone} are not {self.ndim}-dimensional: "
                                     "re-run classification to recompute them")
                keys = np.array([r[0] for r in rows], dtype=np.uint64)  # rising, all past max_rowid: all new
                self.index.add(keys, vectors.reshape(len(rows), self.ndim), threads=2)
                added += len(rows)
                self.max_rowid = int(keys[-1])
            if added and save:
                self._save()
        return added

    def rebuild(self, db: sqlite_utils.Database) -> int:
        """Drop the index and add every stored embedding again; returns how many."""
        with self._lock:
            self.index = _new_index(self.ndim)
            self.max_rowid = 0
            return self.sync(db)

    def _save(self) -> None:
        private_dir(self.folder)
        tmp = self.path.with_suffix(".usearch.tmp")
        self.index.save(str(tmp))
        make_private(tmp)  # 0600 before it takes the index's name
        os.replace(tmp, self.path)
        meta = {"format": _FORMAT, "backbone": self.backbone, "ndim": self.ndim, "count": len(self.index),
                "max_rowid": self.max_rowid}
        tmp_meta = self.meta_path.with_suffix(".json.tmp")
        with os.fdopen(open_private(tmp_meta), "w") as f:
            f.write(json.dumps(meta))
        os.replace(tmp_meta, self.meta_path)

    def search(self, db: sqlite_utils.Database, vector: np.ndarray, *, k: int = 10,
               min_similarity: float = -1.0) -> list[Neighbour]:
        """The ``k`` stored embeddings nearest ``vector`` (most similar first), at least ``min_similarity``."""
        with self._lock:
            if not len(self.index):
                return []
            found = self.index.search(np.asarray(vector, dtype=np.float32).reshape(-1), min(k, len(self.index)))
        pairs = [(int(key), 1.0 - float(dist)) for key, dist in zip(found.keys, found.distances)]
        pairs = [(key, sim) for key, sim in pairs if sim >= min_similarity]
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        shas = dict(db.execute(f"SELECT rowid, sha256 FROM embeddings WHERE rowid IN ({marks})",
                               [key for key, _ in pairs]).fetchall())
        return [Neighbour(key, shas[key], sim) for key, sim in pairs if key in shas]

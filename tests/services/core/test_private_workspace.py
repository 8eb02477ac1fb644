"""Issue 19 item 9: the workspace is private to the account running the console: folders 0700, the
database (and its -wal/-shm), photos written locally, model and index files 0600; an existing workspace
made before this is tightened when it is opened. (The tests run as root, but the mode bits still show.)"""

from __future__ import annotations

import os
import stat

import numpy as np

from db.database import connect
from services.core.config import Workspace
from services.core.storage import ObjectStore
from services.models.head import Head
from services.reuse.similarity import SimilarityIndex


def _mode(path) -> int:  # type: ignore[no-untyped-def]
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_a_new_workspace_is_private(tmp_path):
    ws = Workspace.open(tmp_path / "fresh")
    db = ws.db()
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")  # the WAL files exist while a connection is open
    try:
        for folder in (ws.root, ws.objects_dir, ws.models_dir):
            assert _mode(folder) == 0o700, folder
        for suffix in ("", "-wal", "-shm"):
            path = f"{ws.db_path}{suffix}"
            assert os.path.exists(path) and _mode(path) == 0o600, path
    finally:
        db.close()


def test_an_existing_workspace_is_tightened_when_opened(tmp_path):
    root = tmp_path / "old"
    for sub in ("", "objects", "models"):
        (root / sub).mkdir(exist_ok=True)
        os.chmod(root / sub, 0o755)
    connect(root / "console.db").close()
    os.chmod(root / "console.db", 0o644)
    (root / "models" / "head-1.npz").write_bytes(b"x")
    os.chmod(root / "models" / "head-1.npz", 0o644)
    ws = Workspace.open(root)
    for folder in (ws.root, ws.objects_dir, ws.models_dir):
        assert _mode(folder) == 0o700, folder
    assert _mode(ws.db_path) == 0o600
    assert _mode(root / "models" / "head-1.npz") == 0o600


def test_connect_makes_the_database_private(tmp_path):
    path = tmp_path / "elsewhere" / "x.db"
    db = connect(path)
    try:
        assert _mode(path) == 0o600 and _mode(f"{path}-wal") == 0o600 and _mode(f"{path}-shm") == 0o600
    finally:
        db.close()


def test_local_writes_are_private(tmp_path):
    target = tmp_path / "objects" / "new-folder" / "photo.jpg"
    ObjectStore().write(str(target), b"data")
    assert _mode(target) == 0o600
    assert _mode(target.parent) == 0o700


def test_model_and_index_files_are_private(db, tmp_path):
    head = Head(classes=["a", "b"], mean=np.zeros(3), scale=np.ones(3), coef=np.zeros((2, 3)),
                intercept=np.zeros(2))
    head.save(tmp_path / "models" / "head.npz")
    assert _mode(tmp_path / "models" / "head.npz") == 0o600
    vec = np.ones(1280, dtype=np.float32)
    db.execute("INSERT INTO embeddings (sha256, backbone, vector, created_at) VALUES ('s', 'bb', ?, 'now')",
               [vec.tobytes()])
    SimilarityIndex(tmp_path / "index", "bb").sync(db)
    assert _mode(tmp_path / "index") == 0o700
    assert _mode(tmp_path / "index" / "bb.usearch") == 0o600
    assert _mode(tmp_path / "index" / "bb.json") == 0o600

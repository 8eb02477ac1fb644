"""Files and folders only the account running the console can read (issue 19 item 9).

The workspace holds customer photos, reviews, password hashes and models: folders are 0700 and files
0600 whatever the process umask. Writers create through these helpers; ``tighten_workspace`` fixes a
workspace created before, when it is opened. Modes are set explicitly (no process-wide umask: Streamlit
sessions are threads of one process)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create ``path`` (and missing parents, those 0700 too) if needed and make it 0700; the path.
    Raises OSError when it cannot be created or is not ours to change."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for created in missing:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(created, DIR_MODE)
    os.chmod(path, DIR_MODE)
    return path


def make_private(path: str | Path) -> None:
    """Make an existing regular file 0600 (nothing for a missing file or a symbolic link, whose target
    may not be ours). Raises OSError when the mode cannot be changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != FILE_MODE:
        os.chmod(path, FILE_MODE)


def open_private(path: str | Path, *, exclusive: bool = False) -> int:
    """A write descriptor on ``path``, created 0600 (truncated if it exists, refused if ``exclusive``)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode through O_CREAT
    return fd


def tighten_workspace(root: str | Path, folders: tuple[Path, ...] = ()) -> None:
    """Make ``root`` and ``folders`` 0700 and the regular files directly in them 0600 (the database and
    its -wal/-shm, model and index files). Deeper files need no walk: a 0700 folder above them keeps
    every other account out. Raises OSError when a mode cannot be changed."""
    for folder in (Path(root), *folders):
        private_dir(folder)
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                make_private(entry.path)

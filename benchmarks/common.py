"""What both benchmarks share: paths, source photos, a progress printer and a busy-machine gauge."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"  # cached photos (gitignored)
SAMPLES = ROOT.parent / "shared" / "samples" / "reviews"
SKIMAGE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg")
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def source_photos() -> tuple[list[Path], str]:
    """The real sample photos, or (said so) the colour photos in scikit-image's data folder."""
    if SAMPLES.is_dir():
        return sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")), "samples"
    import skimage

    data = Path(skimage.__file__).parent / "data"
    print(f"NOTE: {SAMPLES} not found; falling back to scikit-image's data photos", flush=True)
    return [data / n for n in SKIMAGE_PHOTOS if (data / n).exists()], "scikit-image data (fallback)"


def cpu_ticks() -> tuple[int, ...]:
    """(busy ticks of all CPUs, all ticks, this process's ticks) from /proc (Linux); zeros elsewhere."""
    try:
        t = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        return sum(t) - t[3] - t[4], sum(t), int(own[11]) + int(own[12])
    except (OSError, IndexError, ValueError):
        return 0, 0, 0


def others_share(before: tuple[int, ...]) -> float:
    """Share of all CPU time since ``before`` used by other processes (a busy machine skews the figures)."""
    busy, total, own = (a - b for a, b in zip(cpu_ticks(), before))
    return round(max(0, busy - own) / total, 3) if total else 0.0


@contextmanager
def progress(ws, line: Callable, every: float = 5.0) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Print ``line(db, seconds)`` every few seconds from a thread with its own database connection."""
    stop, t0 = threading.Event(), time.perf_counter()

    def loop() -> None:
        conn = ws.db()
        while not stop.wait(every):
            print(line(conn, time.perf_counter() - t0), flush=True)
        conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def git_dir(mirror_dir: Path, repo: str) -> Path | None:
    """The git directory of a fetched snapshot of ``owner/name`` under ``mirror_dir``, or None."""
    base = mirror_dir / repo.replace("/", "+", 1) / "repo"
    for candidate in (base / ".git", base):
        if (candidate / "HEAD").is_file():
            return candidate
    return None


def from_mirror(mirror_dir: Path, repo: str, commit: str, path: str) -> bytes | None:
    """The file at ``commit:path`` of a fetched snapshot (falling back to HEAD, which the caller's sha256 check
    then guards), or None."""
    gd = git_dir(mirror_dir, repo)
    if gd is None:
        return None
    for rev in (commit, "HEAD"):
        if not rev:
            continue
        res = subprocess.run(["git", "--git-dir", str(gd), "show", f"{rev}:{path}"], capture_output=True)
        if res.returncode == 0:
            return res.stdout
    return None


def wilson(k: int, n: int) -> list[float | None]:
    """Wilson 95% interval for k successes in n."""
    if n == 0:
        return [None, None]
    z, p = 1.96, k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, mid - half), 4), round(min(1.0, mid + half), 4)]


def photo_bootstrap(counts: list[tuple[int, int]], *, resamples: int = 2000, seed: int = 0,
                    min_units: int = 10) -> list[float | None]:
    """95% percentile interval of sum(k) / sum(n) when whole units (photos: (k, n) each) are resampled: items on
    one photo are not independent, so this is wider than ``wilson`` where a few photos hold most items. Seeded.
    None under ``min_units`` units with items, where a percentile bootstrap understates the uncertainty."""
    counts = [(k, n) for k, n in counts if n]
    if len(counts) < min_units:
        return [None, None]
    k, n = np.array(counts, dtype=float).T
    pick = np.random.default_rng(seed).integers(0, len(counts), size=(resamples, len(counts)))
    ratios = k[pick].sum(axis=1) / n[pick].sum(axis=1)
    return [round(float(np.percentile(ratios, 2.5)), 4), round(float(np.percentile(ratios, 97.5)), 4)]

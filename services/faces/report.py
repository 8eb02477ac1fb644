"""What an admin is told about each anonymised file: how many faces were found, and why it deserves a human look.
Pure functions on detections; the job writes their result into each file's ``.faces.json`` and its summary.

A file is flagged for a look when

* it is a **crowd** (``CROWD`` faces or more in the photo, or in one frame of a video): small faces are missed
  most where there are many;
* its detections are **weak**: at least ``WEAK_MIN`` faces, and a third of them or more, scored under ``SURE``
  (kept because two passes or two views agreed, near the threshold), where a missed or a false face is likeliest;
* a mask **left detail** in a face (the Laplacian measure of ``services.faces.quality`` not halved), which the
  default masks never do but a small mask scale with box masks can.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.faces.quality import REMOVED_BELOW
from services.faces.search import SURE

CROWD = 12
WEAK_MIN = 3


def weak_count(scores: np.ndarray | list[float]) -> int:
    """How many scores are under ``SURE``."""
    return int((np.asarray(scores, dtype=np.float32) < SURE).sum())


def reasons(*, faces: int, weak: int, most_at_once: int, detail_left: int = 0) -> list[str]:
    """Why a file deserves a human look (empty: it does not)."""
    out = []
    if most_at_once >= CROWD:
        out.append(f"crowd: {most_at_once} faces" + (" in one frame" if most_at_once != faces else ""))
    if weak >= WEAK_MIN and weak * 3 >= faces:
        out.append(f"weak detections: {weak} of {faces} faces scored under {SURE}")
    if detail_left:
        out.append(f"masks left detail in {detail_left} face{'s' if detail_left > 1 else ''}")
    return out


def image_report(boxes: np.ndarray, ratios: np.ndarray) -> dict[str, Any]:
    """Counts and review reasons for one photo: its faces (N, 5) and the detail each kept (after / before)."""
    faces, weak = len(boxes), weak_count(boxes[:, 4]) if len(boxes) else 0
    left = int((ratios >= REMOVED_BELOW).sum())
    return {"faces_found": faces, "weak": weak, "detail_left": left,
            "review": reasons(faces=faces, weak=weak, most_at_once=faces, detail_left=left)}


def video_report(*, tracks: int, weak_tracks: int, most_at_once: int) -> dict[str, Any]:
    """Counts and review reasons for one video: faces are tracks, a crowd is many of them masked in one frame
    (``most_at_once``: tracks, not boxes; a face held past its last look is masked both where it was and where the
    camera carried it, two masks of one face)."""
    return {"faces_found": tracks, "weak": weak_tracks, "most_in_a_frame": most_at_once,
            "review": reasons(faces=tracks, weak=weak_tracks, most_at_once=most_at_once)}

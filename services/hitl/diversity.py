"""Diversity in the queue: near-identical photos should not take turns at the head of it.

A label teaches the model little when a photo just like it was labelled a moment ago (a burst of one product's
photos, a reused photo). Claim-next looks at its shortlist of next candidates and, among the low-confidence ones
at its head (the photos ordered by what their label is worth), passes over those whose stored embedding is
near-identical (cosine >= ``NEAR_IDENTICAL``) to a photo answered in the last ``RECENT_SECONDS`` (at most the
latest ``RECENT_MAX`` answers), by anyone; when every one is, the first is served. Priorities are kept (an audit is
never passed for diversity), and audits, re-reviews and photos waiting for a first model keep their order. Photos
without an embedding (another backbone) are near-identical to nothing. For scale: distinct photos of the labelled
samples are at most 0.89 alike.

Claims stay fast: stored embeddings never change, so each process keeps the unit vectors it has read
(``VECTORS``) and, per database, the latest answers with theirs (``RECENT``), reading at each claim only the
answers and undos added since its last look.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
import sqlite_utils

from services.models.features import FeatureExtractor

NEAR_IDENTICAL = 0.97
RECENT_SECONDS = 600.0
RECENT_MAX = 200  # the latest answers looked at: a queue answering faster than this in ten minutes looks back less
CACHED_VECTORS = 4096  # about 20 MB of 1280-d float32


def _where(db: sqlite_utils.Database) -> str:
    """The database's file ("" for an in-memory one, whose rows are not kept between calls)."""
    return db.execute("PRAGMA database_list").fetchone()[2] or ""


class UnitVectors:
    """Unit embeddings by (database file, backbone, sha256), the least recently used dropped beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: sqlite_utils.Database, *, where: str, backbone: str, shas: Iterable[str]) -> dict[str, np.ndarray]:
        """{sha256: unit vector} for those of ``shas`` with a stored embedding of ``backbone`` (``where``: the
        database's file, "" for one not to keep)."""
        wanted = {s for s in shas if s}
        with self._lock:
            found = {s: self._items[(where, backbone, s)] for s in wanted if (where, backbone, s) in self._items}
            for s in found:
                self._items.move_to_end((where, backbone, s))
        missing = sorted(wanted - set(found))
        if missing:
            rows = db.execute(f"SELECT sha256, vector FROM embeddings WHERE backbone = ? AND sha256 IN "
                              f"({','.join('?' * len(missing))})", [backbone, *missing]).fetchall()
            for sha, blob in rows:
                v = np.frombuffer(blob, dtype=np.float32)
                found[sha] = v / max(float(np.linalg.norm(v)), 1e-12)
            if where:
                with self._lock:
                    self._items.update({(where, backbone, sha): found[sha] for sha, _ in rows})
                    while len(self._items) > self.size:
                        self._items.popitem(last=False)
        return found


VECTORS = UnitVectors(CACHED_VECTORS)


class _Ring:
    """The latest answers of one database: photo, answer time and unit vector per slot (zeros: none)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.last_answer, self.last_event = -1, 0  # -1: nothing read yet
        self.answer = np.full(RECENT_MAX, -1, np.int64)
        self.image = np.full(RECENT_MAX, -1, np.int64)
        self.at = [""] * RECENT_MAX
        self.matrix: np.ndarray | None = None
        self.next = 0

    def add(self, *, answer_id: int, image_id: int, at: str, vector: np.ndarray | None) -> None:
        slot = self.next % RECENT_MAX
        self.next += 1
        self.answer[slot], self.image[slot], self.at[slot] = answer_id, image_id, at
        if vector is not None and self.matrix is None:
            self.matrix = np.zeros((RECENT_MAX, len(vector)), np.float32)
        if self.matrix is not None:
            self.matrix[slot] = vector if vector is not None and len(vector) == self.matrix.shape[1] else 0.0

    def drop(self, answer_ids: set[int]) -> None:
        for slot in np.flatnonzero(np.isin(self.answer, list(answer_ids))).tolist():
            self.answer[slot], self.image[slot], self.at[slot] = -1, -1, ""
            if self.matrix is not None:
                self.matrix[slot] = 0.0

    def catch_up(self, db: sqlite_utils.Database, *, where: str, backbone: str) -> None:
        """Read the undos, then the answers, added since the last look (in that order, so that an answer undone
        meanwhile is either never added or dropped at the next look). A database replaced at the same path (fewer
        answers or events than seen) starts over."""
        top_answer, top_event = db.execute("SELECT (SELECT COALESCE(MAX(id), 0) FROM answers), "
                                           "(SELECT COALESCE(MAX(id), 0) FROM queue_events)").fetchone()
        if top_answer < self.last_answer or top_event < self.last_event:
            self.reset()
        if self.last_answer < 0:
            self.last_event = top_event  # undos of earlier answers: the answers are read without them
        else:
            events = db.execute("SELECT id, answer_id, action FROM queue_events WHERE id > ?", [self.last_event]).fetchall()
            self.last_event = max([self.last_event, *(e[0] for e in events)])
            undone = {e[1] for e in events if e[2] == "undo" and e[1] is not None}
            if undone:
                self.drop(undone)
        rows = db.execute(
            "SELECT a.id, a.image_id, a.answered_at, i.sha256 FROM active_answers a JOIN images i ON i.id = a.image_id "
            "WHERE a.id > ? ORDER BY a.id DESC LIMIT ?", [self.last_answer, RECENT_MAX]).fetchall()[::-1]
        vectors = VECTORS.get(db, where=where, backbone=backbone, shas=[r[3] for r in rows])
        for answer_id, image_id, at, sha in rows:
            self.add(answer_id=answer_id, image_id=image_id, at=at or "", vector=vectors.get(sha))
        self.last_answer = max([self.last_answer, 0, *(r[0] for r in rows)])

    def most_similar(self, candidates: list[tuple[int, np.ndarray]], *, since: str) -> list[float]:
        """Per candidate, its highest cosine to a photo answered at or after ``since`` (not itself); -1 for none."""
        if self.matrix is None:
            return [-1.0] * len(candidates)
        stale = np.array([at < since for at in self.at]) | (self.image < 0)
        out = []
        for image_id, vector in candidates:  # one matrix-vector product each: single-threaded in OpenBLAS
            if len(vector) != self.matrix.shape[1]:
                out.append(-1.0)
                continue
            cosine = self.matrix @ vector
            cosine[stale | (self.image == image_id)] = -1.0  # an overlap photo's own earlier answers do not count
            out.append(float(cosine.max()))
        return out


class RecentAnswers:
    """The latest answers per (database file, backbone), kept up to date incrementally."""

    def __init__(self) -> None:
        self._rings: dict[tuple[str, str], _Ring] = {}
        self._lock = threading.Lock()

    def most_similar(self, db: sqlite_utils.Database, *, where: str, backbone: str,
                     candidates: list[tuple[int, np.ndarray]], since: str) -> list[float]:
        with self._lock:
            ring = self._rings.setdefault((where, backbone), _Ring()) if where else _Ring()
            ring.catch_up(db, where=where, backbone=backbone)
            return ring.most_similar(candidates, since=since)


RECENT = RecentAnswers()


def _iso(ts: float) -> str:
    """Epoch seconds in the format of ``answers.answered_at`` (``services.core.clock.now_iso``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def near_recent_answers(db: sqlite_utils.Database, *, candidates: Sequence[int], now: float,
                        backbone: str = FeatureExtractor.backbone) -> set[int]:
    """The candidate photo ids whose embedding is near-identical to a photo answered since ``now`` -
    ``RECENT_SECONDS`` (undone answers do not count; a candidate's own earlier answers, as for an overlap photo,
    neither). Reads only; raises nothing of its own."""
    ids = [int(c) for c in candidates]
    if not ids:
        return set()
    shas = db.execute(f"SELECT id, sha256 FROM images WHERE id IN ({','.join('?' * len(ids))})", ids).fetchall()
    return _crowded(db, photos=shas, now=now, backbone=backbone)


def _crowded(db: sqlite_utils.Database, *, photos: list[tuple[int, str]], now: float, backbone: str) -> set[int]:
    """``near_recent_answers`` for (id, sha256) pairs."""
    where = _where(db)
    vectors = VECTORS.get(db, where=where, backbone=backbone, shas=[s for _, s in photos])
    cand = [(i, vectors[s]) for i, s in photos if s in vectors]
    if not cand:
        return set()
    best = RECENT.most_similar(db, where=where, backbone=backbone, candidates=cand, since=_iso(now - RECENT_SECONDS))
    return {i for (i, _), cosine in zip(cand, best) if cosine >= NEAR_IDENTICAL}


def prefer_diverse(db: sqlite_utils.Database, *, candidates: Sequence[int], now: float) -> list[int]:
    """``candidates`` (in queue order) with the leading low-confidence ones that are near-identical to a recently
    answered photo moved behind the other leading low-confidence ones; a photo of another priority is never
    passed. Reads only; raises nothing of its own."""
    order = [int(c) for c in candidates]
    if len(order) < 2:
        return order
    rows = {r[0]: r[1:] for r in db.execute(
        f"SELECT id, queue_reason, sha256 FROM images WHERE id IN ({','.join('?' * len(order))})", order).fetchall()}
    run = 0
    while run < len(order) and rows.get(order[run], (None,))[0] == "low_confidence":
        run += 1
    if run < 2:
        return order
    crowded = _crowded(db, photos=[(i, rows[i][1]) for i in order[:run]], now=now, backbone=FeatureExtractor.backbone)
    lead = [i for i in order[:run] if i not in crowded] + [i for i in order[:run] if i in crowded]
    return lead + order[run:]


def first_preferred(found: Sequence[int], preferred: Sequence[int]) -> int:
    """The first of ``preferred`` that is in ``found`` (re-checked candidates, not empty); else ``found[0]``."""
    still = set(found)
    return next((i for i in preferred if i in still), found[0])

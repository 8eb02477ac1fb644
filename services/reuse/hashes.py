"""64-bit DCT perceptual hashes of a picture, of its parts and of its quarter turns, and every stored hash in
memory for fast scans.

A stored photo has its whole-picture hash (``image_hashes`` row keyed by its sha256, written by classification)
and, once the reuse check has seen it, the hashes of its regions (``services.reuse.regions``) in rows keyed
``<sha256>#<region>``: the same table, so they persist and are scanned with the rest. Each row keeps the hash of
the mirror image too. A new photo is looked up with the hashes of its four quarter turns (a photo turned in
the gallery, or by its EXIF tag) and of the photo-like block it may hold (a screenshot); so a copy meets a
stored hash whether it was mirrored, turned, cropped hard, framed or pasted on a page.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np
import sqlite_utils
from PIL import Image

from services.reuse import regions
from services.reuse.regions import Box

HASH_BITS_NEAR = 10  # perceptual-hash distance at or below which two pictures are candidates
SCAN_CHUNK = 1 << 16  # stored hashes scanned at a time
REGION_SEP = "#"  # image_hashes.sha256 of a region row: <sha256>#<region>
QUARTER_BITS = 6  # a quarter's hash meets another hash only this close
QUARTER_MIN_STD = 16.0  # grey levels: a quarter whose 32x32 thumbnail varies less is too plain to hash


def _signed(bits: np.ndarray) -> int:
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << 64) if value >= 1 << 63 else value  # fits SQLite's signed 64-bit integers


def _bits(grey32: np.ndarray) -> int:
    low = cv2.dct(np.ascontiguousarray(grey32, dtype=np.float32))[:8, :8].flatten()
    return _signed(low > np.median(low[1:]))


def _thumb(grey: Image.Image, box: Box | None = None) -> np.ndarray:
    """The 32x32 greyscale thumbnail a hash is taken of (of ``box`` of the picture, or all of it)."""
    part = grey.crop(box) if box is not None else grey
    return np.asarray(part.resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float32)


def perceptual_hash(picture: Image.Image) -> tuple[int, int]:
    """(hash, hash of the mirror image): the signs of the 8x8 lowest DCT coefficients of a 32x32 greyscale
    thumbnail against their median, as signed 64-bit integers."""
    grey = _thumb(picture.convert("L"))
    return _bits(grey), _bits(grey[:, ::-1])


def hamming(a: int, b: int) -> int:
    """Differing bits of two 64-bit hashes."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def hash_distance(a: tuple[int, int], b: tuple[int, int]) -> int:
    """Perceptual distance allowing a mirror: the smaller of straight and mirrored comparison."""
    return min(hamming(a[0], b[0]), hamming(a[0], b[1]))


@dataclass(frozen=True)
class Probe:
    """One hash a new photo is looked up with: of ``box`` of the photo, turned ``turns`` quarter turns
    counter-clockwise (np.rot90)."""

    value: int
    box: Box
    turns: int
    max_bits: int = HASH_BITS_NEAR  # how close a stored hash must be to meet it


def grey_of(picture: Image.Image) -> np.ndarray:
    """The picture in greyscale (uint8), as hashes and keypoints read it."""
    return np.asarray(picture.convert("L"))


def quarter_boxes(picture: Image.Image) -> dict[str, Box]:
    """The quarters of the picture textured enough to hash (``QUARTER_MIN_STD``), by name."""
    grey = picture.convert("L")
    return {name: box for name, box in regions.quarters((0, 0, *picture.size)).items()
            if float(_thumb(grey, box).std()) >= QUARTER_MIN_STD}


def probes(picture: Image.Image, *, quarters: bool = False) -> list[Probe]:
    """The hashes to look a new photo up with: the whole photo and its uniform-margin-free content in their
    four quarter turns, and the photo-like block of a page (a screenshot) upright; with ``quarters``, each
    textured quarter upright too (met only within ``QUARTER_BITS``)."""
    grey = picture.convert("L")
    arr = np.asarray(grey)
    h, w = arr.shape
    whole: Box = (0, 0, w, h)
    boxes = [whole]
    content = regions.content_box(arr)
    if regions.differs(content, whole, (w, h)):
        boxes.append(content)
    out = [Probe(_bits(np.rot90(_thumb(grey, box), k)), box, k) for box in boxes for k in range(4)]
    placed = regions.placed_box(np.asarray(picture.convert("RGB")))
    if placed is not None and all(regions.differs(placed, b, (w, h)) for b in boxes):
        out.append(Probe(_bits(_thumb(grey, placed)), placed, 0))
        inner = regions.content_box(arr[placed[1]:placed[3], placed[0]:placed[2]])
        shifted = (placed[0] + inner[0], placed[1] + inner[1], placed[0] + inner[2], placed[1] + inner[3])
        if regions.differs(shifted, placed, (w, h)):
            out.append(Probe(_bits(_thumb(grey, shifted)), shifted, 0))
    if quarters:
        out += [Probe(_bits(_thumb(grey, box)), box, 0, QUARTER_BITS) for box in quarter_boxes(picture).values()]
    return out


def region_boxes(picture: Image.Image, *, quarters: bool = False) -> dict[str, Box]:
    """The regions of a stored photo hashed besides the whole: its content without uniform margins, the
    photo-like block of a page, and centre windows of the whole (what hard crops keep); with ``quarters``, its
    textured quarters too."""
    grey = grey_of(picture)
    h, w = grey.shape
    whole: Box = (0, 0, w, h)
    out: dict[str, Box] = {}
    content = regions.content_box(grey)
    if regions.differs(content, whole, (w, h)):
        out["trim"] = content
    placed = regions.placed_box(np.asarray(picture.convert("RGB")))
    if placed is not None and all(regions.differs(placed, b, (w, h)) for b in (whole, content)):
        out["placed"] = placed
    for name, share in regions.CENTRES.items():
        out[name] = regions.centre(whole, share)
    if quarters:
        out.update(quarter_boxes(picture))
    return out


def region_hashes(picture: Image.Image, *, quarters: bool = False) -> dict[str, tuple[int, int]]:
    """(hash, mirror hash) of each region of ``region_boxes``."""
    grey = picture.convert("L")
    out = {}
    for name, box in region_boxes(picture, quarters=quarters).items():
        thumb = _thumb(grey, box)
        out[name] = (_bits(thumb), _bits(thumb[:, ::-1]))
    return out


def nearest_bits(hashes: np.ndarray, mirrors: np.ndarray, probes_u: np.ndarray) -> np.ndarray:
    """Per stored hash (uint64, with its mirror image's), the fewest differing bits to any probe (uint64).
    Raises nothing."""
    best = None
    for v in probes_u:
        dist = np.minimum(np.bitwise_count(hashes ^ v), np.bitwise_count(mirrors ^ v))
        best = dist if best is None else np.minimum(best, dist, out=best)
    return best if best is not None else np.full(len(hashes), 255, dtype=np.uint8)


@dataclass(frozen=True)
class HashHit:
    sha256: str  # the stored photo
    region: str  # "" for the whole photo, else a name of region_boxes
    bits: int
    probe: int  # index of the probe that came closest
    mirrored: bool  # the stored mirror image's hash came closest


class HashIndex:
    """Every stored perceptual hash in memory (8 bytes each and its mirror's), kept current from the
    ``image_hashes`` table by rowid: a scan for near hashes takes a few milliseconds a probe at a million
    photos, and finds copies whose embeddings moved more than the hash did (turns, thumbnails, recolouring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.max_rowid = 0
        self.rowids = np.zeros(0, dtype=np.int64)
        self.hashes = np.zeros(0, dtype=np.uint64)
        self.mirrors = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self.rowids)

    def sync(self, db: sqlite_utils.Database) -> int:
        """Add the hashes stored since the last sync; returns how many."""
        with self._lock:
            rows = db.execute("SELECT rowid, phash, phash_mirror FROM image_hashes WHERE rowid > ? ORDER BY rowid",
                              [self.max_rowid]).fetchall()
            if rows:
                arr = np.array(rows, dtype=np.int64)
                self.rowids = np.concatenate([self.rowids, arr[:, 0]])
                self.hashes = np.concatenate([self.hashes, arr[:, 1].view(np.uint64)])
                self.mirrors = np.concatenate([self.mirrors, arr[:, 2].view(np.uint64)])
                self.max_rowid = int(arr[-1, 0])
            return len(rows)

    def near(self, db: sqlite_utils.Database, hashes: tuple[int, int], *,
             max_bits: int = HASH_BITS_NEAR) -> list[tuple[str, int]]:
        """(sha256, distance) of stored photos whose whole-picture hash is within ``max_bits`` of ``hashes``
        (mirror allowed), nearest first."""
        hits = self.scan(db, [hashes[0]], max_bits=max_bits)
        return [(h.sha256, h.bits) for h in hits if not h.region]

    def scan(self, db: sqlite_utils.Database, values: list[int], *, max_bits: int = HASH_BITS_NEAR,
             limits: list[int] | None = None) -> list[HashHit]:
        """Stored hashes (of whole photos and their regions) within ``max_bits`` of any of ``values``, or of its
        mirror image, nearest first: for each stored row the probe that came closest. ``limits``: per value, a
        closer bound (``Probe.max_bits``); a stored quarter is met only within ``QUARTER_BITS``."""
        with self._lock:
            if not len(self.rowids) or not values:
                return []
            probes_u = np.array(values, dtype=np.int64).view(np.uint64)
            found: dict[int, tuple[int, int, bool]] = {}
            for lo in range(0, len(self.rowids), SCAN_CHUNK):  # a chunk stays in cache while every probe passes
                hashes, mirrors = self.hashes[lo:lo + SCAN_CHUNK], self.mirrors[lo:lo + SCAN_CHUNK]
                best = nearest_bits(hashes, mirrors, probes_u)
                for i in np.flatnonzero(best <= max_bits):  # few: which probe, straight or mirrored
                    h, m = int(hashes[i]), int(mirrors[i])
                    options = [(hamming(h, v), k, False) for k, v in enumerate(values)]
                    options += [(hamming(m, v), k, True) for k, v in enumerate(values)]
                    options = [o for o in options if limits is None or o[0] <= limits[o[1]]]
                    if options:
                        found[int(self.rowids[lo + i])] = min(options)
        if not found:
            return []
        marks = ",".join("?" * len(found))
        keys = db.execute(f"SELECT rowid, sha256 FROM image_hashes WHERE rowid IN ({marks})", list(found)).fetchall()
        out = []
        for rowid, key in keys:
            sha, _, region = key.partition(REGION_SEP)
            bits, probe, mirror = found[rowid]
            if region not in regions.QUARTERS or bits <= QUARTER_BITS:
                out.append(HashHit(sha, region, bits, probe, mirror))
        return sorted(out, key=lambda h: h.bits)

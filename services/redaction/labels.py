"""Shipping labels on a parcel photo: where its barcodes, QR codes and text blocks are (``find_labels``), as boxes
to mask with the face masks (``services.faces.masks``, box-shaped: labels are rectangles). Pure functions on RGB
frames, no I/O, like the face detectors: decoding a photo (``frame_from_bytes``) is apart from finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from services.core.errors import ImageError, InvalidInput
from services.core.images import DEFAULT_MAX_PIXELS, decode, probe
from services.redaction.bar_network import BarNetwork, shared_bar_network
from services.redaction.boxes import area, intersection, iou, merge_pairs
from services.redaction.codes import find_barcodes, find_qr_codes
from services.redaction.text import BOX_THRESHOLD, TextDetector, join_lines, shared_text_detector

KINDS = ("barcode", "qr", "text")
# the kinds as people read them; "qr" is any 2-D code the search finds: QR, Data Matrix, PDF417, MaxiCode
KIND_NAMES = {"barcode": "barcode", "qr": "QR or 2D code", "text": "text block"}
MASK_SHAPE = "box"
MASK_SCALE = 1.1  # label boxes grow by a tenth about their centres: quiet zones and the edges of letters
CODE_SCORE = 1.0  # OpenCV's code detectors give no score: a found code is certain enough to hide


@dataclass(frozen=True)
class LabelBox:
    """One thing to hide on a label, in pixels of the upright photo."""

    kind: str
    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    def as_dict(self) -> dict[str, float | str]:
        return {"kind": self.kind, **rounded_corners(x1=self.x1, y1=self.y1, x2=self.x2, y2=self.y2),
                "score": round(self.score, 3)}


def rounded_corners(*, x1: float, y1: float, x2: float, y2: float) -> dict[str, float]:
    """A box's corners as they are shown and exported: to a tenth of a pixel. Raises nothing."""
    return {"x1": round(x1, 1), "y1": round(y1, 1), "x2": round(x2, 1), "y2": round(y2, 1)}


def validate_kinds(kinds: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The kinds asked for, in ``KINDS`` order. Raises InvalidInput for an unknown kind or none."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise InvalidInput(f"label kinds must be some of {', '.join(KINDS)}, got {sorted(kinds)!r}")
    return tuple(k for k in KINDS if k in kinds)


def frame_from_bytes(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An encoded photo as an upright RGB (H, W, 3) uint8 frame. Raises ImageError for empty, corrupt, truncated,
    non-image or oversized data."""
    return np.asarray(decode(data, max_pixels=max_pixels))


def check_frame(frame: np.ndarray) -> np.ndarray:
    """``frame`` as an RGB uint8 (H, W, 3) array. Raises ImageError for anything else (empty, wrong shape)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ImageError("label redaction needs an RGB photo (height x width x 3, 8-bit)")
    if min(frame.shape[:2]) < 8:
        raise ImageError(f"the photo is empty or too small to read labels on ({frame.shape[1]}x{frame.shape[0]})")
    return frame


def find_labels(frame: np.ndarray, *, kinds: tuple[str, ...] | list[str] = KINDS,
                text_detector: TextDetector | None = None, text_threshold: float = BOX_THRESHOLD,
                bar_network: BarNetwork | None = None, zoom: bool = True) -> list[LabelBox]:
    """The barcodes, QR codes and text blocks on an RGB frame, in that order. ``text_detector``: the process's
    shared one by default (loaded once); a frame where it finds a standing line is read turned a quarter too
    (``STANDING``, ``turned_blocks``); its lines of text serve barcodes too (bars found by their gradients count
    near printing, ``codes.find_barcodes``). Barcodes and QR codes are also what the bar network finds
    (``bar_network``, the shared one by default; its boxes carry its score): linear codes, and 2-D codes of any kind
    (QR, Data Matrix, PDF417, MaxiCode) as "qr". A frame longer than ZOOM_FROM is then read again at its own
    resolution around what this reading found or the bar network half saw (``zoom_regions``; ``zoom`` False: read
    once). Raises ImageError for a frame that is not an RGB photo, InvalidInput for an unknown kind, ModelError when
    a model cannot be loaded."""
    frame, kinds = check_frame(frame), validate_kinds(kinds)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    lines = turned = np.zeros((0, 5), np.float32)
    if "barcode" in kinds or "text" in kinds:
        detector = text_detector or shared_text_detector()
        lines = detector.lines(frame, threshold=text_threshold)
        if ((lines[:, 3] - lines[:, 1]) > STANDING * (lines[:, 2] - lines[:, 0])).any():
            turned = turned_blocks(frame, text_detector=detector, threshold=text_threshold)
    linear = matrices = candidates = np.zeros((0, 5), np.float32)
    if "barcode" in kinds or "qr" in kinds:
        linear, matrices, candidates = (bar_network or shared_bar_network()).codes_and_candidates(gray)
    found: list[LabelBox] = []
    if "barcode" in kinds:
        near_text = np.concatenate([lines, turned])
        found += [LabelBox("barcode", *map(float, b), CODE_SCORE) for b in find_barcodes(gray, text=near_text)]
        found += [LabelBox("barcode", *map(float, b[:4]), float(b[4])) for b in linear]
    if "qr" in kinds:
        found += [LabelBox("qr", *map(float, b), CODE_SCORE) for b in find_qr_codes(gray)]
        found += [LabelBox("qr", *map(float, b[:4]), float(b[4])) for b in matrices]
    if "text" in kinds:
        found += [LabelBox("text", *map(float, b[:4]), float(b[4])) for b in join_lines(lines)]
        found += [LabelBox("text", *map(float, b[:4]), float(b[4])) for b in turned]
    if zoom and max(frame.shape[:2]) > ZOOM_FROM:
        seen = found + [LabelBox("candidate", *map(float, b[:4]), float(b[4])) for b in candidates]
        closer = _zoomed(frame, seen, kinds=kinds, text_detector=text_detector, text_threshold=text_threshold,
                         bar_network=bar_network)
        found = sorted(_unique(closer + found), key=lambda b: KINDS.index(b.kind))
    return found


def turned_blocks(frame: np.ndarray, *, text_detector: TextDetector, threshold: float) -> np.ndarray:
    """Blocks of text (N, 5) read on the frame turned a quarter clockwise (lines joined as they lie there, never with
    the upright reading's), in the frame's pixels. Raises nothing for a valid frame."""
    height = frame.shape[0]
    turned = join_lines(text_detector.lines(np.ascontiguousarray(np.rot90(frame, k=-1)), threshold=threshold))
    out = turned.copy()
    out[:, 0], out[:, 2] = turned[:, 1], turned[:, 3]
    out[:, 1], out[:, 3] = height - turned[:, 2], height - turned[:, 0]
    return out


STANDING = 1.5  # a reading with a line of text taller than this many times its width (a label stuck sideways, a
# photo taken sideways: the networks find such text in pieces, as standing lines, or not at all) is read again turned
# a quarter. Chosen on the tune part turned a quarter either way (label_redaction.py --turn 1, 3): text 34 -> 36 and
# 35 -> 37 / 38; as it is, 37 / 38 either way, 1.36 -> 1.59 s a photo (every photo read turned: 2.7 s). Keeping only
# the turned lines near a standing one, or those lying in the turned frame, masked no less (waybills 42.3%, tune in
# 4032-px scenes 14.3%) and lost text (parcels 69 -> 65 / 78)


def _unique(boxes: list[LabelBox]) -> list[LabelBox]:
    """The boxes, those of one kind that repeat each other (one inside the other, or overlapping by REPEAT IoU or
    more: a code or line both readings found, or two crops) joined into their union, with the higher score: each box
    grown about its centre, the mask can only grow. Raises nothing."""
    out: list[LabelBox] = []
    for kind in dict.fromkeys(b.kind for b in boxes):
        rows = as_array([b for b in boxes if b.kind == kind])
        out += [LabelBox(kind, *map(float, r)) for r in merge_pairs(rows, joins=_repeats)]
    return out


def _repeats(a: np.ndarray, b: np.ndarray) -> bool:
    return intersection(a, b) >= min(area(a), area(b)) or iou(a, b) >= REPEAT


REPEAT = 0.5


ZOOM_FROM = 1600  # a frame longer than this is read again, at its own resolution, around what the first reading found
# (the text networks read 1280 px, the bar network 1600: on a 4032-px phone photo of a whole parcel a label's letters
# and bars are too small for them)
ZOOM_MARGIN = 1.5  # ...each found box grown by this many times its longer side on every side (at least ZOOM_PAD)
ZOOM_PAD = 96
ZOOM_SIDE = 1600  # a region longer than this is not read again (the first reading saw it nearly as large)
ZOOM_MOST = 16  # at most this many regions a photo (each costs about a first reading: a photo busy with print
# or bars everywhere would otherwise take minutes); the held-out photos have at most 10 (waybills, 3840 px)
# Chosen on the tune and tune2 photos placed at their own size on 4032-px scenes (benchmarks/label_redaction.py
# --canvas 4032): barcodes 37 -> 44 / 44 and 53 -> 58 / 59, text 34 -> 38 / 38


def zoom_regions(found: list[LabelBox], *, width: int, height: int) -> np.ndarray:
    """Regions (N, 4) of a frame to read again at full resolution: the found boxes grown by ZOOM_MARGIN (at least
    ZOOM_PAD pixels), overlapping ones joined, those longer than ZOOM_SIDE left out, the first ZOOM_MOST kept.
    Raises nothing."""
    grown = []
    for b in found:
        pad = max(ZOOM_PAD, ZOOM_MARGIN * max(b.x2 - b.x1, b.y2 - b.y1))
        grown.append([max(0.0, b.x1 - pad), max(0.0, b.y1 - pad), min(width, b.x2 + pad), min(height, b.y2 + pad)])
    regions = merge_pairs(np.array(grown, np.float32).reshape(-1, 4), joins=_overlap)
    keep = np.maximum(regions[:, 2] - regions[:, 0], regions[:, 3] - regions[:, 1]) <= ZOOM_SIDE
    return regions[keep][:ZOOM_MOST]


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two regions overlap and their union is at most ZOOM_SIDE across."""
    union = max(a[2], b[2]) - min(a[0], b[0]), max(a[3], b[3]) - min(a[1], b[1])
    return bool(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] and max(union) <= ZOOM_SIDE)


def _zoomed(frame: np.ndarray, found: list[LabelBox], *, kinds: tuple[str, ...], text_detector: TextDetector | None,
            text_threshold: float, bar_network: BarNetwork | None) -> list[LabelBox]:
    """``find_labels`` on each ``zoom_regions`` crop of the frame, the boxes moved into the frame's pixels."""
    out: list[LabelBox] = []
    for x1, y1, x2, y2 in zoom_regions(found, width=frame.shape[1], height=frame.shape[0]).astype(int):
        if min(x2 - x1, y2 - y1) < 8:
            continue
        crop = np.ascontiguousarray(frame[y1:y2, x1:x2])
        out += [LabelBox(b.kind, b.x1 + float(x1), b.y1 + float(y1), b.x2 + float(x1), b.y2 + float(y1), b.score)
                for b in find_labels(crop, kinds=kinds, text_detector=text_detector, text_threshold=text_threshold,
                                     bar_network=bar_network, zoom=False)]
    return out


def as_array(boxes: list[LabelBox]) -> np.ndarray:
    """(N, 5) float boxes (x1, y1, x2, y2, score), the face masks' input."""
    return np.array([[b.x1, b.y1, b.x2, b.y2, b.score] for b in boxes], dtype=np.float32).reshape(-1, 5)


def from_dicts(rows: list[dict]) -> list[LabelBox]:
    """Boxes back from ``LabelBox.as_dict`` rows (a sidecar, the database). Raises InvalidInput for a bad row."""
    try:
        return [LabelBox(str(r["kind"]), float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"]),
                         float(r.get("score", 1.0))) for r in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"a label box needs kind, x1, y1, x2, y2: {exc}") from exc


LABEL_SIDE = 4096  # photos are searched at most this large: a phone's 12-megapixel photo (4032 px) at its own size,
# which the closer reading of small labels needs (the first reading reduces it anyway)


def find_labels_in_photo(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, kinds: tuple[str, ...] = KINDS,
                         side: int = LABEL_SIDE) -> list[LabelBox]:
    """``find_labels`` on an encoded photo decoded at most ``side`` pixels across, the boxes given in pixels of the
    full upright photo. Raises ImageError for data that is not a readable photo, ModelError, InvalidInput."""
    width, height, _ = probe(data, max_pixels=max_pixels)
    frame = np.asarray(decode(data, max_side=side, max_pixels=max_pixels))
    fx, fy = width / frame.shape[1], height / frame.shape[0]
    return [LabelBox(b.kind, b.x1 * fx, b.y1 * fy, b.x2 * fx, b.y2 * fy, b.score)
            for b in find_labels(frame, kinds=kinds)]

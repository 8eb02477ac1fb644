"""Where and how often a frame is searched for faces, and how the passes' findings are merged: pure functions
(numpy arrays in, numpy arrays out); the network itself is run by the caller (``services.faces.detection``).

A frame is searched in several **passes**, each one scale of the frame, upright or mirrored:

* ``base``: the frame at its own resolution (large frames reduced to ``base_max`` on the longer side), and mirrored;
* ``fine``: twice the base, in tiles, and mirrored: a 10-pixel face becomes 20, where CenterFace finds it. Small
  frames are searched whole; on large ones only the tiles where the base passes saw a candidate are (the tiles
  nearest the candidates first, within a pixel budget);
* ``coarse``: half the base, for faces that fill the frame.

Merging keeps neighbours in a crowd: a box found by at least two passes (overlap ``SUPPORT_IOU``), or scored at
least ``SURE`` by one, is kept from ``threshold`` up; then non-maximum suppression removes only boxes that overlap a
stronger one by ``MERGE_IOU`` or more, so two heads side by side both stay. The settings were chosen on the tuning
part of benchmarks/faces_eval (benchmarks/blur_tune.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STRIDE = 32  # CenterFace's input sides are multiples of 32; its maps are a quarter of the input
PASS_IOU = 0.3  # within one pass, duplicates of one peak
SUPPORT_IOU = 0.5  # two passes found the same face
MERGE_IOU = 0.4  # across passes: overlap that makes two boxes one face
SURE = 0.3  # a score one pass alone is trusted with
PART_INSIDE = 0.8  # a box this much inside a stronger, larger one is part of that face


@dataclass(frozen=True)
class Plan:
    """How a frame is searched. ``fine`` and ``coarse`` are relative to the base scale (0 turns a pass off)."""

    base_max: int = 1920
    mirror: bool = True
    fine: float = 2.0
    fine_mirror: bool = True
    coarse: float = 0.5
    coarse_min: int = 256  # no coarse pass when its longer side would be under this
    tile: int = 1024  # fine-pass tiles, input pixels (wide)
    tile_height: int = 0  # and high (0: square)
    overlap: int = 96
    whole_below: int = 4_500_000  # a fine pass of fewer input pixels is run whole, without gating
    budget: int = 16_000_000  # input pixels of fine tiles at most (per direction) on large frames
    candidate: float = 0.05  # a base score that makes a tile worth a fine look
    candidate_max_width: float = 0.0  # only base boxes narrower than this (frame pixels) make it so (0: any)


@dataclass(frozen=True)
class Pass:
    """One network run: the input size, the region of the frame it covers (x1, y1, x2, y2 in frame pixels) and
    whether it is mirrored; ``group`` names the pass its tiles belong to (tiles of one pass vote once)."""

    group: str
    size: tuple[int, int]
    region: tuple[int, int, int, int]
    mirror: bool


def side32(v: float) -> int:
    return max(STRIDE, int(round(v / STRIDE)) * STRIDE)


def base_scale(width: int, height: int, plan: Plan) -> float:
    return min(1.0, plan.base_max / max(width, height))


def whole(group: str, width: int, height: int, scale: float, *, mirror: bool) -> Pass:
    return Pass(group, (side32(width * scale), side32(height * scale)), (0, 0, width, height), mirror)


def first_passes(width: int, height: int, plan: Plan) -> list[Pass]:
    """The passes over the whole frame: base (and mirrored) and coarse."""
    b = base_scale(width, height, plan)
    out = [whole("base", width, height, b, mirror=False)]
    if plan.mirror:
        out.append(whole("base-mirror", width, height, b, mirror=True))
    if plan.coarse and max(width, height) * b * plan.coarse >= plan.coarse_min:
        out.append(whole("coarse", width, height, b * plan.coarse, mirror=False))
    return out


def fine_passes(width: int, height: int, plan: Plan, candidates: np.ndarray) -> list[Pass]:
    """The fine passes: the whole frame at ``fine`` times the base when that is under ``whole_below`` input pixels,
    else tiles holding a candidate box (centres in frame pixels), nearest first, within ``budget``."""
    if not plan.fine:
        return []
    s = base_scale(width, height, plan) * plan.fine
    mirrors = (False, True) if plan.fine_mirror else (False,)
    if width * height * s * s <= plan.whole_below:
        return [whole("fine-mirror" if m else "fine", width, height, s, mirror=m) for m in mirrors]
    tiles = []
    if len(candidates) and plan.candidate_max_width:
        candidates = candidates[(candidates[:, 2] - candidates[:, 0]) < plan.candidate_max_width]
    if len(candidates):
        cx, cy = (candidates[:, 0] + candidates[:, 2]) / 2, (candidates[:, 1] + candidates[:, 3]) / 2
        for x1, y1, x2, y2 in _regions(width, height, s, plan):
            inside = int(((cx >= x1) & (cx < x2) & (cy >= y1) & (cy < y2)).sum())
            if inside:
                tiles.append((-inside, (x1, y1, x2, y2)))
    out: list[Pass] = []
    used = 0
    for _, (x1, y1, x2, y2) in sorted(tiles):
        size = (side32((x2 - x1) * s), side32((y2 - y1) * s))
        if used + size[0] * size[1] > plan.budget:
            break
        used += size[0] * size[1]
        out.extend(Pass("fine-mirror" if m else "fine", size, (x1, y1, x2, y2), m) for m in mirrors)
    return out


def all_tiles(width: int, height: int, plan: Plan) -> list[Pass]:
    """Every fine tile covering the frame, upright, in reading order (video looks go round them)."""
    s = base_scale(width, height, plan) * plan.fine
    return [Pass("fine", (side32((x2 - x1) * s), side32((y2 - y1) * s)), (x1, y1, x2, y2), False)
            for x1, y1, x2, y2 in _regions(width, height, s, plan)]


def _regions(width: int, height: int, s: float, plan: Plan) -> list[tuple[int, int, int, int]]:
    """The tiles' regions in frame pixels at fine scale ``s`` (tiles turned to the frame's orientation)."""
    tw, th = plan.tile / s, (plan.tile_height or plan.tile) / s
    if (height > width) != (th > tw):
        tw, th = th, tw
    return [(x1, y1, x2, y2) for y1, y2 in _spans(height, th, plan.overlap / s)
            for x1, x2 in _spans(width, tw, plan.overlap / s)]


def _spans(length: int, span: float, overlap: float) -> list[tuple[int, int]]:
    """Evenly spread windows of about ``span`` pixels over ``length``, neighbours overlapping by ``overlap`` or more."""
    if length <= span:
        return [(0, length)]
    n = int(np.ceil((length - overlap) / (span - overlap)))
    starts = np.linspace(0, length - span, n)
    return [(int(a), min(length, int(np.ceil(a + span)))) for a in starts]


def decode(heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, *, threshold: float) -> np.ndarray:
    """CenterFace's maps (heat (h, w), scale (2, h, w), offset (2, h, w)) to (K, 5) boxes [x1, y1, x2, y2, score]
    in input pixels, every cell above ``threshold`` (duplicates left to ``nms``)."""
    ys, xs = np.where(heat > threshold)
    if not len(ys):
        return np.zeros((0, 5), dtype=np.float32)
    s0, s1 = np.exp(scale[0, ys, xs]) * 4, np.exp(scale[1, ys, xs]) * 4
    x1 = (xs + offset[1, ys, xs] + 0.5) * 4 - s1 / 2
    y1 = (ys + offset[0, ys, xs] + 0.5) * 4 - s0 / 2
    return np.stack([x1, y1, x1 + s1, y1 + s0, heat[ys, xs]], axis=1).astype(np.float32)


def to_frame(boxes: np.ndarray, p: Pass) -> np.ndarray:
    """Boxes in a pass's input pixels (mirrored input undone) to frame pixels."""
    out = boxes.copy()
    w, h = p.size
    if p.mirror:
        out[:, [0, 2]] = w - out[:, [2, 0]]
    x1, y1, x2, y2 = p.region
    out[:, [0, 2]] = out[:, [0, 2]] * (x2 - x1) / w + x1
    out[:, [1, 3]] = out[:, [1, 3]] * (y2 - y1) / h + y1
    return out


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of boxes [x1, y1, x2, y2, ...]."""
    xx1, yy1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    xx2, yy2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def nms(boxes: np.ndarray, threshold: float) -> np.ndarray:
    """The boxes no stronger box overlaps by ``threshold`` or more, strongest first (memory linear in the boxes)."""
    order = np.argsort(-boxes[:, 4], kind="stable")
    keep: list[int] = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(int(i))
        order = rest[iou(boxes[i:i + 1], boxes[rest])[0] < threshold]
    return boxes[keep]


def support(boxes: np.ndarray, group: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """For each box, how many distinct passes (``group``) found a box overlapping it by ``SUPPORT_IOU``."""
    out = np.zeros(len(boxes), dtype=np.int32)
    for lo in range(0, len(boxes), chunk):
        near = iou(boxes[lo:lo + chunk], boxes) >= SUPPORT_IOU
        marks = np.zeros((len(near), int(group.max()) + 1), dtype=bool)
        rows, cols = np.nonzero(near)
        marks[rows, group[cols]] = True
        out[lo:lo + chunk] = marks.sum(axis=1)
    return out


def merge(found: list[tuple[str, np.ndarray]], *, threshold: float, votes: int = 2) -> np.ndarray:
    """One set of faces from every pass's boxes (group name, boxes in frame pixels at scores >= ``threshold``):
    a box stays when ``SURE`` or seen by ``votes`` passes, then overlapping boxes are merged (``MERGE_IOU``).
    Video frames use ``votes=1``: there time does the voting (``services.faces.video``)."""
    parts = [b for _, b in found if len(b)]
    if not parts:
        return np.zeros((0, 5), dtype=np.float32)
    boxes = np.concatenate(parts)
    names = sorted({g for g, b in found if len(b)})
    group = np.concatenate([np.full(len(b), names.index(g)) for g, b in found if len(b)])
    keep = (boxes[:, 4] >= max(threshold, SURE)) | (support(boxes, group) >= votes if votes > 1 else True)
    return drop_parts(nms(boxes[keep], MERGE_IOU))


def drop_parts(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` (strongest first, as ``nms`` gives them) less each box lying ``PART_INSIDE`` or more inside a box
    scored at least as high: a tile at twice the size sees the eyes or the mouth of a face larger than it as faces
    of their own. The larger box's mask covers them; counted, they made a couple eight faces."""
    if len(boxes) < 2:
        return boxes
    x1, y1 = np.maximum(boxes[:, None, 0], boxes[None, :, 0]), np.maximum(boxes[:, None, 1], boxes[None, :, 1])
    x2, y2 = np.minimum(boxes[:, None, 2], boxes[None, :, 2]), np.minimum(boxes[:, None, 3], boxes[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)  # [i, j]: box i and box j
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = inter >= PART_INSIDE * area[:, None]  # box i lies inside box j
    stronger = (boxes[None, :, 4] >= boxes[:, None, 4]) & (area[None, :] > area[:, None])
    return boxes[~(inside & stronger).any(axis=1)]

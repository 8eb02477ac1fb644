"""Everyday objects in a photo with a small COCO object detector: YOLOX-Nano (Megvii, Apache-2.0), committed
as ``data/yolox_nano.onnx`` (origin, sha256 and licence in ``data/README.md``), run in ONNX Runtime.

COCO's 80 classes include ``person``, ``backpack``, ``handbag`` and ``suitcase``: objects ImageNet-1k has no
good class for (its bag classes hardly fire on a handbag carried by someone). The pipeline, as in Megvii's
ONNX Runtime demo:

1. ``letterbox``: the RGB picture resized to fit INPUT_SIDE (416) keeping its aspect, anchored top-left on a
   grey (114) square, as BGR 0..255 floats, NCHW (no normalisation);
2. the network gives, per anchor cell of the strides 8, 16 and 32 (3,549 cells at 416 px), a box offset,
   log size, an objectness and 80 class probabilities (sigmoids already applied);
3. ``decode``: box centres ``(offset + cell) * stride``, sizes ``exp(log size) * stride``, mapped back to the
   picture's pixels; a class's score is objectness x class probability;
4. ``nms``: per class, boxes overlapping a better one by more than NMS_IOU are dropped.

``detect_tiles`` runs the same on overlapping tiles of the picture (``tiles``: a grid of TILE_GRID x TILE_GRID,
each tile overlapping its neighbours by TILE_OVERLAP of its side), each tile letterboxed to 416 px on its own:
a handbag of 20 px in a 640 px photo is 13 px at the network's input and scores a few hundredths, the same bag
on a tile (0.4 of the photo's side) is 2.5 times as large. Boxes map back to the picture and are merged by NMS.

Functions are pure except ``CocoDetector``'s, which holds the ONNX Runtime session, loaded once per process
(``CocoDetector.shared``, thread-safe). About 35 ms a photo on 2 cores.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from services.core.errors import InvalidInput, ModelError
from services.core.onnx_session import cpu_session
from services.models.boxes import iou

DATA_DIR = Path(__file__).resolve().parent / "data"
MODEL_FILE = "yolox_nano.onnx"
INPUT_SIDE = 416
STRIDES = (8, 16, 32)
PAD_VALUE = 114
NMS_IOU = 0.45
MIN_SCORE = 0.01  # boxes below this are never returned
TILE_GRID = 3  # detect_tiles: tiles per side
TILE_OVERLAP = 0.25  # share of a tile's side it overlaps its neighbour by
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)


@dataclass(frozen=True)
class ObjectBox:
    """One object found: its COCO class, score (objectness x class probability) and box in picture pixels."""

    name: str
    score: float
    left: float
    top: float
    right: float
    bottom: float

    def ratios(self, *, width: int, height: int) -> dict[str, float]:
        """left, top, width, height as ratios of a ``width`` x ``height`` picture, clipped to it."""
        x0, y0 = max(0.0, self.left / width), max(0.0, self.top / height)
        x1, y1 = min(1.0, self.right / width), min(1.0, self.bottom / height)
        return {"left": round(x0, 4), "top": round(y0, 4), "width": round(max(0.0, x1 - x0), 4),
                "height": round(max(0.0, y1 - y0), 4)}


def class_index(name: str) -> int:
    """The index of a COCO class name. Raises InvalidInput for a name COCO does not have."""
    try:
        return COCO_CLASSES.index(name)
    except ValueError:
        raise InvalidInput(f"{name!r} is not a COCO class") from None


def letterbox(picture: Image.Image, *, side: int = INPUT_SIDE) -> tuple[np.ndarray, float]:
    """The picture resized into a ``side`` square (aspect kept, top-left, grey padding) as a (3, side, side)
    float32 BGR array of 0..255, and the scale from picture pixels to input pixels. Raises InvalidInput for an
    empty picture."""
    w, h = picture.size
    if w < 1 or h < 1:
        raise InvalidInput(f"cannot letterbox an empty picture ({w}x{h})")
    scale = min(side / w, side / h)
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    canvas = np.full((side, side, 3), PAD_VALUE, dtype=np.uint8)
    resized = picture.convert("RGB").resize((nw, nh), Image.Resampling.BILINEAR)
    canvas[:nh, :nw] = np.asarray(resized, dtype=np.uint8)[:, :, ::-1]
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32), scale


def grid(*, side: int = INPUT_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The anchor cells (x, y) of each stride, in the network's output order, and each cell's stride."""
    cells, strides = [], []
    for stride in STRIDES:
        n = side // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(raw: np.ndarray, *, scale: float, side: int = INPUT_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4: x0, y0, x1, y1 in picture pixels) and class scores (N, 80) from one image's raw output
    (N, 85). Raises InvalidInput when the output does not fit the grid of ``side``."""
    cells, strides = grid(side=side)
    if raw.ndim != 2 or raw.shape != (len(cells), 5 + len(COCO_CLASSES)):
        raise InvalidInput(f"detector output {raw.shape} does not fit a {side} px input "
                           f"({len(cells)} x {5 + len(COCO_CLASSES)})")
    centre = (raw[:, :2] + cells) * strides
    size = np.exp(np.minimum(raw[:, 2:4], 20.0)) * strides
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1) / scale
    return boxes, raw[:, 4:5] * raw[:, 5:]


def nms(boxes: np.ndarray, scores: np.ndarray, *, threshold: float = NMS_IOU) -> list[int]:
    """Indices of the boxes kept by non-maximum suppression, best first: a box is dropped when it overlaps a
    better kept one by more than ``threshold`` (IoU)."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    while order:
        best, order = int(order[0]), order[1:]
        keep.append(best)
        if order:
            rest = np.asarray(order)
            order = [int(i) for i in rest[iou(boxes[best], boxes[rest]) <= threshold]]
    return keep


def objects(boxes: np.ndarray, scores: np.ndarray, *, classes: tuple[str, ...] | None = None,
            min_score: float = MIN_SCORE, threshold: float = NMS_IOU) -> list[ObjectBox]:
    """The objects of ``classes`` (all 80 when None) scoring at least ``min_score``, after per-class NMS, best
    first. Raises InvalidInput for a name COCO does not have."""
    wanted = [class_index(c) for c in classes] if classes is not None else range(len(COCO_CLASSES))
    found: list[ObjectBox] = []
    for k in wanted:
        idx = np.flatnonzero(scores[:, k] >= min_score)
        for i in (idx[j] for j in nms(boxes[idx], scores[idx, k], threshold=threshold)):
            x0, y0, x1, y1 = (float(v) for v in boxes[i])
            found.append(ObjectBox(COCO_CLASSES[k], float(scores[i, k]), x0, y0, x1, y1))
    return sorted(found, key=lambda o: -o.score)


def tiles(*, width: int, height: int, grid: int = TILE_GRID,
          overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """``grid`` x ``grid`` tiles (left, top, right, bottom in pixels) covering a ``width`` x ``height`` picture,
    neighbours overlapping by ``overlap`` of a tile's side, column by column. Raises InvalidInput for an empty
    picture, a grid under 1 or an overlap outside [0, 1)."""
    if width < 1 or height < 1:
        raise InvalidInput(f"cannot tile an empty picture ({width}x{height})")
    if grid < 1 or not 0.0 <= overlap < 1.0:
        raise InvalidInput(f"tiles need a grid of at least 1 and an overlap in [0, 1) (got {grid}, {overlap})")
    tw, th = width / (grid - (grid - 1) * overlap), height / (grid - (grid - 1) * overlap)
    out = []
    for i in range(grid):
        for j in range(grid):
            x0, y0 = i * tw * (1 - overlap), j * th * (1 - overlap)
            out.append((int(x0), int(y0), int(min(width, x0 + tw)), int(min(height, y0 + th))))
    return out


def model_path() -> Path:
    """The committed YOLOX-Nano ONNX file. Raises ModelError if it is missing."""
    path = DATA_DIR / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"COCO object detector not found at {path} (see services/models/data/README.md)")
    return path


_shared: CocoDetector | None = None
_shared_lock = threading.Lock()


class CocoDetector:
    """YOLOX-Nano in ONNX Runtime: ``detect`` gives the COCO objects in a picture."""

    def __init__(self, *, threads: int | None = None) -> None:
        """Loads the committed model. Raises ModelError when it is missing or cannot load."""
        self.session = cpu_session(model_path(), what="COCO object detector", threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> CocoDetector:
        """The process-wide detector (loaded on first use). Raises ModelError when it cannot load."""
        with _shared_lock:
            global _shared
            if _shared is None:
                _shared = cls()
            return _shared

    def raw(self, picture: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """Decoded boxes (N, 4, picture pixels) and class scores (N, 80) before NMS for one RGB picture.
        Raises InvalidInput for an empty picture."""
        x, scale = letterbox(picture)
        with self._lock:
            (out,) = self.session.run(None, {self.input_name: x[None]})
        return decode(out[0], scale=scale)

    def detect(self, picture: Image.Image, *, classes: tuple[str, ...] | None = None,
               min_score: float = MIN_SCORE) -> list[ObjectBox]:
        """The objects of ``classes`` (all when None) in one RGB picture, best first, boxes in its pixels.
        Raises InvalidInput for an empty picture or a name COCO does not have."""
        boxes, scores = self.raw(picture)
        return objects(boxes, scores, classes=classes, min_score=min_score)

    def detect_tiles(self, picture: Image.Image, *, classes: tuple[str, ...] | None = None,
                     grid: int = TILE_GRID, overlap: float = TILE_OVERLAP,
                     min_score: float = MIN_SCORE) -> list[ObjectBox]:
        """The objects of ``classes`` (all when None) found on the overlapping tiles of one RGB picture (``tiles``),
        best first, boxes in the picture's pixels, merged across tiles by per-class NMS. One network run per tile
        (9 at the default grid, about 18 ms each on 2 cores). Raises InvalidInput for an empty picture, a bad grid
        or a name COCO does not have."""
        w, h = picture.size
        found: list[ObjectBox] = []
        for x0, y0, x1, y1 in tiles(width=w, height=h, grid=grid, overlap=overlap):
            found += [ObjectBox(o.name, o.score, o.left + x0, o.top + y0, o.right + x0, o.bottom + y0)
                      for o in self.detect(picture.crop((x0, y0, x1, y1)), classes=classes, min_score=min_score)]
        merged: list[ObjectBox] = []
        for name in dict.fromkeys(o.name for o in found):
            mine = [o for o in found if o.name == name]
            boxes = np.array([[o.left, o.top, o.right, o.bottom] for o in mine], dtype=np.float64)
            merged += [mine[i] for i in nms(boxes, np.array([o.score for o in mine]))]
        return sorted(merged, key=lambda o: -o.score)


__all__ = ["COCO_CLASSES", "CocoDetector", "INPUT_SIDE", "ObjectBox", "TILE_GRID", "TILE_OVERLAP", "class_index",
           "decode", "grid", "letterbox", "model_path", "nms", "objects", "tiles"]

"""Text blocks on a frame: PaddleOCR's DBNet text detector (PP-OCRv6 small, Apache-2.0), whose ONNX weights ship
inside the ``rapidocr`` wheel (``rapidocr/models/``), run with ONNX Runtime on the CPU. Nothing is downloaded:
the model is read from the installed package, once per process (``shared_text_detector``).

Lines found by the network are joined into blocks (lines of one paragraph or one address, close above each
other), because a block is what has to be hidden: a name, a street and a city together.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from services.core.errors import ModelError
from services.core.once import Once
from services.core.onnx_session import cpu_session
from services.redaction.boxes import merge_pairs

MODEL_PACKAGE = "rapidocr"
MODEL_FILE = "models/PP-OCRv6_det_small.onnx"
MAX_SIDE = 1280  # the frame is resized so its longer side is this (multiples of 32), as the network expects
PIXEL_THRESHOLD = 0.3  # a pixel is text where the network's probability is above this (PaddleOCR's default)
BOX_THRESHOLD = 0.5  # a region is a line of text where its mean probability is at least this
UNCLIP = 1.6  # each region grows by area * UNCLIP / perimeter on every side (DBNet's shrunk kernels)
LINE_GAP = 0.8  # lines join into one block when the gap between them is under this share of a line's height
MIN_SIDE = 3  # regions thinner than this many network pixels are noise


def model_path() -> Path:
    """The detector's ONNX file inside the installed package. Raises ModelError when it is missing."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)  # found, not imported: only its weights file is used
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the text detector needs the '{MODEL_PACKAGE}' package (requirements.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"the text detector's weights are missing: {path} (reinstall '{MODEL_PACKAGE}')")
    return path


class TextDetector:
    """DBNet over ONNX Runtime (CPU). ``detect`` is safe to call from several threads (ONNX Runtime's ``run`` is)."""

    def __init__(self, path: Path | None = None, *, max_side: int = MAX_SIDE, threads: int = 2) -> None:
        """Loads the model. Raises ModelError when the file is missing or cannot be loaded."""
        self.session = cpu_session(path or model_path(), what="the text detector", threads=threads)
        self.input = self.session.get_inputs()[0].name
        self.max_side = max_side

    def lines(self, rgb: np.ndarray, *, threshold: float = BOX_THRESHOLD) -> np.ndarray:
        """Lines of text in an RGB (H, W, 3) uint8 frame, as (N, 5) float boxes (x1, y1, x2, y2, score). Raises
        nothing for a valid frame."""
        height, width = rgb.shape[:2]
        ratio = self.max_side / max(height, width)
        nh, nw = max(32, int(round(height * ratio / 32)) * 32), max(32, int(round(width * ratio / 32)) * 32)
        bgr = cv2.resize(rgb[:, :, ::-1], (nw, nh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        x = ((bgr.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        prob = self.session.run(None, {self.input: x})[0][0, 0]
        binary = cv2.dilate((prob > PIXEL_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8))
        contours, _ = cv2.findContours(binary, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        out = []
        for contour in contours:
            x0, y0, w, h = cv2.boundingRect(contour)
            if min(w, h) < MIN_SIDE:
                continue
            region = np.zeros((h, w), np.uint8)
            cv2.fillPoly(region, [contour - [x0, y0]], 1)
            score = float(prob[y0:y0 + h, x0:x0 + w][region > 0].mean())
            if score < threshold:
                continue
            area, perimeter = float(cv2.contourArea(contour)), float(cv2.arcLength(contour, True))
            grow = area * UNCLIP / perimeter if perimeter > 0 else 0.0
            out.append([(x0 - grow) / nw * width, (y0 - grow) / nh * height,
                        (x0 + w + grow) / nw * width, (y0 + h + grow) / nh * height, score])
        boxes = np.array(out, dtype=np.float32).reshape(-1, 5)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return boxes

    def blocks(self, rgb: np.ndarray, *, threshold: float = BOX_THRESHOLD) -> np.ndarray:
        """Text blocks (lines joined, ``join_lines``) in an RGB frame, as (N, 5) float boxes. Raises nothing."""
        return join_lines(self.lines(rgb, threshold=threshold))


def join_lines(lines: np.ndarray, *, gap: float = LINE_GAP) -> np.ndarray:
    """Blocks from lines (N, 5): two boxes join (their union, the higher score) when they overlap across and
    the gap between them, up or down, is under ``gap`` times the smaller one's height; repeated until no pair
    joins. Raises nothing."""
    def near(a: np.ndarray, b: np.ndarray) -> bool:
        across = min(a[2], b[2]) - max(a[0], b[0]) > 0
        vertical = max(a[1], b[1]) - min(a[3], b[3])  # < 0: they overlap in height
        return bool(across and vertical < gap * min(a[3] - a[1], b[3] - b[1]))

    return merge_pairs(np.asarray(lines, dtype=np.float32).reshape(-1, 5), joins=near)


_shared: Once[TextDetector] = Once(TextDetector)


def shared_text_detector() -> TextDetector:
    """The process's one text detector, loaded on first use. Raises ModelError."""
    return _shared.get()

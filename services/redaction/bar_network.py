"""Linear barcodes found by a small network of our own (``data/barcode_net.onnx``, run with ONNX Runtime on the
CPU): the blurred, small, tilted and edge-cut codes that OpenCV's detector and the gradient finder (``codes``) miss.

The network was trained on synthetic labels only (``benchmarks/barcode_net_train.py``; origin and figures in
``data/README.md``). It marks, a quarter of the resolution each way, the pixels of a code's bars and digits; each
connected group of marked cells is one code's box. It is loaded once per process (``shared_bar_network``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidProtobuf, NoSuchFile

from services.core.errors import ModelError
from services.core.once import Once

MODEL = Path(__file__).resolve().parent / "data" / "barcode_net.onnx"
STRIDE = 4  # the network's output cell, in its input's pixels
SIDE = 1600  # a photo longer than this is reduced to it before the network reads it (never enlarged; each side then
# rounded to a multiple of 8). Chosen on the tune part with THRESHOLD and MIN_SCORE (benchmarks/label_redaction):
# 640 and 1024 px fixed, or at most 1024, 1280, 1600 or 2048 px, with minimum scores 0.6 to 0.85
THRESHOLD = 0.5  # a cell is part of a code where the network's probability is above this
MIN_CELLS = 4  # groups of fewer cells are noise
MIN_SCORE = 0.85  # a group is a code when its cells' mean probability is at least this


class BarNetwork:
    """The bar network over ONNX Runtime (CPU). ``boxes`` is safe to call from several threads."""

    def __init__(self, path: Path | None = None, *, side: int = SIDE, threads: int = 2) -> None:
        """Loads the model. Raises ModelError when the file is missing or cannot be loaded."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path or MODEL), options, providers=["CPUExecutionProvider"])
        except (Fail, InvalidProtobuf, NoSuchFile) as exc:
            raise ModelError(f"the barcode network cannot be loaded from {path or MODEL}: {exc}") from exc
        self.side = side

    def probability(self, gray: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The network's bar probability on a grey (H, W) uint8 frame, one cell per STRIDE pixels of the resized
        frame, and the x and y factors from a cell to the frame's pixels. Raises nothing for a valid frame."""
        height, width = gray.shape[:2]
        ratio = min(self.side, max(height, width)) / max(height, width)
        nh, nw = max(8, int(round(height * ratio / 8)) * 8), max(8, int(round(width * ratio / 8)) * 8)
        small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        x = ((small.astype(np.float32) / 255.0 - 0.5) / 0.25)[None, None]
        logits = self.session.run(None, {"grey": x})[0][0, 0]
        return 1.0 / (1.0 + np.exp(-logits)), width / nw * STRIDE, height / nh * STRIDE

    def boxes(self, gray: np.ndarray, *, threshold: float = THRESHOLD, min_score: float = MIN_SCORE) -> np.ndarray:
        """Codes on a grey frame as (N, 5) float boxes (x1, y1, x2, y2, score) in its pixels, clamped to it: each
        connected group of cells above ``threshold`` with at least MIN_CELLS cells and a mean probability of at
        least ``min_score``. Raises nothing for a valid frame."""
        prob, fx, fy = self.probability(gray)
        count, labels, stats, _ = cv2.connectedComponentsWithStats((prob > threshold).astype(np.uint8), connectivity=8)
        out = []
        for i in range(1, count):
            x, y, w, h, cells = stats[i]
            if cells < MIN_CELLS:
                continue
            score = float(prob[labels == i].mean())
            if score >= min_score:
                out.append([x * fx, y * fy, (x + w) * fx, (y + h) * fy, score])
        found = np.array(out, dtype=np.float32).reshape(-1, 5)
        found[:, [0, 2]] = found[:, [0, 2]].clip(0, gray.shape[1])
        found[:, [1, 3]] = found[:, [1, 3]].clip(0, gray.shape[0])
        return found


_shared: Once[BarNetwork] = Once(BarNetwork)


def shared_bar_network() -> BarNetwork:
    """The process's one bar network, loaded on first use. Raises ModelError."""
    return _shared.get()

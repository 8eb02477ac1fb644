"""Linear barcodes and 2-D codes found by a small network of our own (``data/barcode_net.onnx``, run with ONNX
Runtime on the CPU): codes cut by the photo's edge, tilted or soft, that OpenCV's detectors and the gradient finder
(``codes``) miss (it misses some they find: codes whose bars are under a pixel wide; its boxes are added to theirs),
and 2-D codes (QR, Data Matrix, PDF417, MaxiCode) whose finder pattern is out of view or that OpenCV does not read.

The network was trained on synthetic labels only (``benchmarks/barcode_net_train.py``; origin and figures in
``data/README.md``). It gives two maps a quarter of the resolution each way: where a linear code's bars and digits
are, and where a 2-D code is; each connected group of marked cells of a map is one code's box. A frame read at
960 px or more across is read again at half that size, and one under 640 px at twice it: a code photographed large or
small is then also read at a size the network knows. A frame read at its own size up to 1600 px is read at twice it
too, for the bar map alone (a small code's bars a pixel or two wide). It is loaded once per process
(``shared_bar_network``).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from services.core.errors import ModelError
from services.core.once import Once
from services.core.onnx_session import cpu_session

MODEL = Path(__file__).resolve().parent / "data" / "barcode_net.onnx"
STRIDE = 4  # the network's output cell, in its input's pixels
SIDE = 1600  # a photo longer than this is reduced to it before the network reads it (never enlarged; each side then
# rounded to a multiple of 8). Chosen on the tune part with MIN_SCORE (benchmarks/label_redaction):
# 640 and 1024 px fixed, or at most 1024, 1280, 1600 or 2048 px, with minimum scores 0.6 to 0.85
THRESHOLD = 0.5  # a cell is part of a code where the network's probability is above this (0.7 tried: fewer codes)
MIN_CELLS = 4  # groups of fewer cells are noise
MIN_SCORE = 0.85  # a group is a code when its cells' mean probability is at least this
MIN_SCORE_2D = 0.9  # the same for the 2-D map: chosen on the tune photos' 60 crops cutting a 2-D code
# (benchmarks/label_redaction_edges.py --target 2d: 0.95 hides 49, 0.9 52, 0.85 54, 0.75 56) and the false boxes:
# 0.9 adds none on the code-free and package photos; 0.85 boxes 2 code-free photos and a carton's print, lower more
CORE, CORE_CELLS = 0.95, 16  # a group of the bar map under MIN_SCORE is still a code when at least CORE_CELLS of its
# cells are above CORE: stacked codes (a goods label's five Code 128s, seen at a slant) make one group whose gaps
# pull its mean down. Not for the 2-D map (on the code-free photos it gives 17 false 2-D boxes). Tune part turned a
# quarter: barcodes 42 -> 43 / 44; code-free photos 80 -> 82 bar boxes, 24.8% -> 25.8% masked
BARS, MATRIX = 0, 1  # the network's maps
CANDIDATE = 0.5  # cells above this, grouped, are candidates: places a closer reading should look at
HALF_FROM = 960  # a reading at least this across is repeated at half size: the bars of a code photographed large
# are too wide for the network's field and it finds the code in pieces or not at all
DOUBLE_BELOW = 640  # a reading smaller than this is repeated at twice the size: bars a pixel or two wide
DOUBLE_BARS_BELOW = 1600  # a reading smaller than this (a frame read at its own size) is repeated at twice the size
# for the bar map alone: a carton code 113 px wide on a 1200-px doorstep photo, its bars one to three pixels, is found
# only there. Not the 2-D map: from 640 px up its second reading boxed carpet as 2-D codes. Tune part 43 -> 44 / 44
# barcodes; at twice the size, at 4032 px and turned a quarter no count fell (benchmarks/label_redaction/README.md)
# Both chosen on the tune and tune2 photos resized to half and twice their size (benchmarks/label_redaction.py --scale):
# barcodes at twice the size 38 -> 40 / 44 and 57 -> 58 / 59, tune2 at half 56 -> 59 / 59, none lost at their own size


class BarNetwork:
    """The bar network over ONNX Runtime (CPU). ``codes`` is safe to call from several threads."""

    def __init__(self, path: Path | None = None, *, side: int = SIDE, threads: int = 2) -> None:
        """Loads the model. Raises ModelError when the file is missing or cannot be loaded."""
        self.session = cpu_session(path or MODEL, what="the barcode network", threads=threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 1 or outputs[0].shape[1] != 2:
            raise ModelError(f"{path or MODEL} is not the barcode network: it should read one grey frame "
                             f"(B, 1, H, W) and give two maps, not {inputs[0].shape} -> {outputs[0].shape}")
        self.input = inputs[0].name
        self.side = side

    def probability(self, gray: np.ndarray) -> tuple[np.ndarray, float, float]:
        """The network's probabilities on a grey (H, W) uint8 frame (any size from 1 x 1), (2, h, w): linear codes
        (BARS) and 2-D codes (MATRIX), one cell per STRIDE pixels of the resized frame; and the x and y factors from a
        cell to the frame's pixels. The frame is read at most SIDE pixels across and, where that reading is at least
        HALF_FROM across, at half of it too (bars too wide for the network's field); below DOUBLE_BELOW, at twice
        it too (bars too fine), and below DOUBLE_BARS_BELOW at twice it for the bar map alone. Each further reading's
        map is brought onto the first's grid (enlarged from the half-size reading, averaged down from the double-size
        one) and each cell takes the highest. Raises nothing."""
        height, width = gray.shape[:2]
        ratio = min(self.side, max(height, width)) / max(height, width)
        prob, fx, fy = self._read(gray, ratio)
        side = max(height, width) * ratio
        size = (prob.shape[2], prob.shape[1])
        again = [(0.5, (BARS, MATRIX))] if side >= HALF_FROM else []
        if side < DOUBLE_BELOW or side < DOUBLE_BARS_BELOW:
            again.append((2.0, (BARS, MATRIX) if side < DOUBLE_BELOW else (BARS,)))
        for factor, maps in again:
            other = self._read(gray, ratio * factor)[0]
            fit = cv2.INTER_LINEAR if factor < 1 else cv2.INTER_AREA
            for m in maps:
                prob[m] = np.maximum(prob[m], cv2.resize(other[m], size, interpolation=fit))
        return prob, fx, fy

    def _read(self, gray: np.ndarray, ratio: float) -> tuple[np.ndarray, float, float]:
        """One reading of the network on the frame resized by ``ratio`` (each side a multiple of 8): the maps and the
        x and y factors from a cell to the frame's pixels. Raises nothing."""
        height, width = gray.shape[:2]
        nh, nw = max(8, int(round(height * ratio / 8)) * 8), max(8, int(round(width * ratio / 8)) * 8)
        small = cv2.resize(gray, (nw, nh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        x = ((small.astype(np.float32) / 255.0 - 0.5) / 0.25)[None, None]
        logits = self.session.run(None, {self.input: x})[0][0]
        return 1.0 / (1.0 + np.exp(-logits)), width / nw * STRIDE, height / nh * STRIDE

    def codes(self, gray: np.ndarray, *, threshold: float = THRESHOLD, min_score: float = MIN_SCORE,
              min_score_2d: float = MIN_SCORE_2D) -> tuple[np.ndarray, np.ndarray]:
        """(linear codes, 2-D codes) on a grey frame, each as (N, 5) float boxes (x1, y1, x2, y2, score) in its
        pixels, clamped to it: each connected group of a map's cells above ``threshold`` with at least MIN_CELLS
        cells and a mean probability of at least ``min_score`` (``min_score_2d`` for 2-D codes), or, for linear codes,
        a core of CORE_CELLS cells above CORE. Each reading of the network gives both maps. Raises nothing for a grey
        uint8 frame."""
        linear, matrices, _ = self.codes_and_candidates(gray, threshold=threshold, min_score=min_score,
                                                        min_score_2d=min_score_2d)
        return linear, matrices

    def codes_and_candidates(self, gray: np.ndarray, *, threshold: float = THRESHOLD, min_score: float = MIN_SCORE,
                             min_score_2d: float = MIN_SCORE_2D) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``codes`` and, from the same reading, the candidates (N, 5): every group of at least MIN_CELLS cells of
        either map above CANDIDATE (a code the network half sees: a place to look again closer). A linear code's group
        under ``min_score`` counts when it has a core (CORE_CELLS cells above CORE). Raises nothing for a grey uint8
        frame."""
        prob, fx, fy = self.probability(gray)
        candidates = np.concatenate([_groups(m, fx, fy, gray.shape, threshold=CANDIDATE, min_score=0.0) for m in prob])
        return (_groups(prob[BARS], fx, fy, gray.shape, threshold=threshold, min_score=min_score, core=True),
                _groups(prob[MATRIX], fx, fy, gray.shape, threshold=threshold, min_score=min_score_2d), candidates)


def _groups(prob: np.ndarray, fx: float, fy: float, shape: tuple[int, ...], *, threshold: float,
            min_score: float, core: bool = False) -> np.ndarray:
    """Boxes (N, 5) of the connected groups of ``prob``'s cells above ``threshold`` (at least MIN_CELLS, mean at
    least ``min_score`` or, with ``core``, CORE_CELLS cells above CORE), in the frame's pixels (cells times fx, fy),
    clamped to a frame of ``shape``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((prob > threshold).astype(np.uint8), connectivity=8)
    means = np.bincount(labels.ravel(), weights=prob.ravel(), minlength=count) / np.maximum(stats[:, 4], 1)
    cores = np.bincount(labels.ravel(), weights=(prob > CORE).ravel(), minlength=count) if core else None
    out = []
    for i in range(1, count):
        x, y, w, h, cells = stats[i]
        score = float(means[i])
        if cells >= MIN_CELLS and (score >= min_score or (cores is not None and cores[i] >= CORE_CELLS)):
            out.append([x * fx, y * fy, (x + w) * fx, (y + h) * fy, score])
    found = np.array(out, dtype=np.float32).reshape(-1, 5)
    found[:, [0, 2]] = found[:, [0, 2]].clip(0, shape[1])
    found[:, [1, 3]] = found[:, [1, 3]].clip(0, shape[0])
    return found


_shared: Once[BarNetwork] = Once(BarNetwork)


def shared_bar_network() -> BarNetwork:
    """The process's one bar network, loaded on first use. Raises ModelError."""
    return _shared.get()

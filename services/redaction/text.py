"""Text blocks on a frame: two of PaddleOCR's DBNet text detectors (Apache-2.0), whose ONNX weights ship inside
wheels on the index, run with ONNX Runtime on the CPU: PP-OCRv6 small (the ``rapidocr`` wheel) and PP-OCRv4 mobile
(the ``rapidocr_onnxruntime`` wheel, installed without its dependencies by ``run.sh``: only its weights file is
read). Each finds lines the other misses (turned, small or white-on-black text; ``benchmarks/label_redaction``); the
second's lines count near the first's, on a label the first found; and a line of the first covering much of the photo
counts only where the second sees text too (the first sometimes reads a plain background as one line). Nothing is
downloaded: the models are read from the installed packages, once per process (``shared_text_detector``).

Lines found are joined into blocks (lines of one paragraph or one address, close above each other), because a block
is what has to be hidden: a name, a street and a city together.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np

from services.core.errors import ModelError
from services.core.once import Once
from services.core.onnx_session import cpu_session
from services.redaction.boxes import merge_pairs, near

# (package, weights file inside it): each a DBNet taking a (1, 3, H, W) BGR frame normalised to [-1, 1]
MODELS = (("rapidocr", "models/PP-OCRv6_det_small.onnx"),
          ("rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"))
MAX_SIDE = 1280  # the frame is resized so its longer side is this (multiples of 32), as the network expects
PIXEL_THRESHOLD = 0.3  # a pixel is text where the network's probability is above this (PaddleOCR's default)
BOX_THRESHOLD = 0.5  # a region is a line of text where its mean probability is at least this
UNCLIP = 1.6  # each region grows by area * UNCLIP / perimeter on every side (DBNet's shrunk kernels)
LINE_GAP = 0.8  # lines join into one block when the gap between them is under this share of a line's height
MIN_SIDE = 3  # regions thinner than this many network pixels are noise
LARGE = 0.1  # a first network's line covering more than this share of the frame is checked with the second:
AGREE = 0.015  # ...the second network's mean probability in it is at least this, or it is not text. Chosen on the
# tune photos and the review sample photos: the tune part's large lines have 0.021 or more, and the whole-frame lines on
# garment, studio and code-free photos 0.011 or less
NEAR = 2.0  # a later network's line counts within this many times its shorter side of a line of the first


def model_path(package: str = MODELS[0][0], file: str = MODELS[0][1]) -> Path:
    """A detector's ONNX file inside its installed package (the first of ``MODELS`` by default). Raises ModelError
    when the package or the file is missing."""
    spec = importlib.util.find_spec(package)  # found, not imported: only its weights file is used
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the text detector needs the '{package}' package (./run.sh installs it)")
    path = Path(list(spec.submodule_search_locations)[0]) / file
    if not path.is_file():
        raise ModelError(f"the text detector's weights are missing: {path} (reinstall '{package}')")
    return path


class TextDetector:
    """DBNet networks over ONNX Runtime (CPU), their lines taken together. ``lines`` is safe to call from several
    threads (ONNX Runtime's ``run`` is)."""

    def __init__(self, paths: tuple[Path | str, ...] | Path | str | None = None, *, max_side: int = MAX_SIDE,
                 threads: int = 2) -> None:
        """Loads the networks (``MODELS`` by default; one path or several, the first the one the others' lines count
        near). Raises ModelError when none is given, or a file is missing, cannot be loaded or is not a DBNet."""
        if paths is None:
            paths = tuple(model_path(package, file) for package, file in MODELS)
        elif isinstance(paths, (Path, str)):
            paths = (paths,)
        if not paths:
            raise ModelError("the text detector needs at least one network")
        self.sessions = [cpu_session(Path(path), what="the text detector", threads=threads) for path in paths]
        for path, session in zip(paths, self.sessions, strict=True):
            shape = session.get_inputs()[0].shape
            if len(shape) != 4 or shape[1] != 3:
                raise ModelError(f"{path} is not a text detector: it should read a colour frame (B, 3, H, W), "
                                 f"not {shape}")
        self.inputs = [session.get_inputs()[0].name for session in self.sessions]
        self.max_side = max_side

    def lines(self, rgb: np.ndarray, *, threshold: float = BOX_THRESHOLD) -> np.ndarray:
        """Lines of text in an RGB (H, W, 3) uint8 frame, as (N, 5) float boxes (x1, y1, x2, y2, score): the first
        network's, and the others' near them (``NEAR``: a label the first network found, whose turned or
        white-on-black fields it missed; alone, the second network reads door panels as text). A line found by two
        networks comes twice (``join_lines`` joins them). Raises nothing for a valid frame."""
        height, width = rgb.shape[:2]
        ratio = self.max_side / max(height, width)
        nh, nw = max(32, int(round(height * ratio / 32)) * 32), max(32, int(round(width * ratio / 32)) * 32)
        bgr = cv2.resize(rgb[:, :, ::-1], (nw, nh), interpolation=cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR)
        x = ((bgr.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        maps = [session.run(None, {name: x})[0][0, 0] for session, name in zip(self.sessions, self.inputs, strict=True)]
        found = [_regions(prob, threshold=threshold) for prob in maps]
        if len(maps) > 1:
            found[0] = agreed_lines(found[0], maps[1])
        boxes = np.concatenate([found[0], *(near(more, found[0], reach=NEAR) for more in found[1:])]).reshape(-1, 5)
        boxes[:, [0, 2]] = (boxes[:, [0, 2]] / nw * width).clip(0, width)
        boxes[:, [1, 3]] = (boxes[:, [1, 3]] / nh * height).clip(0, height)
        return boxes

    def blocks(self, rgb: np.ndarray, *, threshold: float = BOX_THRESHOLD) -> np.ndarray:
        """Text blocks (lines joined, ``join_lines``) in an RGB frame, as (N, 5) float boxes. Raises nothing."""
        return join_lines(self.lines(rgb, threshold=threshold))


def _regions(prob: np.ndarray, *, threshold: float) -> np.ndarray:
    """Lines in one network's probability map (h, w), as (N, 5) boxes in its pixels, grown by DBNet's unclip."""
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
        out.append([x0 - grow, y0 - grow, x0 + w + grow, y0 + h + grow, score])
    return np.array(out, dtype=np.float32).reshape(-1, 5)


def agreed_lines(lines: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``lines`` (N, 5, in the networks' pixels) without those covering more than LARGE of the frame where the
    ``other`` network's probability averages under AGREE: the first network sometimes marks most of a plain photo as
    one line of text (a white studio background, a gym wall), and the second sees no text there. Raises nothing."""
    height, width = other.shape
    keep = []
    for x1, y1, x2, y2, _ in lines:
        a, b = int(max(0, x1)), int(max(0, y1))
        c, d = int(min(width, np.ceil(x2))), int(min(height, np.ceil(y2)))
        large = (c - a) * (d - b) > LARGE * width * height
        keep.append(not large or float(other[b:d, a:c].mean()) >= AGREE)
    return lines[np.array(keep, dtype=bool)] if len(lines) else lines


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

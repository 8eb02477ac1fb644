"""Barcodes and QR codes on a frame, with OpenCV's own detectors (``cv2.barcode.BarcodeDetector``, and
``cv2.QRCodeDetector`` with ``cv2.QRCodeDetectorAruco`` for QR codes), and linear barcodes also by their gradients
(``find_bar_regions``: OpenCV's barcode detector reads a copy reduced to 512 pixels and misses the small, blurred
or tilted codes of doorstep photos). Pure functions on grey frames; only the positions are wanted, nothing is
decoded.

A detector object is made once per process and thread (OpenCV detectors keep state between calls, so one is
never shared between threads).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from services.redaction.boxes import area, intersection, iou, merge_pairs, near

QR_SIDE = 2000  # QR codes are looked for on a copy whose longer side is at most this (the detectors slow with size)
QR_UPSCALE_BELOW = 640  # frames smaller than this are doubled first (the detectors miss codes a few modules wide)
QUIET_ZONE = 0.12  # a found code grows by this share of its shorter side on every side: OpenCV's corners sit on
# the finder patterns' centres (QR) or short of the bars' ends (barcodes), and a code's quiet zone is part of it
EDGE_PAD = 0.2  # barcodes are also looked for on the frame mirrored past each edge by this share of its longer side:
# a code cut by the edge is mirrored into a whole one (chosen on edge-cut crops of the tune photos,
# benchmarks/label_redaction_edges.py: 115 -> 126 of 140 cut codes hidden; 0.1 to 0.5 and padding with the edge's
# pixels or black tried)

_local = threading.local()


def _detectors() -> tuple[cv2.barcode.BarcodeDetector, cv2.QRCodeDetector, cv2.QRCodeDetectorAruco]:
    if not hasattr(_local, "detectors"):
        _local.detectors = (cv2.barcode.BarcodeDetector(), cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco())
    return _local.detectors


def _boxes(points: np.ndarray | None, *, scale: float, width: int, height: int) -> np.ndarray:
    """Quadrilaterals (N, 4, 2) in a scaled copy -> axis-aligned (N, 4) float boxes in the frame, clamped."""
    if points is None or not len(points):
        return np.zeros((0, 4), dtype=np.float32)
    quads = np.asarray(points, dtype=np.float32).reshape(-1, 4, 2) / scale
    out = np.concatenate([quads.min(axis=1), quads.max(axis=1)], axis=1)
    pad = QUIET_ZONE * np.minimum(out[:, 2] - out[:, 0], out[:, 3] - out[:, 1])[:, None]
    out += np.concatenate([-pad, -pad, pad, pad], axis=1)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    keep = (out[:, 2] - out[:, 0] >= 2) & (out[:, 3] - out[:, 1] >= 2)
    return out[keep]


def find_barcodes(gray: np.ndarray, *, text: np.ndarray | None = None) -> np.ndarray:
    """Linear barcodes (EAN, UPC, Code 128, Code 39, ...) on a grey (H, W) uint8 frame, as (N, 4) float boxes
    (x1, y1, x2, y2): what OpenCV's detector finds and, when ``text`` (lines of text found on the frame, (M, 4+)
    boxes) is given, what ``find_bar_regions`` finds near a line of text (within TEXT_REACH: a shipping label or a
    product's code has printing around it; brick walls, railings and carpets, which look like bars, have none).
    OpenCV's detector reads the frame as it is and mirrored past its edges (EDGE_PAD): a code cut by the photo's
    edge becomes a whole, longer code, found and then clipped back to the frame, up to its edge. Where both readings
    find the same code (by half their union or more) the box of the frame as it is wins: mirrored, a whole code near
    the edge joins its own reflection and would grow to the edge (tune2 close-ups: the code boxes' mask outside the
    codes 25.7% -> 23.8%, no code lost on the tune part or its edge-cut crops). Raises nothing (an empty result when
    there are none)."""
    height, width = gray.shape[:2]
    pad = int(round(EDGE_PAD * max(height, width)))
    mirrored = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    moved = _opencv_barcodes(mirrored)
    moved[:, :4] -= pad
    moved[:, [0, 2]] = moved[:, [0, 2]].clip(0, width)
    moved[:, [1, 3]] = moved[:, [1, 3]].clip(0, height)
    moved = moved[(moved[:, 2] - moved[:, 0] >= 2) & (moved[:, 3] - moved[:, 1] >= 2)]
    direct = _opencv_barcodes(gray)
    moved = np.array([m for m in moved if not any(iou(m, d) >= 0.5 for d in direct)], np.float32).reshape(-1, 4)
    opencv = merge_pairs(np.concatenate([direct, moved]), joins=lambda a, b: iou(a, b) >= 0.5)
    if text is None:
        return opencv
    return np.concatenate([opencv, near(find_bar_regions(gray), text, reach=TEXT_REACH)])


def _opencv_barcodes(gray: np.ndarray) -> np.ndarray:
    """OpenCV's barcode detector on a grey frame (doubled first when small), as (N, 4) boxes in the frame, quiet
    zone included and clamped to it. Raises nothing."""
    height, width = gray.shape[:2]
    scale = 2.0 if max(height, width) < QR_UPSCALE_BELOW else 1.0
    img = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC) if scale != 1.0 else gray
    ok, points = _detectors()[0].detect(img)
    return _boxes(points if ok else None, scale=scale, width=width, height=height)


def find_qr_codes(gray: np.ndarray) -> np.ndarray:
    """QR codes on a grey (H, W) uint8 frame, as (N, 4) float boxes: what either OpenCV QR detector finds (one
    box where both find the same code). Raises nothing."""
    height, width = gray.shape[:2]
    longer = max(height, width)
    scale = QR_SIDE / longer if longer > QR_SIDE else (2.0 if longer < QR_UPSCALE_BELOW else 1.0)
    img = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    found = []
    for detector in _detectors()[1:]:
        ok, points = detector.detectMulti(img)
        found.append(_boxes(points if ok else None, scale=scale, width=width, height=height))
    return _unique(np.concatenate(found))


def _unique(boxes: np.ndarray, *, same: float = 0.5) -> np.ndarray:
    """Boxes without repeats: of boxes overlapping by ``same`` IoU or more, the first is kept."""
    kept: list[np.ndarray] = []
    for box in boxes:
        if not any(iou(box, k) >= same for k in kept):
            kept.append(box)
    return np.array(kept, dtype=np.float32).reshape(-1, 4)


BAR_SIDE = 2048  # the gradient finder reads a copy at most this large (its windows are in pixels)
BAR_WINDOW = 4.0  # sigma, in pixels, of the window over which gradients are summed (the structure tensor)
BAR_ENERGY = 60.0  # a bar pixel's gradient energy (root mean square Sobel response) is above this...
BAR_COHERENCE = 0.5  # ...its gradients point one way (structure-tensor coherence) above this...
BAR_ALTERNATION = 0.4  # ...and cancel out (|mean gradient| / mean |gradient| below this: bars, not one edge)
BAR_CONTRAST = 60  # dark bars on light paper: the 7x7 max minus min is above this grey level...
BAR_PAPER = 0.7  # ...and the 7x7 max above this share of the frame's near-white (99.5th percentile), at least 100
BAR_MIN_AREA = 150  # a region smaller than this many pixels (after closing) is noise
BAR_MIN_COHERENCE = 0.65  # a region's mean coherence is at least this (carpet and wood grain are less regular)
BAR_MIN_FILL = 0.4  # a region fills at least this share of its rotated rectangle
BAR_MIN_EDGES = 8  # the profile across the bars (averaged along them) crosses its local mean this often
BAR_TEXT = 0.25  # the box grows along the bars by this share of their length on each side: the digits printed
# under a barcode (and the title above it) are the tracking number in clear
TEXT_REACH = 5.0  # bars count within this many times their shorter side of a line of text (near printing)


def _structure(gray: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per pixel: gradient energy, coherence, alternation and orientation of the gradients in a BAR_WINDOW window."""
    g = cv2.GaussianBlur(gray.astype(np.float32), (0, 0), 0.7)
    gx, gy = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)

    def window(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), BAR_WINDOW)

    jxx, jyy, jxy = window(gx * gx), window(gy * gy), window(gx * gy)
    energy = jxx + jyy + 1e-6
    coherence = np.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / energy
    alternation = np.hypot(window(gx), window(gy)) / (window(np.sqrt(gx * gx + gy * gy)) + 1e-6)
    return np.sqrt(energy), coherence, alternation


def _edges_across(gray: np.ndarray, rect: tuple) -> tuple[int, bool]:
    """(how often the profile across the bars crosses its local mean, whether the bars run along the rectangle's
    first side): the rectangle is read both ways, averaged along one side, and the way with more crossings times
    alignment (the averaged profile's spread over the pixels' spread) wins."""
    (cx, cy), (rw, rh), angle = rect
    best: tuple[float, int, bool] | None = None
    for w, h, a, along_first in ((rw, rh, angle, False), (rh, rw, angle + 90, True)):
        width, height = int(round(w)) + 2, int(round(h))
        if width < 8 or height < 3:
            continue
        m = cv2.getRotationMatrix2D((cx, cy), a, 1.0)
        m[:, 2] += [width / 2 - cx, height / 2 - cy]
        crop = cv2.warpAffine(gray, m, (width, height), flags=cv2.INTER_LINEAR).astype(np.float32)
        profile = crop.mean(axis=0)
        align = float(profile.std() / (crop.std() + 1e-6))
        d = profile - cv2.blur(profile.reshape(1, -1), (max(3, width // 4) | 1, 1)).ravel()
        crossings = int(((d[:-1] > 0) != (d[1:] > 0)).sum())
        if best is None or crossings * align > best[0]:
            best = (crossings * align, crossings, along_first)
    return (0, False) if best is None else (best[1], best[2])


def find_bar_regions(gray: np.ndarray) -> np.ndarray:
    """Linear barcodes found by their gradients, decodable or not, at any angle, as (N, 4) float boxes: pixels whose
    gradients are strong, point one way and alternate (``_structure``) on light paper, closed into regions; a region
    counts when it is regular enough and its profile across the bars shows at least BAR_MIN_EDGES edges. Each box
    grows along the bars (BAR_TEXT) to take the digits printed with the code; overlapping boxes become their union
    (a code whose wide bars split it in pieces is one box). Raises nothing."""
    height, width = gray.shape[:2]
    scale = min(1.0, BAR_SIDE / max(height, width))
    img = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    energy, coherence, alternation = _structure(img)
    high = cv2.dilate(img, np.ones((7, 7), np.uint8))
    low = cv2.erode(img, np.ones((7, 7), np.uint8))
    paper = max(100.0, BAR_PAPER * float(np.percentile(img, 99.5)))
    bars = ((energy > BAR_ENERGY) & (coherence > BAR_COHERENCE) & (alternation < BAR_ALTERNATION)
            & (high > paper) & (high.astype(np.int16) - low > BAR_CONTRAST)).astype(np.uint8)
    bars = cv2.morphologyEx(bars, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    bars = cv2.morphologyEx(bars, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bars, connectivity=8)
    out = []
    for i in range(1, count):
        x, y, w, h, area = stats[i]
        if area < BAR_MIN_AREA:
            continue
        inside = labels[y:y + h, x:x + w] == i
        ys, xs = np.nonzero(inside)
        rect = cv2.minAreaRect(np.stack([xs + x, ys + y], axis=1).astype(np.float32))
        (cx, cy), (rw, rh), angle = rect
        if min(rw, rh) < 5 or area / max(rw * rh, 1.0) < BAR_MIN_FILL:
            continue
        if float(coherence[y:y + h, x:x + w][inside].mean()) < BAR_MIN_COHERENCE:
            continue
        edges, along_first = _edges_across(img, rect)
        if edges < BAR_MIN_EDGES:
            continue
        grown = (rw * (1 + 2 * BAR_TEXT), rh) if along_first else (rw, rh * (1 + 2 * BAR_TEXT))
        corners = cv2.boxPoints(((cx, cy), grown, angle)) / scale
        out.append([*corners.min(axis=0), *corners.max(axis=0)])
    boxes = _joined(np.array(out, dtype=np.float32).reshape(-1, 4))
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return boxes


def _joined(boxes: np.ndarray, *, share: float = 0.3) -> np.ndarray:
    """Boxes where every pair overlapping by ``share`` of the smaller one is replaced by its union, until no such
    pair is left. Raises nothing."""
    def overlapping(a: np.ndarray, b: np.ndarray) -> bool:
        smaller = min(area(a), area(b))
        return bool(smaller > 0 and intersection(a, b) >= share * smaller)

    return merge_pairs(boxes.reshape(-1, 4), joins=overlapping)

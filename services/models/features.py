"""Images -> features: decode at reduced size, embed with the backbone, person cues on demand (the face geometry
from CenterFace, then the body extent from BlazePose: ``CUE_NAMES``).

``FeatureExtractor`` holds the heavy models; one per process (``FeatureExtractor.shared``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from PIL import Image

from services.core import images as imgs
from services.models.body_cues import BODY_CUE_NAMES, BodyPoseModel
from services.models.embedder import BACKBONE, Embedder, preprocess
from services.models.person_cues import CUE_NAMES as FACE_CUE_NAMES
from services.models.person_cues import FaceDetector, cues_from_faces

EMBED_SIDE = 224  # the backbone's letterbox: JPEGs decode straight to about this size (DCT scaling)
CUES_SIDE = 448  # enough to find the small faces of full-length shots; decoded only for photos that need cues
CUE_NAMES = [*FACE_CUE_NAMES, *BODY_CUE_NAMES]  # faces first: a head trained on face cues alone reads the start

_shared: dict[str, FeatureExtractor] = {}
_shared_lock = threading.Lock()


class FeatureExtractor:
    backbone = BACKBONE

    def __init__(self, models_dir: Path) -> None:
        self.embedder = Embedder(models_dir)

    @classmethod
    def shared(cls, models_dir: Path) -> FeatureExtractor:
        """The process-wide extractor for ``models_dir`` (loaded on first use)."""
        onnx = Path(models_dir) / f"{BACKBONE}.onnx"
        key = str(onnx.resolve() if onnx.exists() else Path(models_dir).resolve())
        with _shared_lock:
            if key not in _shared:
                _shared[key] = cls(Path(models_dir))
            return _shared[key]

    @property
    def faces(self) -> FaceDetector:
        return FaceDetector.shared()

    @staticmethod
    def decode(data: bytes, *, max_pixels: int, side: int = EMBED_SIDE) -> Image.Image:
        """Upright RGB, no side over ``side`` (EMBED_SIDE for the backbone, CUES_SIDE for faces). Raises ImageError."""
        return imgs.decode(data, max_side=side, max_pixels=max_pixels)

    @staticmethod
    def prepare(picture: Image.Image) -> np.ndarray:
        """The backbone's input for one decoded picture (can run on an I/O thread, ahead of ``embed``)."""
        return preprocess(picture)

    def embed(self, pictures: list[Image.Image], prepared: list[np.ndarray] | None = None) -> np.ndarray:
        """(N, 1280) float32 embeddings; ``prepared`` (``prepare`` of each picture) saves redoing that."""
        if not pictures:
            return np.zeros((0, 1280), dtype=np.float32)
        emb, _ = self.embedder.run(np.stack(prepared if prepared is not None else [preprocess(p) for p in pictures]))
        return emb

    def cues(self, pictures: list[Image.Image]) -> np.ndarray:
        """(N, len(CUE_NAMES)) person cues: face geometry, then body extent (hips, knees, ankles, feet in frame).
        Raises ModelError when a cue model cannot load."""
        if not pictures:
            return np.zeros((0, len(CUE_NAMES)), dtype=np.float32)
        prepared = [FaceDetector.prepare(p) for p in pictures]
        faces = self.faces.detect(np.stack([b for b, _ in prepared]), [s for _, s in prepared])
        face = np.array([cues_from_faces(f, *p.size) for f, p in zip(faces, pictures)], dtype=np.float32)
        body = BodyPoseModel.shared().cues([np.asarray(p.convert("RGB")) for p in pictures])
        return np.hstack([face, body]).astype(np.float32)

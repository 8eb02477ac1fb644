"""A fine-tuned version's network at run time (ONNX Runtime): backbone embeddings and class probabilities in
one pass (see ``finetune_model`` for how it is trained and exported)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from services.core.errors import ModelError
from services.core.onnx_session import cpu_session

_sessions: dict[str, FineTunedModel] = {}
_lock = threading.Lock()


class FineTunedModel:
    """A fine-tuned version's network (ONNX Runtime), loaded once per file per process."""

    kind = "finetune"

    def __init__(self, path: Path, classes: list[str]) -> None:
        self.session = cpu_session(path, what="fine-tuned model")
        self.classes = list(classes)
        self._run_lock = threading.Lock()

    @classmethod
    def shared(cls, path: Path, classes: list[str]) -> FineTunedModel:
        key = str(Path(path).resolve())
        with _lock:
            if key not in _sessions:
                if not Path(path).exists():
                    raise ModelError(f"the fine-tuned model file {path} is missing")
                _sessions[key] = cls(Path(path), classes)
            return _sessions[key]

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 1280) backbone embeddings and (N, C) class probabilities for a (N, 3, 224, 224) batch."""
        if len(batch) == 0:
            return np.zeros((0, 1280), np.float32), np.zeros((0, len(self.classes)), np.float32)
        with self._run_lock:
            emb, _, proba = self.session.run(None, {"images": batch.astype(np.float32, copy=False)})
        return emb, proba

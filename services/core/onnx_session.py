"""ONNX Runtime sessions on the CPU for the console's networks, each a ModelError when its file cannot be loaded."""

from __future__ import annotations

import os
from pathlib import Path

from services.core.errors import ModelError


def cpu_session(path: Path, *, what: str, threads: int | None = None):  # type: ignore[no-untyped-def]
    """An ONNX Runtime CPU session for a network file (``what`` names it in the error). Raises ModelError if it
    cannot load (missing, empty or corrupt file)."""
    import onnxruntime as ort  # loaded with the first network, not with every page that imports core

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    # idle pool threads sleep instead of spinning: a spinning thread takes a core from the photo decoders
    # that run beside inference in the classify job (same outputs; batch speed unchanged when alone)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelError(f"cannot load {what} {path}: {exc}") from None

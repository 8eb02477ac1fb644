"""Fine-tuned model versions: train one grid point on every labelled photo, export it, and run it.

A fine-tuned version is one ONNX network with a shared frozen trunk and two tails: the original last
blocks (the backbone's 1280-d embedding and ImageNet logits, exactly as the plain backbone gives them, so
stored embeddings, reuse detection and similar cases keep working) and the fine-tuned blocks with their
4-class layer (the class probabilities). One pass per photo gives both; the tails are 7x7 and 14x14
convolutions, a small share of the network's cost.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from services.authz import require
from services.clock import now_iso
from services.config import CLASSES, Workspace
from services.embedder import BACKBONE, INPUT_SIZE, cpu_session
from services.errors import ModelError
from services.finetune import BLOCKS, FineTuneSearch, Tail, _torch, grid_points

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


def export(*, net: Any, tail: Tail, path: Path) -> Path:
    """Write the two-tailed network (see the module docstring) to ``path`` as ONNX."""
    torch = _torch()
    split = BLOCKS - len(tail.blocks)

    class TwoTails(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net, self.tail_blocks = net, tail.blocks
            self.tail_head, self.tail_bn, self.tail_fc = tail.conv_head, tail.bn1, tail.fc

        def forward(self, x):  # type: ignore[no-untyped-def]
            n = self.net
            x = n._swish(n._bn0(n._conv_stem(x)))
            for block in n._blocks[:split]:
                x = block(x)
            o = x
            for block in n._blocks[split:]:
                o = block(o)
            emb = n._swish(n._bn1(n._conv_head(o))).mean(dim=(2, 3))
            t = x
            for block in self.tail_blocks:
                t = block(t)
            temb = n._swish(self.tail_bn(self.tail_head(t))).mean(dim=(2, 3))
            return emb, n._fc(emb), torch.softmax(self.tail_fc(temb), dim=1)

    model = TwoTails().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.onnx")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE), str(tmp), input_names=["images"],
                          output_names=["embedding", "logits", "probabilities"],
                          dynamic_axes={k: {0: "batch"} for k in ("images", "embedding", "logits", "probabilities")},
                          opset_version=17, dynamo=False)
    os.replace(tmp, path)
    return path


def train_finetuned(ws: Workspace, db: sqlite_utils.Database, *, actor: str, epochs: int, blocks: int, folds: int = 5,
                    activate: bool = False, target_accuracy: float = 0.98) -> dict[str, Any]:
    """Cross-validate one fine-tuning point, train it on every labelled photo, export it and save a version.

    Raises ModelError (too few photos, one class, a bad point), PermissionDenied.
    """
    from services.evaluation import check_counts, oof_metrics, thin_classes
    from services.model_search import _inputs
    from services.registry import save_version
    from services.training import training_examples

    require(db, actor=actor, action="models.manage")
    grid = {"epochs": [int(epochs)], "blocks": [int(blocks)]}
    grid_points(grid)
    examples = training_examples(db)
    if not examples:
        raise ModelError("no labelled photos yet: import a folder per class or a Ground Truth manifest first")
    kept, inputs, failed = _inputs(ws, db, examples)
    y = np.array([e["label"] for e in kept])
    k = check_counts(y, folds=folds)
    classes = [c for c in CLASSES if c in set(y.tolist())]
    ints = np.array([classes.index(v) for v in y])
    started = time.perf_counter()
    search = FineTuneSearch(inputs, ints, grid=grid, folds=k)
    [(_, proba, _)] = search.run_blocks(int(blocks))
    metrics = {"folds": k, **oof_metrics(y, proba, classes, target=target_accuracy)}
    metrics["at_suggested_thresholds"] = metrics["at_target"]
    acts, mirrored = search.activations(int(blocks))
    tail = Tail(search.net, blocks=int(blocks), classes=len(classes), seed=0)
    tail.fit(acts, mirrored, ints, epochs=int(epochs), seed=0)
    name = f"finetune-{now_iso().replace(':', '').replace('-', '').replace('.', '')[:22]}-{secrets.token_hex(2)}"
    export(net=search.net, tail=tail, path=ws.models_dir / f"{name}.onnx")
    sources: dict[str, int] = {}
    for e in kept:
        sources[e["source"]] = sources.get(e["source"], 0) + 1
    counts = {c: int((y == c).sum()) for c in classes}
    version_id = save_version(
        db, model_file=f"{name}.onnx", name=name, classes=classes, models_dir=ws.models_dir, backbone=BACKBONE,
        hyperparams={"method": "finetune", "epochs": int(epochs), "blocks": int(blocks), "folds": k},
        metrics=metrics, thresholds=metrics["thresholds"],
        training_data={"examples": len(kept), "per_class": counts, "sources": sources, "unreadable": failed[:100]},
        activate=activate, actor=actor)
    return {"model_version_id": version_id, "examples": len(kept), "per_class": counts, "unreadable": len(failed),
            "warnings": thin_classes(y),
            "macro_f1": metrics["macro_f1"], "accuracy": metrics["accuracy"], "seconds": time.perf_counter() - started}


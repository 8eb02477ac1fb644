"""Fine-tuned model versions: train one grid point on every labelled photo and export it (``finetuned`` runs it).

A fine-tuned version is one ONNX network with a shared frozen trunk and two tails: the original last
blocks (the backbone's 1280-d embedding and ImageNet logits, exactly as the plain backbone gives them, so
stored embeddings, reuse detection and similar cases keep working) and the fine-tuned blocks with their
4-class layer (the class probabilities). One pass per photo gives both; the tails are 7x7 and 14x14
convolutions, a small share of the network's cost.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from services.core.authz import require
from services.core.clock import now_iso
from services.core.config import CLASSES, Workspace, get_settings, object_store
from services.core.errors import ConsoleError, ModelError
from services.core.private import make_private
from services.models.embedder import BACKBONE, INPUT_SIZE
from services.models.evaluation import check_counts, oof_metrics, thin_classes
from services.models.features import FeatureExtractor
from services.models.finetune import BLOCKS, FineTuneSearch, Tail, _torch, compact, grid_points
from services.models.registry import save_version
from services.models.training import training_examples


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
    make_private(tmp)  # 0600: this account only
    os.replace(tmp, path)
    return path


def photo_inputs(db: sqlite_utils.Database, examples: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], np.ndarray, list[dict[str, str]]]:
    """Preprocessed 224-pixel inputs (``compact`` uint8: 150 KB a photo) of the examples whose photos read and
    decode; the rest reported."""
    store, max_pixels = object_store(db), get_settings(db)["max_pixels"]
    kept, arrays, failed = [], [], []
    for e in examples:
        try:
            picture = FeatureExtractor.decode(store.read(e["uri"]), max_pixels=max_pixels)
            arrays.append(compact(FeatureExtractor.prepare(picture)))
            kept.append(e)
        except ConsoleError as exc:
            failed.append({"uri": e["uri"], "reason": str(exc)})
    return kept, np.stack(arrays) if arrays else np.zeros((0, 3, 224, 224), np.uint8), failed


def train_finetuned(ws: Workspace, db: sqlite_utils.Database, *, actor: str, epochs: int, blocks: int, folds: int = 5,
                    activate: bool = False, target_accuracy: float = 0.98) -> dict[str, Any]:
    """Cross-validate one fine-tuning point, train it on every labelled photo, export it and save a version.

    Raises ModelError (too few photos, one class, a bad point), PermissionDenied.
    """

    require(db, actor=actor, action="models.manage")
    grid = {"epochs": [int(epochs)], "blocks": [int(blocks)]}
    grid_points(grid)
    examples = training_examples(db)
    if not examples:
        raise ModelError("no labelled photos yet: import a folder per class or a Ground Truth manifest first")
    kept, inputs, failed = photo_inputs(db, examples)
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


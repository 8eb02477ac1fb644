"""Training and label import as background jobs: the head (the default) or one fine-tuning point, and
labels from a folder per class or a Ground Truth manifest."""

from __future__ import annotations

from typing import Any

from services.core.config import object_store
from services.core.jobs import SingleTaskKind
from services.models.finetune_model import train_finetuned
from services.models.training import import_folder, import_groundtruth, train


class TrainKind(SingleTaskKind):
    """Training as a background job: the head (the default) or, with ``method: finetune``, one fine-tuning
    point (``epochs``, ``blocks``)."""

    name = "train"

    def items_for(self, ctx: Any) -> list[str]:
        return ["train"]

    def run(self, ctx: Any, item: str) -> dict[str, Any]:
        if ctx.params.get("method") == "finetune":

            res = train_finetuned(ctx.ws, ctx.db, actor=ctx.actor, epochs=int(ctx.params["epochs"]),
                                  blocks=int(ctx.params["blocks"]), folds=int(ctx.params.get("folds", 5)),
                                  activate=bool(ctx.params.get("activate", False)))
        else:
            res = train(ctx.ws, ctx.db, actor=ctx.actor, folds=int(ctx.params.get("folds", 5)),
                        c=float(ctx.params.get("c", 1.0)), activate=bool(ctx.params.get("activate", True)))
        return {k: v for k, v in res.items()
                if k in ("model_version_id", "examples", "per_class", "macro_f1", "accuracy", "warnings")}


class ImportLabelsKind(SingleTaskKind):
    """Label import as a background job: a folder per class, or a Ground Truth manifest."""

    name = "import-labels"

    def items_for(self, ctx: Any) -> list[str]:
        return [ctx.params["source"]]

    def run(self, ctx: Any, item: str) -> dict[str, Any]:
        store = object_store(ctx.db)
        if item.endswith((".manifest", ".jsonl", ".json")):
            return import_groundtruth(ctx.db, uri=item, store=store, actor=ctx.actor,
                                      attribute=ctx.params.get("attribute"))
        return import_folder(ctx.db, root=item, store=store, actor=ctx.actor)

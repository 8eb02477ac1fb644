"""Train the barcode network (services/redaction/data/barcode_net.onnx) on synthetic photos (benchmarks/barcode_synth.py)
and export it to ONNX.

OpenCV's barcode detector and the gradient finder (services.redaction.codes) miss codes that are blurred, small and
tilted on a doorstep photo, or cut by the photo's edge, and OpenCV's QR detectors need a finder pattern in view.
This small fully convolutional network (110,242 weights) marks, a quarter of the resolution each way, where a linear
code's bars and digits are (its first map) and where a 2-D code is (its second: QR, Data Matrix, PDF417, MaxiCode).
It is trained on synthetic labels only: no photo of the label-redaction evaluation is read here; its settings are
chosen on the tune part afterwards (benchmarks/label_redaction.py).

    python benchmarks/barcode_net_train.py [--samples 30000] [--minutes 50] [--out services/redaction/data/barcode_net.onnx]

The data and the initial weights are seeded, the same on every machine; training runs for --minutes of wall time
(its learning rate follows the time spent), so the number of steps, and the weights, depend on the machine's speed
and load. The last line is JSON: samples, steps, seconds, the synthetic validation set's pixel recall and
precision for each map, sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import torch
from barcode_synth import materialise_backgrounds, sample
from common import ROOT
from torch import nn

OUT = ROOT / "services" / "redaction" / "data" / "barcode_net.onnx"
VALIDATION_SEED = 10_000_000  # validation samples' seeds start here, far from the training seeds


def block(cin: int, cout: int, *, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """A 3x3 convolution, batch norm and ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class BarNet(nn.Module):
    """Grey (B, 1, H, W) in, logits (B, 2, H/4, W/4) out (H and W multiples of 8): linear codes, 2-D codes."""

    def __init__(self) -> None:
        super().__init__()
        self.quarter = nn.Sequential(block(1, 16, stride=2), block(16, 24, stride=2), block(24, 32))
        self.eighth = nn.Sequential(block(32, 48, stride=2), block(48, 48, dilation=2), block(48, 48, dilation=4),
                                    block(48, 48, dilation=8))
        self.head = nn.Sequential(block(48 + 32, 32), nn.Conv2d(32, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.quarter(x)
        e = nn.functional.interpolate(self.eighth(q), size=q.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(torch.cat([q, e], dim=1))


def _make(args: tuple[int, list[Path]]) -> tuple[np.ndarray, np.ndarray]:
    return sample(*args)


def make_set(seeds: range, backgrounds: list[Path], *, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """The samples of ``seeds`` (crops, targets), made in ``workers`` processes."""
    with Pool(workers) as pool:
        pairs = pool.map(_make, [(s, backgrounds) for s in seeds], chunksize=64)
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def normalise(grey: torch.Tensor) -> torch.Tensor:
    """Grey levels as the network reads them (as services.redaction.bar_network feeds it)."""
    return (grey.float() / 255.0 - 0.5) / 0.25


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch turned by quarter turns, mirrored, and sometimes inverted (light bars on dark)."""
    k = int(torch.randint(4, (1,), generator=gen))
    x, y = torch.rot90(x, k, dims=(-2, -1)), torch.rot90(y, k, dims=(-2, -1))
    if torch.rand(1, generator=gen) < 0.5:
        x, y = x.flip(-1), y.flip(-1)
    if torch.rand(1, generator=gen) < 0.3:
        x = 255 - x  # light bars on a dark ground (inverted labels)
    return x, y


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy (codes weighted twice) plus half the soft Dice loss of each map."""
    bce = nn.functional.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(2.0))
    p = torch.sigmoid(logits)
    overlap, sizes = (p * target).sum(dim=(0, 2, 3)), p.sum(dim=(0, 2, 3)) + target.sum(dim=(0, 2, 3))
    dice = 1 - (2 * overlap + 1) / (sizes + 1)
    return bce + 0.5 * dice.mean()


def evaluate(net: BarNet, x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    """Pixel (cell) recall and precision of each map at probability 0.5 on a synthetic set."""
    net.eval()
    tp, fp, fn = np.zeros(2), np.zeros(2), np.zeros(2)
    with torch.no_grad():
        for i in range(0, len(x), 64):
            p = torch.sigmoid(net(normalise(torch.from_numpy(x[i:i + 64])[:, None]))).numpy() > 0.5
            t = y[i:i + 64] > 0
            tp += (p & t).sum(axis=(0, 2, 3))
            fp += (p & ~t).sum(axis=(0, 2, 3))
            fn += (~p & t).sum(axis=(0, 2, 3))
    net.train()
    return [(float(tp[c] / max(1, tp[c] + fn[c])), float(tp[c] / max(1, tp[c] + fp[c]))) for c in range(2)]


def export(net: BarNet, path: Path) -> str:
    """The network as ONNX (any batch and size) at ``path``; returns its sha256."""
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 1, 256, 256), str(path), input_names=["grey"], output_names=["codes"],
                      dynamic_axes={"grey": {0: "b", 2: "h", 3: "w"}, "codes": {0: "b", 2: "qh", 3: "qw"}},
                      opset_version=17, dynamo=False)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30000)  # the committed network's; about 3 GB in memory
    parser.add_argument("--validation", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=50.0)  # the committed network's
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--quick", action="store_true", help="a 2-minute run on 2000 samples (checks the pipeline)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.validation, args.minutes = 2000, 200, 2.0
    torch.manual_seed(0)
    torch.set_num_threads(2)
    backgrounds = materialise_backgrounds()
    start = time.perf_counter()
    x, y = make_set(range(args.samples), backgrounds, workers=args.workers)
    vx, vy = make_set(range(VALIDATION_SEED, VALIDATION_SEED + args.validation), backgrounds, workers=args.workers)
    print(f"{len(x)} training and {len(vx)} validation samples made in {time.perf_counter() - start:.0f} s "
          f"({y[:, 0].mean():.3f} of target cells are bars, {y[:, 1].mean():.3f} 2-D codes)", flush=True)
    net = BarNet()
    print(f"{sum(p.numel() for p in net.parameters())} weights", flush=True)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    budget, step, train_start = args.minutes * 60, 0, time.perf_counter()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).float()
    while (elapsed := time.perf_counter() - train_start) < budget:
        lr = 3e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, elapsed / budget)))
        for group in optimiser.param_groups:
            group["lr"] = max(lr, 3e-5)
        idx = torch.randint(len(xt), (args.batch,), generator=gen)
        xb, yb = augment(xt[idx][:, None], yt[idx], gen)
        loss = loss_fn(net(normalise(xb)), yb)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        if step % 200 == 0:
            (recall, precision), (recall_2d, precision_2d) = evaluate(net, vx[:300], vy[:300])
            print(f"step {step} ({elapsed:.0f} s) loss {loss.item():.3f} val bars recall {recall:.3f} precision "
                  f"{precision:.3f}, 2-D recall {recall_2d:.3f} precision {precision_2d:.3f}", flush=True)
    (recall, precision), (recall_2d, precision_2d) = evaluate(net, vx, vy)
    digest = export(net, args.out)
    seconds = time.perf_counter() - start
    print(json.dumps({"samples": len(x), "steps": step, "seconds": round(seconds),
                      "val_pixel_recall": round(recall, 4), "val_pixel_precision": round(precision, 4),
                      "val_pixel_recall_2d": round(recall_2d, 4), "val_pixel_precision_2d": round(precision_2d, 4),
                      "out": str(args.out), "sha256": digest}))


if __name__ == "__main__":
    main()

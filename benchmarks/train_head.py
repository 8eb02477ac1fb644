"""Training and cross-validating the head on 10,000 embeddings.

    python benchmarks/train_head.py [--quick] [--embeddings N] [--folds K]

The embeddings are real: EfficientNet-Lite0 (ONNX Runtime) over distinct variants of the sample photos
(random crop of 55-100% of the area, mirror, brightness and contrast jitter), made once and cached in
benchmarks/out/. Person cues are those of each variant's source photo (face detection on 10,000 photos
would dominate the run and is not what is measured). Timed: stratified k-fold cross-validation of the
two-stage head (each fold fits the base stage and, from inner out-of-fold predictions, the person stage),
the out-of-fold report (per-class figures, thresholds for 98%, the trade-off curve) and the final fit on
everything, i.e. what ``services.models.training.train`` does after features. Variants of one photo fall in
different folds, so the cross-validated scores are optimistic; they are printed, not the figure measured.
The last line is one JSON object: embeddings, seconds, and the parts.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import OUT, cpu_ticks, others_share, source_photos
from PIL import Image, ImageEnhance, ImageOps


def variant(src: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = src.size
    area = rng.uniform(0.55, 1.0)
    aspect = rng.uniform(0.8, 1.25)
    cw, ch = min(w, int(w * np.sqrt(area * aspect))), min(h, int(h * np.sqrt(area / aspect)))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    im = src.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = ImageOps.mirror(im)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.75, 1.25))
    return ImageEnhance.Contrast(im).enhance(rng.uniform(0.8, 1.2))


def embeddings(n: int, models_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, bool]:
    """(embeddings, cues, labels, seconds spent embedding, whether read from the cache)."""
    cache = OUT / f"train_head_{n}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return z["emb"], z["cues"], z["y"], 0.0, True
    from services.models.features import CUES_SIDE, FeatureExtractor

    photos, _ = source_photos()
    labels = [p.parent.name for p in photos]
    extractor = FeatureExtractor(models_dir)
    sources = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in photos]
    for im in sources:
        im.thumbnail((CUES_SIDE, CUES_SIDE))  # what training decodes for cues
    src_cues = extractor.cues([im.copy() for im in sources])
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    emb, idx = [], []
    for i in range(0, n, 32):
        picks = [int(k) for k in rng.integers(0, len(sources), min(32, n - i))]
        pics = [variant(sources[k], rng) for k in picks]
        for p in pics:
            p.thumbnail((224, 224))
        emb.append(extractor.embed(pics))
        idx.extend(picks)
        if (i // 32) % 50 == 0:
            print(f"embedded {i + len(picks)}/{n}", flush=True)
    seconds = time.perf_counter() - started
    out = np.concatenate(emb), src_cues[idx], np.array([labels[k] for k in idx])
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, emb=out[0], cues=out[1], y=out[2])
    return (*out, seconds, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 embeddings, 3 folds")
    parser.add_argument("--embeddings", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None)
    args = parser.parse_args()
    n = args.embeddings or (2000 if args.quick else 10_000)
    folds = args.folds or (3 if args.quick else 5)

    from services.models.embedder import BACKBONE, export_onnx
    from services.models.head import fit_head
    from services.models.training import cross_validate

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        export_onnx(models / f"{BACKBONE}.onnx")
        emb, cues, y, embed_seconds, cached = embeddings(n, models)
    print(f"{len(emb)} embeddings ({'cached' if cached else f'made in {embed_seconds:.0f} s'}), "
          f"classes { {str(k): int(v) for k, v in zip(*np.unique(y, return_counts=True))} }", flush=True)

    before = cpu_ticks()
    t0 = time.perf_counter()
    cv = cross_validate(emb, cues, y, folds=folds, c=1.0)
    t1 = time.perf_counter()
    head = fit_head(emb, y, cues, c=1.0)
    t2 = time.perf_counter()
    print(f"cross-validation ({folds} folds, report included) {t1 - t0:.1f} s; final fit {t2 - t1:.1f} s; "
          f"optimistic CV macro-F1 {cv['macro_f1']:.3f}, automatic share at 98% {cv['at_target']['automatic_share']:.1%}; "
          f"person stage {'on' if head.person is not None else 'off'}", flush=True)
    print(json.dumps({
        "embeddings": int(len(emb)), "seconds": round(t2 - t0, 2), "cv_seconds": round(t1 - t0, 2),
        "fit_seconds": round(t2 - t1, 2), "folds": folds, "embed_seconds": round(embed_seconds, 1),
        "embeddings_cached": cached, "cpus": os.cpu_count(), "others_cpu_share": others_share(before),
    }))


if __name__ == "__main__":
    main()

"""Calibrated confidences for the everyday labels, so that a threshold means the same for each of them.

A detector's raw score means something different per label: the person detectors score 0.5 to 1 when they
find someone, an ImageNet sum for "shoe" rarely passes 0.3 even on a photo full of shoes. Each everyday family
(``services.dataset_filter.everyday``) therefore maps its raw score ``s`` through Platt scaling on its log-odds,

    confidence = 1 / (1 + exp(-(slope * logit(s) + intercept)))

fitted on labelled photos (``benchmarks/filter_labels.py --write-calibration``: the tuning part of the sample
photos, never the part it reports on) and committed in ``data/label_calibration.json``. A calibrated 0.8 then
means: among the tuning photos scored about there, about 8 in 10 showed the label. Any other label is not
calibrated: its confidence is the ImageNet probability sum, and ``threshold_meaning`` says so.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.core.errors import InvalidInput, ModelError
from services.dataset_filter.everyday import family_of

DATA_PATH = Path(__file__).resolve().parent / "data" / "label_calibration.json"
FORMAT_VERSION = 1
RAW_FLOOR = 1e-4  # a raw score of 0 (nobody found) counts as this: logit -9.2
RIDGE = 0.01  # L2 penalty on slope and intercept: keeps the fit finite when the tuning photos separate perfectly


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of one family's raw score, with what it was fitted on."""

    label: str
    slope: float
    intercept: float
    photos: int  # tuning photos it was fitted on
    positives: int  # of which showed the label

    def apply(self, raw: float) -> float:
        """The calibrated confidence (0..1) of a raw score."""
        z = self.slope * logit(raw) + self.intercept
        return float(1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z)))))


def logit(raw: float) -> float:
    """log(s / (1 - s)) with s kept inside [RAW_FLOOR, 1 - RAW_FLOOR]."""
    s = min(max(float(raw), RAW_FLOOR), 1.0 - RAW_FLOOR)
    return math.log(s / (1.0 - s))


def fit(raw: Sequence[float], *, present: Sequence[bool], label: str, ridge: float = RIDGE) -> Calibration:
    """Platt scaling (Newton's method) of raw scores against whether each photo shows the label, with Platt's
    smoothed targets ((positives + 1) / (positives + 2) and 1 / (negatives + 2)) and a small ridge.

    Raises InvalidInput when the lists differ in length or hold no positive or no negative photo.
    """
    if len(raw) != len(present):
        raise InvalidInput(f"{len(raw)} scores but {len(present)} labels")
    y = np.asarray([bool(p) for p in present], dtype=np.float64)
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        raise InvalidInput(f"calibrating {label!r} needs photos with and without it ({pos} with, {neg} without)")
    t = np.where(y > 0, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    x = np.stack([np.array([logit(s) for s in raw]), np.ones(len(y))], axis=1)
    w = np.zeros(2)
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -60, 60)))
        grad = x.T @ (p - t) + ridge * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return Calibration(label, round(float(w[0]), 6), round(float(w[1]), 6), len(y), pos)


@functools.lru_cache(maxsize=4)
def load(path: str | None = None) -> dict[str, Calibration]:
    """The committed calibrations by family name. Raises ModelError when the file is missing or unreadable."""
    file = Path(path) if path else DATA_PATH
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {FORMAT_VERSION}")
        return {name: Calibration(name, float(c["slope"]), float(c["intercept"]), int(c["photos"]),
                                  int(c["positives"])) for name, c in doc["labels"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"label calibration {file} cannot be read: {exc}") from exc


def write(calibrations: Sequence[Calibration], *, fitted_on: str, path: Path = DATA_PATH) -> Path:
    """Write the calibrations (sorted by label) with a note of what they were fitted on."""
    doc = {"version": FORMAT_VERSION, "fitted_on": fitted_on,
           "labels": {c.label: {"slope": c.slope, "intercept": c.intercept, "photos": c.photos,
                                "positives": c.positives} for c in sorted(calibrations, key=lambda c: c.label)}}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    load.cache_clear()
    return path


def for_label(label: str) -> Calibration | None:
    """The calibration of the family ``label`` belongs to, or None (not an everyday label, or not fitted).
    Raises ModelError when the committed calibration cannot be read."""
    family = family_of(label)
    return load().get(family.name) if family else None


def threshold_meaning(label: str, *, threshold: float, detector: str = "local") -> str:
    """One sentence saying what ``threshold`` means for ``label`` with this detector. Raises ModelError when the
    committed calibration cannot be read."""
    if detector != "local":
        return (f"{label}: {threshold:g} is Rekognition's own confidence ({threshold * 100:g}%), "
                "not calibrated here")
    cal = for_label(label)
    if cal is None:
        return (f"{label}: {threshold:g} is a sum of ImageNet class probabilities, not calibrated: "
                "compare it only with other scores of this label")
    family = family_of(label)
    name = family.name if family else label
    top = cal.apply(1.0)
    said = (f"{label}: calibrated (as {name}, on {cal.photos} labelled photos, {cal.positives} showing it): "
            f"of the images scored {threshold:g}, about {threshold:.0%} show it")
    if top < threshold:
        said += f"; no image can reach {threshold:g}: this label scores at most {top:.2f}"
    return said


__all__ = ["Calibration", "fit", "for_label", "load", "logit", "threshold_meaning", "write"]

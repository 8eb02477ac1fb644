"""The trained head: embeddings (+ person-geometry cues) -> calibrated probabilities of the four classes.

Two stages, both multinomial/binary logistic regression (well calibrated on small data):
1. ``base`` maps the standardised 1280-d embedding to the four classes.
2. ``person`` refines the full- versus half-length split where the base stage calls a photo a person
   shot but is in doubt between the two, from the base log-odds plus face geometry (see
   ``services.models.person_cues``). Cues are computed only for those photos: product and package shots and
   clear-cut person shots cost nothing extra. (Cross-validated on the sample photos, refining only the
   doubtful ones scored a higher macro-F1 than refining every person shot: 0.943 against 0.930.)
Parameters are plain arrays saved with numpy (no pickle), so a model file is safe to load.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.core.errors import ModelError
from services.core.private import open_private, private_dir

PERSON_CLASSES = ("full_length", "half_length")
PERSON_GATE = 0.2  # a person shot: P(full) + P(half) reaches this ...
PERSON_DOUBT = 0.05  # ... and the less likely of the two holds at least this share of it (face cues only)
FACE_CUE_DIMS = 8  # the face-geometry cues come first (services.models.person_cues.CUE_NAMES)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class Head:
    classes: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (C, D)
    intercept: np.ndarray  # (C,)
    person: dict[str, np.ndarray] | None = None  # mean, scale, coef (F,), intercept ()

    # ---- inference -------------------------------------------------------------------------
    def base_proba(self, emb: np.ndarray) -> np.ndarray:
        x = (emb - self.mean) / self.scale
        return _softmax(x @ self.coef.T + self.intercept)

    def cue_dims(self) -> int:
        """How many leading cue columns the person stage was trained on (0: no person stage)."""
        return 0 if self.person is None else int(self.person["mean"].shape[0]) - 1

    def needs_cues(self, base: np.ndarray) -> np.ndarray:
        """Boolean mask of rows whose person split should use cues: every person shot when the stage knows the
        body's extent (a confident 'full length' from the embedding alone is the costly mistake); otherwise, with
        face cues only, the person shots in doubt."""
        if self.person is None:
            return np.zeros(len(base), dtype=bool)
        fi, hi = (self.classes.index(c) for c in PERSON_CLASSES)
        mass = base[:, fi] + base[:, hi]
        if self.cue_dims() > FACE_CUE_DIMS:
            return mass >= PERSON_GATE
        doubt = np.minimum(base[:, fi], base[:, hi]) / np.maximum(mass, 1e-12)
        return (mass >= PERSON_GATE) & (doubt >= PERSON_DOUBT)

    def refine(self, base: np.ndarray, cues: np.ndarray) -> np.ndarray:
        """Apply the person stage to rows of ``base`` with their (N, K) cues."""
        if self.person is None or len(base) == 0:
            return base
        fi, hi = (self.classes.index(c) for c in PERSON_CLASSES)
        feats = person_features(base, cues[:, : self.cue_dims()], fi, hi)
        z = ((feats - self.person["mean"]) / self.person["scale"]) @ self.person["coef"] + self.person["intercept"]
        p_half = 1.0 / (1.0 + np.exp(-z))
        out = base.copy()
        mass = base[:, fi] + base[:, hi]
        out[:, fi] = mass * (1 - p_half)
        out[:, hi] = mass * p_half
        return out

    def predict_proba(self, emb: np.ndarray, cues_for: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Final probabilities; ``cues_for(indices)`` returns cues for the rows that need them."""
        base = self.base_proba(emb)
        mask = self.needs_cues(base)
        if mask.any():
            idx = np.flatnonzero(mask)
            base[idx] = self.refine(base[idx], cues_for(idx))
        return base

    # ---- persistence -----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        arrays = {"mean": self.mean, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}
        if self.person is not None:
            arrays.update({f"person_{k}": v for k, v in self.person.items()})
        private_dir(path.parent)
        with os.fdopen(open_private(path), "wb") as f:  # 0600: this account only
            np.savez(f, classes=np.array(json.dumps(self.classes)), **arrays)

    @classmethod
    def load(cls, path: Path) -> Head:
        """Load a saved head. Raises ModelError if the file is missing or damaged."""
        try:
            with np.load(path, allow_pickle=False) as z:
                person = None
                if "person_coef" in z.files:
                    person = {k: z[f"person_{k}"] for k in ("mean", "scale", "coef", "intercept")}
                return cls(
                    classes=json.loads(str(z["classes"])),
                    mean=z["mean"],
                    scale=z["scale"],
                    coef=z["coef"],
                    intercept=z["intercept"],
                    person=person,
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot load model file {path}: {exc}") from None


def person_features(base: np.ndarray, cues: np.ndarray, fi: int, hi: int) -> np.ndarray:
    logodds = np.log(base[:, fi] + 1e-6) - np.log(base[:, hi] + 1e-6)
    return np.hstack([logodds[:, None], cues])


def fit_head(emb: np.ndarray, y: np.ndarray, cues: np.ndarray | None, *, c: float = 1.0, seed: int = 0) -> Head:
    """Fit both stages on (embeddings, labels, cues-or-None). Raises ModelError on unusable data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    classes = sorted(set(y.tolist()))
    if len(classes) < 2:
        raise ModelError("training needs labelled examples of at least two classes")
    mean = emb.mean(axis=0)
    scale = emb.std(axis=0) + 1e-6
    lr = LogisticRegression(C=c, max_iter=5000).fit((emb - mean) / scale, y)
    head = Head(classes=list(lr.classes_), mean=mean, scale=scale, coef=lr.coef_, intercept=lr.intercept_)
    if len(classes) == 2:  # sklearn gives one row for binary problems
        head.coef = np.vstack([-lr.coef_[0] / 2, lr.coef_[0] / 2])
        head.intercept = np.array([-lr.intercept_[0] / 2, lr.intercept_[0] / 2])
    person_rows = np.isin(y, PERSON_CLASSES)
    counts = [int((y == c).sum()) for c in PERSON_CLASSES]
    if cues is None or not all(c in classes for c in PERSON_CLASSES) or min(counts) < 4:
        return head
    # the person stage learns from out-of-fold base probabilities, as it will see them at inference
    k = min(4, min(int((y == cl).sum()) for cl in classes))
    oof = np.zeros((len(y), len(classes)))
    if k >= 2:
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=seed).split(emb, y):
            oof[te] = fit_head(emb[tr], y[tr], None, c=c).base_proba(emb[te])
    else:
        oof = head.base_proba(emb)
    fi, hi = (head.classes.index(cl) for cl in PERSON_CLASSES)
    feats = person_features(oof[person_rows], cues[person_rows], fi, hi)
    pm, ps = feats.mean(axis=0), feats.std(axis=0) + 1e-6
    target = (y[person_rows] == "half_length").astype(int)
    plr = LogisticRegression(C=c, max_iter=5000).fit((feats - pm) / ps, target)
    head.person = {"mean": pm, "scale": ps, "coef": plr.coef_[0], "intercept": np.array(plr.intercept_[0])}
    return head

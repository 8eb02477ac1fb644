"""The cross-validated figures can fail: with the labels shuffled among the same photos, a model that learns
nothing real scores near chance. A cross-validation that leaked training photos into its test folds would
score shuffled labels well (it would grade the model on photos it memorised) and fail here."""

from __future__ import annotations

import numpy as np

from services.models.registry import active_version
from services.models.training import train


def test_shuffled_labels_score_near_chance_and_the_real_ones_do_not(trained_ws):
    db = trained_ws.db()
    real = active_version(db)["metrics"]
    assert real["macro_f1"] > 0.8  # the same photos with their true labels (measured 0.94)
    rows = db.execute("SELECT id, label FROM labels ORDER BY id").fetchall()
    labels = np.array([r[1] for r in rows])
    rng = np.random.default_rng(7)
    shuffled = rng.permutation(labels)  # same class counts, labels no longer tied to the photos
    assert (shuffled == labels).mean() < 0.5
    with db.atomic():
        for (row_id, _), label in zip(rows, shuffled):
            db.execute("UPDATE labels SET label = ? WHERE id = ?", [str(label), row_id])
    chance = train(trained_ws, db, actor="cli:test", activate=False)
    # four classes: chance macro-F1 is about 0.25; 60 photos leave room for luck, never for 0.8
    assert chance["macro_f1"] < 0.5, chance["macro_f1"]
    assert chance["macro_f1"] < real["macro_f1"] - 0.3

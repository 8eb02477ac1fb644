"""Calibrated confidences of the everyday labels, the everyday label families and the feet geometry."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from services.core.errors import InvalidInput, ModelError
from services.dataset_filter import calibration, everyday
from services.dataset_filter.calibration import Calibration, fit, threshold_meaning
from services.dataset_filter.imagenet_hierarchy import load
from services.dataset_filter.people import feet_crops, feet_shown


def test_fit_recovers_a_known_platt_mapping_and_orders_scores():
    rng = np.random.default_rng(7)
    raw = rng.uniform(0.001, 0.999, 4000)
    truth = 1 / (1 + np.exp(-(1.5 * np.log(raw / (1 - raw)) - 0.5)))
    present = rng.uniform(size=raw.size) < truth
    cal = fit(raw.tolist(), present=present.tolist(), label="thing", ridge=1e-6)
    assert cal.slope == pytest.approx(1.5, abs=0.15) and cal.intercept == pytest.approx(-0.5, abs=0.15)
    assert (cal.photos, cal.positives) == (4000, int(present.sum()))
    assert cal.apply(0.9) > cal.apply(0.5) > cal.apply(0.1)
    assert 0 < cal.apply(0.0) < cal.apply(1.0) < 1  # the floor keeps 0 and 1 finite


def test_fit_stays_finite_when_the_photos_separate_perfectly_and_refuses_one_sided_sets():
    cal = fit([0.9, 0.95, 0.8, 0.0, 0.0, 0.01], present=[True, True, True, False, False, False], label="person")
    assert math.isfinite(cal.slope) and cal.apply(0.9) > 0.7 and cal.apply(0.0) < 0.3
    with pytest.raises(InvalidInput, match="with and without it"):
        fit([0.2, 0.3], present=[True, True], label="shoe")
    with pytest.raises(InvalidInput, match="2 scores but 1 labels"):
        fit([0.2, 0.3], present=[True], label="shoe")


def test_the_committed_calibration_covers_every_family_and_is_read_back(tmp_path):
    cals = calibration.load()
    assert set(cals) == {f.name for f in everyday.FAMILIES}
    for cal in cals.values():
        assert cal.photos >= 30 and 0 < cal.positives < cal.photos
    path = calibration.write(list(cals.values()), fitted_on="a test", path=tmp_path / "c.json")
    assert json.loads(path.read_text())["fitted_on"] == "a test"
    assert calibration.load(str(path)) == cals
    (tmp_path / "bad.json").write_text('{"version": 9, "labels": {}}')
    with pytest.raises(ModelError, match="version 9"):
        calibration.load(str(tmp_path / "bad.json"))
    with pytest.raises(ModelError, match="cannot be read"):
        calibration.load(str(tmp_path / "missing.json"))


def test_threshold_meaning_per_label_and_detector(monkeypatch):
    monkeypatch.setattr(calibration, "load", lambda path=None: {
        "person": Calibration("person", 1.0, 0.0, 30, 14), "bag": Calibration("bag", 0.1, -2.0, 30, 2)})
    said = threshold_meaning("Women", threshold=0.8)
    assert said.startswith("Women: calibrated (as person, on 30 labelled photos, 14 showing it)")
    assert "of the images scored 0.8, about 80% show it" in said and "no image can reach" not in said
    assert "of the images scored 0.85, about 85% show it" in threshold_meaning("man", threshold=0.85)
    top = Calibration("bag", 0.1, -2.0, 30, 2).apply(1.0)
    assert threshold_meaning("bags", threshold=0.8).endswith(f"no image can reach 0.8: this label scores at most {top:.2f}")
    assert "not calibrated" in threshold_meaning("dog", threshold=0.8)
    assert "not calibrated" in threshold_meaning("shoe", threshold=0.8)  # a family with no fitted calibration
    assert threshold_meaning("person", threshold=0.7, detector="rekognition").startswith(
        "person: 0.7 is Rekognition's own confidence (70%)")


def test_everyday_families_know_their_words_and_classes():
    hierarchy = load()
    for word, name in (("People", "person"), ("children", "person"), ("man", "person"), ("shoes", "shoe"),
                       ("handbag", "bag"), ("parcels", "box"), ("Clothes", "clothing")):
        family = everyday.family_of(word)
        assert family is not None and family.name == name, word
    assert everyday.family_of("bird") is None and everyday.family_of("garment") is None
    for family in everyday.FAMILIES:
        ids = everyday.class_ids(family, hierarchy=hierarchy)
        assert bool(ids) != (family.people or bool(family.coco))  # person and bag: none (detectors); others: some
    assert "sleeping bag" not in everyday.describe(everyday.family_of("bag"), hierarchy=hierarchy)


def _landmarks(points: dict[int, tuple[float, float, float]]) -> np.ndarray:
    lm = np.zeros((33, 4), dtype=np.float32)
    lm[:, :3] = (0.5, 0.1, 0.9)  # everything else: the head, high in the photo
    for i, (x, y, vis) in points.items():
        lm[i, :3] = (x, y, vis)
    return lm


def test_feet_crops_and_feet_shown_from_landmarks():
    feet = {27: (0.4, 0.8, 0.9), 28: (0.6, 0.8, 0.9), 29: (0.4, 0.85, 0.9), 30: (0.6, 0.85, 0.9),
            31: (0.42, 0.9, 0.95), 32: (0.62, 0.9, 0.2)}
    lm = _landmarks(feet)
    crops = feet_crops(lm, width=400, height=1000)
    assert len(crops) == 2  # both feet, and the one toe tip seen well enough (32 is at 0.2)
    for left, top, right, bottom in crops:
        assert 0 <= left < right <= 400 and 0 <= top < bottom <= 1000 and top > 600  # at the bottom
    assert feet_shown(lm) == pytest.approx(0.95)
    cut = _landmarks({i: (x, y + 0.3, v) for i, (x, y, v) in feet.items()})  # below the bottom edge: out of frame
    assert feet_crops(cut, width=400, height=1000) == [] and feet_shown(cut) == 0.0

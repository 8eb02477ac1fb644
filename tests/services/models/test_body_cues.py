"""Body-extent cues with the real BlazePose model: full-length photos show ankles and feet, half-length ones do
not, photos without a person give the no-person vector, and a body without a face still gives body cues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage
from PIL import Image

import services.models.body_cues as body_cues_module
from services.core.errors import ModelError
from services.models.body_cues import BODY_CUE_NAMES, NO_PERSON, BodyPoseModel, Pose, body_cues, cues_from_pose
from tests.threads import run_at_once

IDX = {name: i for i, name in enumerate(BODY_CUE_NAMES)}
SKIMAGE_DATA = Path(skimage.__file__).parent / "data"


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def _photos(samples: Path, label: str) -> list[np.ndarray]:
    return [_rgb(p) for p in sorted((samples / label).glob("*.jpg"))]


def _feet_in_frame(cues: np.ndarray) -> float:
    return float(max(cues[IDX["ankles_in_frame"]], cues[IDX["feet_in_frame"]]))


@pytest.fixture(scope="module")
def model() -> BodyPoseModel:
    return BodyPoseModel.shared()


def test_full_length_photos_have_ankles_and_feet_in_frame(model, samples):
    cues = model.cues(_photos(samples, "full_length"))
    assert cues.shape == (17, len(BODY_CUE_NAMES)) and cues.dtype == np.float32
    assert cues[:, IDX["has_person"]].mean() >= 0.9
    shown = [_feet_in_frame(c) >= 0.3 for c in cues]
    assert np.mean(shown) >= 0.8, cues[:, IDX["ankles_in_frame"]]
    assert np.mean(cues[:, IDX["ankle_height"]] <= 1.05) >= 0.8  # the ankles sit inside the frame


def test_half_length_photos_have_hips_but_no_ankles_or_feet_in_frame(model, samples):
    cues = model.cues(_photos(samples, "half_length"))
    assert cues[:, IDX["has_person"]].mean() >= 0.9
    assert np.mean(cues[:, IDX["hips_in_frame"]] >= 0.5) >= 0.8
    hidden = [_feet_in_frame(c) < 0.3 for c in cues]
    assert np.mean(hidden) >= 0.8, cues[:, IDX["ankles_in_frame"]]
    assert np.mean(cues[:, IDX["ankle_height"]] > 1.1) >= 0.8  # placed below the bottom edge
    assert np.mean(cues[:, IDX["body_in_frame"]] < 0.8) >= 0.8


@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png", "rocket.jpg"])
def test_a_photo_without_a_person_gives_the_no_person_vector(name):
    cues = body_cues(_rgb(SKIMAGE_DATA / name))
    assert cues.tolist() == NO_PERSON


def test_plain_and_tiny_images_give_the_no_person_vector(model):
    assert cues_from_pose(model.pose(np.full((480, 640, 3), 128, np.uint8))) == NO_PERSON
    assert cues_from_pose(model.pose(np.zeros((1, 1, 3), np.uint8))) == NO_PERSON
    with pytest.raises(ValueError):
        model.pose(np.zeros((10, 10), np.uint8))


def test_parcel_photos_give_the_no_person_vector(model, samples):
    cues = model.cues(_photos(samples, "package"))
    assert np.mean([c.tolist() == NO_PERSON for c in cues]) >= 0.8


def test_a_body_without_a_face_still_gives_body_cues(model, samples):
    """Each half-length photo cut just below the mouth (as many shop photos are): the person is still found,
    hips in frame, ankles not; CenterFace (when installed) confirms that no face is left."""
    crops = []
    for photo in _photos(samples, "half_length"):
        pose = model.pose(photo)
        if pose is None:
            continue
        mouth, shoulders = pose.landmarks[[9, 10], 1].max(), pose.landmarks[[11, 12], 1].min()
        top = int(max(0.0, mouth + 0.3 * (shoulders - mouth)) * photo.shape[0])
        if photo.shape[0] - top > photo.shape[0] // 3:
            crops.append(np.ascontiguousarray(photo[top:]))
    assert len(crops) >= 8
    cues = model.cues(crops)
    found = cues[:, IDX["has_person"]] == 1
    assert found.mean() >= 0.8
    assert np.mean(cues[found, IDX["hips_in_frame"]] >= 0.5) >= 0.8
    assert np.mean(cues[found, IDX["ankles_in_frame"]] < 0.3) >= 0.8
    faceless = _faceless(crops)
    if faceless is not None:
        assert np.mean(faceless) >= 0.7
        assert np.mean(cues[faceless, IDX["has_person"]]) >= 0.8


def _faceless(photos: list[np.ndarray]) -> np.ndarray | None:
    """Whether CenterFace finds no face in each photo, or None where its package is not installed."""
    from services.models.person_cues import FaceDetector

    try:
        faces = FaceDetector.shared()
    except ModelError:
        return None
    prepared = [FaceDetector.prepare(Image.fromarray(p)) for p in photos]
    found = [faces.detect(b[None], [s])[0] for b, s in prepared]
    return np.array([len(f) == 0 for f in found])


def test_cues_from_pose_reads_the_landmarks():
    lm = np.zeros((33, 4), np.float32)
    lm[:, 0], lm[:, 1], lm[:, 2], lm[:, 3] = 0.5, 0.3, 0.9, 0.9
    lm[0, 1] = 0.1  # the nose: top of the body
    lm[[23, 24], 1] = 0.6  # hips in frame
    lm[[25, 26], 1] = 0.9  # knees in frame
    lm[[27, 28], 1] = 1.3  # ankles and feet below the bottom edge, however visible
    lm[29:33, 1] = 1.4
    cues = dict(zip(BODY_CUE_NAMES, cues_from_pose(Pose(lm, score=0.8, presence=1.0)), strict=True))
    assert cues["has_person"] == 1 and cues["person_score"] == pytest.approx(0.8)
    assert cues["ankles_visible"] == pytest.approx(0.9) and cues["ankles_in_frame"] == 0
    assert cues["feet_in_frame"] == 0 and cues["knees_in_frame"] == pytest.approx(0.9)
    assert cues["lowest_visible"] == pytest.approx(0.9)  # the knees
    assert cues["ankle_height"] == pytest.approx(1.3)
    assert cues["body_in_frame"] == pytest.approx((1.0 - 0.1) / (1.4 - 0.1))
    assert cues_from_pose(None) == NO_PERSON


def test_the_model_is_loaded_once_per_process(monkeypatch):
    monkeypatch.setattr(body_cues_module, "_shared", None)  # not loaded yet: four threads ask at once
    got = run_at_once([BodyPoseModel.shared] * 4)
    assert len(got) == 4 and all(m is got[0] for m in got) and isinstance(got[0], BodyPoseModel)


def test_a_missing_model_file_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.setattr(body_cues_module, "DATA_DIR", tmp_path)
    with pytest.raises(ModelError, match="body-pose model not found"):
        BodyPoseModel()
    (tmp_path / body_cues_module.DETECTOR_FILE).write_bytes(b"not a model")
    (tmp_path / body_cues_module.LANDMARK_FILE).write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        BodyPoseModel()

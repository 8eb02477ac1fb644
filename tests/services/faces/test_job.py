"""Face blurring of images: annotated faces in real photos are anonymised and the rest is not; size, format,
orientation, alpha and metadata are handled; bad files fail alone; Rekognition's boxes are clamped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from botocore.stub import Stubber
from PIL import Image, ImageOps

from services.core.errors import CloudAccessError, InvalidInput
from services.core.jobs import get_job, run_job
from services.faces import job as face_blur
from services.faces.detection import RekognitionFaceDetector, clamp_boxes
from services.faces.masks import anonymize, grow, mask
from tests.conftest import SHARED

FACES = SHARED / "samples" / "faces"


def annotated() -> dict[str, list[list[float]]]:
    """Sample file name -> annotated face boxes [x, y, w, h] (the mmpose test annotations)."""
    out: dict[str, list[list[float]]] = {}
    for f in (FACES / "annotations").glob("mmpose_test_*.json"):
        data = json.loads(f.read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        dataset = f.stem.removeprefix("mmpose_test_")
        for a in data["annotations"]:
            out.setdefault(f"mmpose_{dataset}_{names[a['image_id']]}", []).append(a["bbox"])
    return out


def _run(ws, db, params) -> dict:
    job_id = face_blur.launch(db, params, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    return get_job(db, job_id)


def _upright(path: Path) -> np.ndarray:
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"), dtype=np.int16)


@pytest.mark.skipif(not (FACES / "annotations").is_dir(), reason="../shared/samples/faces not found (a fresh clone)")
def test_annotated_faces_are_blurred_and_the_rest_of_each_image_is_not(ws, db, tmp_path):
    faces = annotated()
    src = tmp_path / "src"
    src.mkdir()
    for name in faces:
        (src / name).write_bytes((FACES / name).read_bytes())
    job = _run(ws, db, {"source": str(src), "destination": str(tmp_path / "out")})
    assert job["state"] == "done" and job["done"] == len(faces) and job["failed"] == 0
    blurred = total = 0
    for name, boxes in faces.items():
        before, after = _upright(src / name), _upright(tmp_path / "out" / name)
        assert before.shape == after.shape
        sidecar = json.loads((tmp_path / "out" / (name + ".faces.json")).read_text())
        found = np.array([[f["x1"], f["y1"], f["x2"], f["y2"], f["score"]] for f in sidecar["faces"]]).reshape(-1, 5)
        covered = mask(found, width=before.shape[1], height=before.shape[0], scale=sidecar["mask_scale"]) > 0
        for x, y, w, h in boxes:
            total += 1
            inner = (slice(int(y + h * 0.25), int(y + h * 0.75)), slice(int(x + w * 0.25), int(x + w * 0.75)))
            blurred += float(np.abs(after[inner] - before[inner]).mean()) > 4 and bool(covered[inner].mean() > 0.9)
        import cv2

        outside = cv2.dilate(covered.astype(np.uint8), np.ones((17, 17), np.uint8)) == 0  # past JPEG blocks at the edge
        diff = np.abs(after - before).max(axis=2)[outside]
        lossless = name.endswith(".png")
        assert (diff.max() == 0) if lossless else (diff.mean() < 2.0), name  # re-encoding aside, untouched
    assert blurred == total == 12


def _jpeg_with_exif(path: Path, *, orientation: int, gps: bool) -> None:
    img = Image.new("RGB", (120, 80), (200, 30, 30))
    img.paste((20, 20, 220), (0, 0, 60, 80))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "PhoneMaker"
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    img.save(path, "JPEG", exif=exif.tobytes(), quality=95)


def test_orientation_metadata_alpha_cmyk_and_bad_files(ws, db, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _jpeg_with_exif(src / "phone.jpg", orientation=6, gps=True)  # stored landscape, shown portrait
    rgba = Image.new("RGBA", (64, 48), (10, 200, 10, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    rgba.save(src / "alpha.png")
    Image.new("CMYK", (50, 40), (0, 255, 255, 0)).save(src / "cmyk.jpg", "JPEG")
    Image.new("RGB", (40, 30), (5, 5, 5)).save(src / "pic.webp", "WEBP")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (src / "empty.png").write_bytes(b"")
    Image.new("RGB", (3000, 2000)).save(src / "huge.png")
    (src / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")  # a video cut off after its first bytes
    from services.core.config import set_setting

    set_setting(db, key="max_pixels", value=5_000_000, actor="cli:test")
    job = _run(ws, db, {"source": str(src), "destination": str(tmp_path / "out")})
    assert (job["done"], job["failed"]) == (4, 4) and job["result"]["videos_failed"] == 1
    errors = dict(db.execute("SELECT item, error FROM job_items WHERE state = 'failed'").fetchall())
    assert "video cannot be read" in errors["clip.mp4"] and not (tmp_path / "out" / "clip.mp4").exists()
    assert "corrupt or truncated" in errors["broken.jpg"] and "empty" in errors["empty.png"]
    assert "over the limit" in errors["huge.png"]
    out = tmp_path / "out"
    assert not (out / "broken.jpg").exists() and not (out / "huge.png").exists()
    with Image.open(out / "phone.jpg") as phone:
        assert phone.size == (80, 120) and phone.format == "JPEG"  # upright
        assert 0x8825 not in phone.getexif() and 0x010F not in phone.getexif()  # GPS and all EXIF gone
    with Image.open(out / "alpha.png") as alpha:
        assert alpha.mode == "RGBA" and alpha.getpixel((0, 0))[3] == 0 and alpha.size == (64, 48)
    with Image.open(out / "cmyk.jpg") as cmyk:
        assert cmyk.mode == "RGB" and cmyk.size == (50, 40)
    with Image.open(out / "pic.webp") as webp:
        assert webp.format == "WEBP"

    kept = _run(ws, db, {"source": str(src), "destination": str(tmp_path / "kept"), "keep_metadata": True})
    assert kept["done"] == 4
    with Image.open(tmp_path / "kept" / "phone.jpg") as phone:
        exif = phone.getexif()
        assert exif[0x010F] == "PhoneMaker" and 0x8825 in exif and exif[0x0112] == 1 and phone.size == (80, 120)


def test_parameters_are_checked_before_launch(db, tmp_path):
    ok = {"source": str(tmp_path / "a"), "destination": str(tmp_path / "b")}
    for bad, why in (({"destination": ""}, "give a destination"), ({"destination": str(tmp_path / "a" / "x")}, "inside"),
                     ({"mode": "smudge"}, "unknown mode"), ({"shape": "star"}, "mask shape"),
                     ({"mask_scale": 9}, "between 1 and 3"), ({"threshold": 1.5}, "threshold"),
                     ({"detector": "magic"}, "unknown face detector")):
        with pytest.raises(InvalidInput, match=why):
            face_blur.validate_params({**ok, **bad})


def test_a_local_source_that_is_not_a_folder_is_refused_at_launch_not_queued(db, tmp_path):
    from services.core.errors import NotFound

    (tmp_path / "photo.jpg").write_bytes(b"x")
    with pytest.raises(NotFound, match="nowhere"):
        face_blur.launch(db, {"source": str(tmp_path / "nowhere"), "destination": str(tmp_path / "b")}, actor="cli:test")
    with pytest.raises(InvalidInput, match="not a folder"):
        face_blur.launch(db, {"source": str(tmp_path / "photo.jpg"), "destination": str(tmp_path / "b")},
                         actor="cli:test")
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0


def test_a_file_that_is_not_an_image_is_told_so_in_words():
    from services.core.errors import ImageError

    with pytest.raises(ImageError) as caught:
        face_blur.anonymize_image(b"name,address\n", detector=None, params=face_blur.validate_params(
            {"source": "/a", "destination": "/b"}), max_pixels=10**8)
    assert "not an image this server can read" in str(caught.value) and "BytesIO" not in str(caught.value)


def test_masks_and_modes_touch_only_the_face():
    frame = np.random.default_rng(0).integers(0, 256, (100, 160, 3), dtype=np.uint8)
    boxes = np.array([[40, 30, 80, 70, 0.9]], dtype=np.float32)
    assert grow(boxes, scale=1.5, width=160, height=100).tolist() == [[30, 20, 90, 80]]
    for mode in ("blur", "pixelate", "fill"):
        for shape in ("ellipse", "box"):
            out = anonymize(frame, boxes, mode=mode, shape=shape, mask_scale=1.3)
            m = mask(boxes, width=160, height=100, shape=shape, scale=1.3) > 0
            assert (out[~m] == frame[~m]).all()
            assert np.abs(out[m].astype(int) - frame[m]).mean() > 20, (mode, shape)
    assert (anonymize(frame, boxes, mode="fill", shape="box")[40:60, 50:70] == 0).all()
    edge = np.array([[-30, -20, 20, 25, 0.8]], dtype=np.float32)  # a face cut by the frame's corner
    assert clamp_boxes(edge, 160, 100).tolist() == [[0, 0, 20, 25, pytest.approx(0.8)]]
    assert (anonymize(frame, clamp_boxes(edge, 160, 100), mode="fill", shape="box")[0:5, 0:5] == 0).all()


def test_rekognition_boxes_are_clamped_and_errors_are_clear():
    import boto3

    client = boto3.client("rekognition", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="y")
    frame = np.zeros((200, 400, 3), dtype=np.uint8)
    with Stubber(client) as stub:
        stub.add_response("detect_faces", {"FaceDetails": [
            {"BoundingBox": {"Width": 0.2, "Height": 0.4, "Left": -0.05, "Top": 0.7}, "Confidence": 99.1},
            {"BoundingBox": {"Width": 0.1, "Height": 0.2, "Left": 0.5, "Top": 0.1}, "Confidence": 12.0},
        ]}, {"Image": {"Bytes": stub_any()}, "Attributes": ["DEFAULT"]})
        stub.add_client_error("detect_faces", service_error_code="AccessDeniedException", http_status_code=400)
        det = RekognitionFaceDetector(client)
        boxes = det.detect(frame, threshold=0.3)
        assert boxes[:, :4].round(1).tolist() == [[0.0, 140.0, 60.0, 200.0]]  # negative left, past the bottom
        assert boxes[0, 4] == pytest.approx(0.991, abs=1e-3)  # the 12% face is under the threshold
        with pytest.raises(CloudAccessError, match="rekognition:DetectFaces"):
            det.detect(frame)


def stub_any():
    from botocore.stub import ANY

    return ANY


def test_a_jpeg_is_sent_within_rekognitions_limit():
    from services.faces.detection import _jpeg

    frame = np.random.default_rng(1).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)  # noise: a huge JPEG
    data = _jpeg(frame, 5 * 1024 * 1024)
    assert len(data) <= 5 * 1024 * 1024 and Image.open(io.BytesIO(data)).format == "JPEG"


def test_the_faces_command_runs_a_job_and_prints_its_summary(ws, tmp_path, capsys):
    from services.cli import main as cli

    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (64, 48), (90, 90, 90)).save(src / "x.jpg")
    assert cli.main(["--data-dir", str(ws.root), "faces", "--source", str(src), "--destination", str(tmp_path / "o"),
                     "--mode", "fill", "--wait"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (out["state"], out["done"], out["images_done"], out["videos_done"]) == ("done", 1, 1, 0)
    assert cli.main(["--data-dir", str(ws.root), "faces", "--source", str(src), "--destination", str(src)]) == 1

"""The faces job's ``redact`` choice: shipping labels (barcodes, QR codes, text blocks) redacted in copies of a
folder, with the same masks as faces; a corrupt or empty photo fails alone and the others are done."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from services.core.errors import InvalidInput
from services.core.jobs import get_job, run_job
from services.faces import job as face_blur
from tests.services.redaction.parcel import QR_TEXT, jpeg, parcel_photo


def _run(ws, db, params) -> dict:
    job_id = face_blur.launch(db, params, actor="cli:test")
    assert run_job(ws, job_id=job_id) == job_id
    return get_job(db, job_id)


def test_labels_are_redacted_and_a_bad_photo_fails_alone(ws, db, tmp_path):
    frame, truth = parcel_photo()
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "parcel.jpg").write_bytes(jpeg(frame))
    (src / "sub" / "again.jpg").write_bytes(jpeg(frame))
    (src / "empty.jpg").write_bytes(b"")
    (src / "corrupt.jpg").write_bytes(jpeg(frame)[:200])
    (src / "clip.mp4").write_bytes(b"\x00" * 64)  # a labels job takes images only
    job = _run(ws, db, {"source": str(src), "destination": str(tmp_path / "out"), "redact": "labels"})
    assert (job["state"], job["done"], job["failed"]) == ("done", 2, 2)
    errors = {r[0]: r[1] for r in db.execute("SELECT item, error FROM job_items WHERE job_id = ?", [job["id"]])}
    assert set(errors) == {"parcel.jpg", "sub/again.jpg", "empty.jpg", "corrupt.jpg"}
    assert "empty" in errors["empty.jpg"] and "decoded" in errors["corrupt.jpg"]
    assert job["result"]["labels_found"] >= 6 and job["result"]["faces_found"] == 0
    for key in ("parcel.jpg", "sub/again.jpg"):
        out = np.asarray(Image.open(tmp_path / "out" / key).convert("RGB"))
        gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
        assert cv2.QRCodeDetector().detectAndDecode(gray)[0] == ""  # the QR code cannot be read any more
        assert not cv2.barcode.BarcodeDetector().detect(gray)[0]
        x1, y1, x2, y2 = truth["text"]
        assert np.abs(out[y1:y2, x1:x2].astype(int) - frame[y1:y2, x1:x2]).mean() > 20  # the address is blurred
        assert np.abs(out[:300].astype(int) - frame[:300]).mean() < 3  # the door and bricks are not (JPEG aside)
        sidecar = json.loads((tmp_path / "out" / (key + ".faces.json")).read_text())
        assert sidecar["redact"] == "labels" and sidecar["faces"] == []
        assert {b["kind"] for b in sidecar["labels"]} == {"barcode", "qr", "text"}
    assert cv2.QRCodeDetector().detectAndDecode(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY))[0] == QR_TEXT


def test_faces_stay_the_default_and_the_choice_is_checked(tmp_path):
    clean = face_blur.validate_params({"source": str(tmp_path / "a"), "destination": str(tmp_path / "b")})
    assert clean["redact"] == "faces"
    with pytest.raises(InvalidInput, match="redact"):
        face_blur.validate_params({"source": str(tmp_path / "a"), "destination": str(tmp_path / "b"), "redact": "all"})


def test_both_masks_faces_and_labels(tmp_path):
    frame, _ = parcel_photo()

    class OneFace:
        def detect(self, rgb, *, threshold):
            return np.array([[700.0, 100.0, 800.0, 220.0, 0.9]], dtype=np.float32)

    params = face_blur.validate_params({"source": str(tmp_path / "a"), "destination": str(tmp_path / "b"),
                                        "redact": "both"})
    data, report = face_blur.anonymize_image(jpeg(frame), detector=OneFace(), params=params, max_pixels=10**8)
    assert report["faces_found"] == 1 and report["labels_found"] >= 3
    out = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    assert np.abs(out[120:200, 720:780] - frame[120:200, 720:780]).mean() > 5  # the face box is masked too

"""Label detectors: the local ImageNet detector on real photos, Rekognition through botocore's Stubber."""

from __future__ import annotations

import io
import os
import time

import boto3
import numpy as np
import pytest
from botocore.stub import ANY, Stubber
from PIL import Image

from services.core.errors import (
    CloudAccessError,
    ExternalServiceError,
    ImageError,
    InvalidInput,
    NotFound,
    StorageError,
)
from services.dataset_filter import label_detectors as ld
from services.dataset_filter.label_detectors import (
    Detection,
    LocalImageNetDetector,
    RekognitionDetector,
    resolve_labels,
)
from tests.conftest import jpeg_bytes


def photos(samples, folder: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((samples / folder).iterdir()) if p.suffix.lower() in (".jpg", ".jpeg", ".png")]


# ---------------------------------------------------------------- resolve_labels


def test_resolve_labels_local_and_rekognition():
    local = resolve_labels(["bird", "dogs", "people", "shoe", "bag"], detector="local")
    assert "American robin" in local["bird"] and len(local["dogs"]) >= 100
    assert "BlazePose" in local["people"][0]  # ImageNet has no person: the person models answer
    assert "sneaker" in local["shoe"] and "sandal" in local["shoe"] and "feet" in local["shoe"][-1]
    assert "sleeping bag" not in local["bag"] and local["bag"][0].startswith("handbag, backpack, suitcase found by")
    with pytest.raises(InvalidInput, match="did you mean: bird"):
        resolve_labels(["birb"], detector="local")
    with pytest.raises(InvalidInput, match="'Face' matches no"):
        resolve_labels(["Face"], detector="local")  # ImageNet has no face class
    # Rekognition knows far more labels than ImageNet: real words pass, typos of known names do not
    assert resolve_labels(["Face", "Person", "Apparel"], detector="rekognition") == {
        "Face": ["Face"], "Person": ["Person"], "Apparel": ["Apparel"]}
    with pytest.raises(InvalidInput, match="'birb' matches no .*did you mean: bird"):
        resolve_labels(["Person", "birb"], detector="rekognition")
    with pytest.raises(InvalidInput, match="at least one label"):
        resolve_labels([], detector="local")
    with pytest.raises(InvalidInput, match="unknown detector"):
        resolve_labels(["bird"], detector="yolo")


# ---------------------------------------------------------------- local detector, real model, real photos


@pytest.fixture
def local(ws):
    return LocalImageNetDetector(ws)


def test_local_clothing_on_products_not_on_packages(local, samples):
    wanted = ["clothing", "box"]
    products = local.detect_many(photos(samples, "product"), wanted=wanted)
    packages = local.detect_many(photos(samples, "package"), wanted=wanted)
    assert all(isinstance(r, dict) for r in products + packages)
    clothing_p = np.array([r["clothing"].confidence for r in products])
    clothing_k = np.array([r["clothing"].confidence for r in packages])
    box_p = np.array([r["box"].confidence for r in products])
    box_k = np.array([r["box"].confidence for r in packages])
    print(f"\nclothing: products mean {clothing_p.mean():.3f} (>= 0.8: {(clothing_p >= 0.8).sum()}/{len(clothing_p)}), "
          f"packages mean {clothing_k.mean():.3f} max {clothing_k.max():.3f}; "
          f"box: products mean {box_p.mean():.3f}, packages mean {box_k.mean():.3f}")
    assert (clothing_p >= 0.8).mean() >= 0.8  # most garment photos pass the default threshold...
    assert clothing_k.max() < 0.8  # ...and no package photo does
    assert box_k.mean() > box_p.mean() + 0.2  # parcels look more like boxes than garments do
    best = max(products, key=lambda r: r["clothing"].confidence)["clothing"]
    assert best.calibrated and best.raw is not None and best.raw < best.confidence
    assert best.matched and set(best.matched) <= set(local.hierarchy.class_names("clothing"))
    assert best.boxes == []


def test_local_person_and_its_synonyms_come_from_the_person_models_with_boxes(local, samples):
    people = photos(samples, "half_length")[:3] + photos(samples, "full_length")[:3]
    others = photos(samples, "package")[:3] + photos(samples, "product")[:3]
    wanted = ["person", "woman", "Children", "bird"]
    found = local.detect_many(people + others, wanted=wanted)
    for f in found[:6]:
        det = f["person"]
        assert det.confidence >= 0.8 and det.calibrated and 0.5 <= det.raw <= 1
        assert det.boxes and {b["part"] for b in det.boxes} <= {"body", "face"}
        for b in det.boxes:
            assert 0 <= b["left"] < b["left"] + b["width"] <= 1 and 0 <= b["top"] < b["top"] + b["height"] <= 1
        assert f["woman"].confidence == f["Children"].confidence == det.confidence  # synonyms, same evidence
        assert not f["bird"].calibrated and f["bird"].raw is None  # any other label: the ImageNet sum as before
    for f in found[6:]:
        assert f["person"].confidence < 0.8 and f["person"].raw < 0.6  # a garment on a plain ground: at most 0.58


def test_local_shoe_is_also_looked_for_on_the_feet(local, samples):
    """Full-length shots of people in shoes: the crop around the feet of the person found is classified too, and
    the shoe's box is that crop when it scores best."""
    full = sorted((samples / "full_length").glob("ootd_dresscode_*.jpg"))
    found = local.detect_many([p.read_bytes() for p in full], wanted=["shoe"])
    raws = [f["shoe"].raw for f in found]
    whole = local.probabilities([local.prepare(p.read_bytes()) for p in full])[:, local.class_ids("shoe")].sum(axis=1)
    print(f"\nshoe on {len(full)} full-length shots: raw {np.round(raws, 3)}, whole image only {np.round(whole, 3)}")
    assert all(r >= w - 1e-9 for r, w in zip(raws, whole))  # the whole image is one of the views
    assert sum(r > 2 * w for r, w in zip(raws, whole)) >= len(full) // 2  # the feet add most of the evidence
    boxed = [f["shoe"] for f in found if f["shoe"].boxes]
    assert boxed and all(b.boxes[0]["top"] > 0.5 for b in boxed)  # feet are at the bottom of these shots


def test_local_generic_confidence_is_the_sum_over_the_classes_under_the_label(local, samples):
    data = photos(samples, "product")[0]
    prepared = local.prepare(data)
    probs = local.probabilities([prepared])[0]
    assert probs.shape == (1000,) and abs(probs.sum() - 1) < 1e-6
    found = local.detect(data=data, uri="x.jpg", wanted=["garment", "dog", "clothing"])
    for label in ("garment", "dog"):
        det = found[label]
        assert isinstance(det, Detection) and det.name == label and not det.calibrated
        assert det.confidence == pytest.approx(probs[local.hierarchy.class_ids(label)].sum(), abs=1e-6)
    assert found["clothing"].raw == pytest.approx(probs[local.class_ids("clothing")].sum(), abs=1e-6)
    w, h = Image.open(io.BytesIO(data)).size
    assert found["garment"].image_size == (w, h)


def test_local_reads_the_uri_and_reports_bad_images_in_place(local, samples, tmp_path):
    files = sorted((samples / "product").iterdir())[:3]
    by_uri = local.detect(data=None, uri=str(files[0]), wanted=["clothing"])
    datas = [f.read_bytes() for f in files]
    mixed = local.detect_many([datas[0], b"not an image", datas[1], jpeg_bytes()[:40], datas[2]], wanted=["clothing"])
    assert isinstance(mixed[1], ImageError) and isinstance(mixed[3], ImageError)
    assert mixed[0]["clothing"].confidence == pytest.approx(by_uri["clothing"].confidence, abs=1e-5)
    for got, data in zip([mixed[0], mixed[2], mixed[4]], datas):
        alone = local.detect(data=data, uri="x", wanted=["clothing"])
        assert got["clothing"].confidence == pytest.approx(alone["clothing"].confidence, abs=1e-5)
    with pytest.raises(NotFound):
        local.detect(data=None, uri=str(tmp_path / "missing.jpg"), wanted=["clothing"])
    with pytest.raises(InvalidInput, match="did you mean: bird"):
        local.detect_many(datas, wanted=["birb"])


def test_local_throughput_is_reported(local, samples):
    datas = [d for folder in ("product", "package", "half_length", "full_length") for d in photos(samples, folder)]
    local.detect_many(datas[:8], wanted=["clothing"])  # warm up
    start = time.perf_counter()
    found = local.detect_many(datas, wanted=["clothing", "person", "dog"])
    rate = len(datas) / (time.perf_counter() - start)
    print(f"\nlocal detector: {len(datas)} sample photos at {rate:.0f} images/s on {os.cpu_count()} cores")
    assert len(found) == len(datas)


# ---------------------------------------------------------------- Rekognition, through Stubber


def rekognition_client():
    return boto3.session.Session().client("rekognition", region_name="us-east-1",
                                          aws_access_key_id="test", aws_secret_access_key="test")


def label(name, confidence, *, aliases=(), parents=(), categories=("Apparel and Accessories",), instances=()):
    return {"Name": name, "Confidence": confidence,
            "Instances": [{"BoundingBox": box, "Confidence": conf} for box, conf in instances],
            "Parents": [{"Name": p} for p in parents], "Aliases": [{"Name": a} for a in aliases],
            "Categories": [{"Name": c} for c in categories]}


RESPONSE = {
    "Labels": [
        label("Person", 99.2, aliases=("Human",), categories=("Person Description",),
              instances=[({"Width": 0.52, "Height": 0.97, "Left": -0.031, "Top": 0.04}, 99.2),
                         ({"Width": 0.3, "Height": 0.5, "Left": 0.85, "Top": 0.6}, 88.0)]),
        label("Clothing", 97.5, aliases=("Apparel",)),
        label("Shoe", 91.0, parents=("Clothing", "Footwear"),
              instances=[({"Width": 0.2, "Height": 0.1, "Left": 0.1, "Top": 0.88}, 91.0)]),
        label("Coat", 72.1, parents=("Clothing",)),
    ],
    "LabelModelVersion": "3.0",
}


@pytest.fixture
def stubbed():
    client = rekognition_client()
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def sent_images(client) -> list[dict]:
    """The Image parameter of every DetectLabels request, as the client serialises it."""
    seen: list[dict] = []
    client.meta.events.register("provide-client-params.rekognition.DetectLabels",
                                lambda params, **_: seen.append(params["Image"]))
    return seen


def test_rekognition_bytes_names_aliases_parents_and_clamped_boxes(stubbed):
    client, stub = stubbed
    data = jpeg_bytes((640, 480))
    stub.add_response("detect_labels", RESPONSE,
                      {"Image": {"Bytes": data}, "MaxLabels": 100, "MinConfidence": 40.0})
    det = RekognitionDetector(client, min_confidence=40)
    wanted = ["person", "clothing", "apparel", "footwear", "dog"]
    found = det.detect(data=data, uri="/photos/a.jpg", wanted=wanted)
    person, clothing, apparel, footwear, dog = (found[k] for k in wanted)
    assert person.confidence == pytest.approx(0.992) and person.matched == ["Person"]
    assert person.image_size == (640, 480)
    left, right = person.boxes  # negative Left clamped to 0, the part past the right edge cut off
    assert left == pytest.approx({"left": 0.0, "top": 0.04, "width": 0.489, "height": 0.96, "confidence": 0.992})
    assert right["left"] == pytest.approx(0.85) and right["width"] == pytest.approx(0.15)
    assert clothing.confidence == pytest.approx(0.975)  # its Name, and the Parent of Shoe and Coat
    assert clothing.matched == ["Clothing", "Shoe", "Coat"] and len(clothing.boxes) == 1
    assert apparel.confidence == pytest.approx(0.975) and apparel.matched == ["Clothing"]  # an Alias
    assert footwear.confidence == pytest.approx(0.91) and footwear.matched == ["Shoe"]
    assert footwear.boxes == [pytest.approx({"left": 0.1, "top": 0.88, "width": 0.2, "height": 0.1, "confidence": 0.91})]
    assert dog.confidence == 0.0 and dog.matched == [] and dog.boxes == []
    assert det.calls == 1 and det.cost_per_image == 0.001


def test_rekognition_reads_s3_sources_itself_unless_on_another_endpoint(stubbed):
    client, stub = stubbed
    stub.add_response("detect_labels", RESPONSE, {"Image": {"S3Object": {"Bucket": "shop", "Name": "in/robin 1.jpg"}},
                                                  "MaxLabels": 100, "MinConfidence": 50.0})
    found = RekognitionDetector(client).detect(data=None, uri="s3://shop/in/robin 1.jpg", wanted=["Human"])
    assert found["Human"].confidence == pytest.approx(0.992) and found["Human"].image_size is None
    # the same object on an S3-compatible server (endpoint override): Rekognition cannot reach it, bytes go
    data = jpeg_bytes()
    stub.add_response("detect_labels", RESPONSE, {"Image": {"Bytes": data}, "MaxLabels": 100, "MinConfidence": 50.0})
    det = RekognitionDetector(client, s3_endpoint_url="http://127.0.0.1:8333")
    assert det.detect(data=data, uri="s3://shop/in/a.jpg", wanted=["person"])["person"].image_size == (64, 48)


def test_rekognition_falls_back_to_bytes_when_it_cannot_read_the_object(stubbed, s3_bucket):
    client, stub = stubbed
    store, bucket = s3_bucket
    uri = f"s3://{bucket}/in/a.jpg"
    data = jpeg_bytes((320, 200))
    store.write(uri, data)
    try:
        stub.add_client_error("detect_labels", "InvalidS3ObjectException", "Unable to get object metadata from S3. "
                              "Check object key, region and/or access permissions.", 400,
                              expected_params={"Image": {"S3Object": {"Bucket": bucket, "Name": "in/a.jpg"}},
                                               "MaxLabels": 100, "MinConfidence": 50.0})
        stub.add_response("detect_labels", RESPONSE, {"Image": {"Bytes": data}, "MaxLabels": 100, "MinConfidence": 50.0})
        found = RekognitionDetector(client, store=store).detect(data=None, uri=uri, wanted=["person"])
        assert found["person"].confidence == pytest.approx(0.992) and found["person"].image_size == (320, 200)
    finally:
        store.client.delete_object(Bucket=bucket, Key="in/a.jpg")


def big_jpeg() -> bytes:
    noise = np.random.default_rng(0).integers(0, 256, (2400, 3200, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="JPEG", quality=95)
    return out.getvalue()


def test_rekognition_resizes_images_over_5_mb(stubbed):
    client, stub = stubbed
    data = big_jpeg()
    assert len(data) > ld.REKOGNITION_MAX_BYTES
    seen = sent_images(client)
    stub.add_response("detect_labels", RESPONSE, {"Image": {"Bytes": ANY}, "MaxLabels": 100, "MinConfidence": 50.0})
    found = RekognitionDetector(client).detect(data=data, uri="big.jpg", wanted=["person"])
    sent = seen[0]["Bytes"]
    small = Image.open(io.BytesIO(sent))
    print(f"\n{len(data):,} bytes 3200x2400 sent as {len(sent):,} bytes {small.size[0]}x{small.size[1]}")
    assert len(sent) <= ld.REKOGNITION_MAX_BYTES and small.format == "JPEG"
    assert small.size[0] / small.size[1] == pytest.approx(4 / 3, abs=0.01)
    assert found["person"].image_size == (3200, 2400)  # boxes are ratios of the original


def test_rekognition_gets_jpeg_for_other_formats():
    out = io.BytesIO()
    Image.new("RGB", (120, 90), (10, 200, 10)).save(out, format="WEBP")
    fitted = ld._fit_for_rekognition(out.getvalue())
    assert Image.open(io.BytesIO(fitted)).format == "JPEG"
    small = jpeg_bytes()
    assert ld._fit_for_rekognition(small) is small


def test_rekognition_retries_throttling_with_backoff(stubbed):
    client, stub = stubbed
    for code in ("ThrottlingException", "ProvisionedThroughputExceededException", "ThrottlingException"):
        stub.add_client_error("detect_labels", code, "Rate exceeded", 400)
    stub.add_response("detect_labels", RESPONSE)
    delays: list[float] = []
    det = RekognitionDetector(client, sleep=delays.append, backoff=0.5)
    found = det.detect(data=jpeg_bytes(), uri="a.jpg", wanted=["person"])
    assert found["person"].confidence == pytest.approx(0.992)
    assert len(delays) == 3 and det.calls == 4
    for attempt, delay in enumerate(delays):  # about 0.5 * 2**attempt, with jitter in [half, full]
        assert 0.25 * 2**attempt <= delay <= 0.5 * 2**attempt


def test_rekognition_gives_up_after_the_last_attempt(stubbed):
    client, stub = stubbed
    for _ in range(3):
        stub.add_client_error("detect_labels", "ThrottlingException", "Rate exceeded", 400)
    delays: list[float] = []
    with pytest.raises(ExternalServiceError, match="still throttling after 3 attempts"):
        RekognitionDetector(client, sleep=delays.append, max_attempts=3).detect(data=jpeg_bytes(), uri="a.jpg",
                                                                                 wanted=["person"])
    assert len(delays) == 2


def test_rekognition_access_denied_is_a_clear_service_error(stubbed):
    client, stub = stubbed
    stub.add_client_error("detect_labels", "AccessDeniedException",
                          "User: arn:aws:iam::123456789012:user/x is not authorized to perform: rekognition:DetectLabels",
                          400)
    delays: list[float] = []
    with pytest.raises(CloudAccessError) as err:
        RekognitionDetector(client, sleep=delays.append).detect(data=None, uri="s3://shop/a.jpg", wanted=["person"])
    print(f"\n{err.value}")
    assert "refused access" in str(err.value) and "rekognition:DetectLabels permission" in str(err.value)
    assert "s3:GetObject on bucket shop" in str(err.value)
    assert delays == []  # not retried


def test_rekognition_bad_image_fails_alone_in_a_batch(stubbed):
    client, stub = stubbed
    stub.add_client_error("detect_labels", "InvalidImageFormatException", "Request has unsupported image format", 400)
    stub.add_response("detect_labels", RESPONSE)
    det = RekognitionDetector(client)
    found = det.detect_many([jpeg_bytes(), b"GIF89a not really", jpeg_bytes()], wanted=["person"],
                            uris=["a.jpg", "b.gif", "c.jpg"])
    assert isinstance(found[0], ImageError) and "a.jpg" in str(found[0]) and "InvalidImageFormat" in str(found[0])
    assert isinstance(found[1], ImageError) and det.calls == 2  # not an image: no request sent
    assert found[2]["person"].confidence == pytest.approx(0.992)


def test_rekognition_unreadable_source(stubbed, tmp_path):
    client, _ = stubbed
    with pytest.raises(NotFound):
        RekognitionDetector(client).detect(data=None, uri=str(tmp_path / "gone.jpg"), wanted=["person"])
    assert RekognitionDetector(client).detect_many([], wanted=["person"]) == []


def test_rekognition_source_without_permission(stubbed, tmp_path):
    client, _ = stubbed
    denied = tmp_path / "denied.jpg"
    denied.write_bytes(jpeg_bytes())
    denied.chmod(0)
    if os.access(denied, os.R_OK):
        pytest.skip("running as root: file permissions are not enforced")
    with pytest.raises(StorageError, match="permission denied"):
        RekognitionDetector(client).detect(data=None, uri=str(denied), wanted=["person"])


def test_rekognition_without_region_says_so(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    with pytest.raises(ExternalServiceError, match="needs an AWS region"):
        _ = RekognitionDetector().client
    det = RekognitionDetector.from_settings({"rekognition_region": "eu-west-1", "s3_endpoint_url": "http://x:1"})
    assert det.client.meta.region_name == "eu-west-1" and det.s3_endpoint_url == "http://x:1"
    with pytest.raises(InvalidInput):
        RekognitionDetector(min_confidence=120)


def test_make_detector(ws):
    assert isinstance(ld.make_detector("local", ws=ws), LocalImageNetDetector)
    assert isinstance(ld.make_detector("rekognition", settings={"rekognition_region": "us-east-1"}), RekognitionDetector)
    with pytest.raises(InvalidInput, match="unknown detector"):
        ld.make_detector("yolo")

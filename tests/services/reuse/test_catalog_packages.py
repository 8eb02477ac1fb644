"""A customer's own photo of a printed package is not a copy of the catalog's photo of it, while edited copies of
that catalog photo still are. The package's print lines up under one homography and agrees a little (what the
check between reviews accepts); a catalog copy confirmed by keypoints alone must agree more
(``catalog_checks.CATALOG_KEYPOINT_AGREE``). Real photos: ``tests/data/catalog/packages`` (Grocery Store Dataset,
MIT; origin in ``tests/data/catalog/README.md``)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from PIL import Image

from services.core.config import get_settings
from services.core.images import decode
from services.core.jobs import create_job, get_job, run_job
from services.core.storage import ObjectStore
from services.models.features import FeatureExtractor
from services.reuse import catalog
from services.reuse.catalog_checks import CATALOG_KEYPOINT_AGREE, CatalogIndex, check_against_catalog
from services.reuse.near_copies import ORB_SIDE, compare
from tests.services.reuse.test_perspective import _tilt

DATA = Path(__file__).resolve().parents[2] / "data" / "catalog" / "packages"
# the review photo, and the catalog photo of the same package it lines up with (taken on another day, elsewhere)
PAIRS = {"Arla-Ecological-Sour-Cream_test_014.jpg": "Arla-Ecological-Sour-Cream/train_005.jpg",
         "God-Morgon-Orange-Juice_test_005.jpg": "God-Morgon-Orange-Juice/train_002.jpg"}


@pytest.fixture
def checked(ws, db, tmp_path):
    """check(path, product) -> the catalog flags of a photo, against the imported two-product catalog."""
    shop = tmp_path / "shop"
    shutil.copytree(DATA / "catalog", shop)
    job_id = create_job(db, kind=catalog.KIND, params={"source": str(shop), "manifest": ""}, actor="cli:admin")
    run_job(ws, job_id=job_id)
    assert get_job(db, job_id)["state"] == "done"
    index = CatalogIndex()
    index.sync(db)
    max_pixels = int(get_settings(db)["max_pixels"])
    store = ObjectStore(roots=[str(tmp_path.resolve())])
    extractor = FeatureExtractor.shared(ws.models_dir)

    def check(path: Path, product: str) -> list[dict]:
        data = path.read_bytes()
        vector = extractor.embed([FeatureExtractor.decode(data, max_pixels=max_pixels)])[0]
        return check_against_catalog(index=index, sha256=hashlib.sha256(data).hexdigest(),
                                     picture=decode(data, max_side=ORB_SIDE, max_pixels=max_pixels), vector=vector,
                                     product=product, store=store, max_pixels=max_pixels)

    check.shop = shop  # type: ignore[attr-defined]
    return check


@pytest.mark.parametrize("review", sorted(PAIRS))
def test_a_customers_photo_of_the_same_package_is_not_a_copy(checked, review):
    photo = DATA / "reviews" / review
    product = review.split("_test_")[0]
    # between reviews it would be taken for a copy: the print lines up and agrees a little
    between = compare(Image.open(checked.shop / PAIRS[review]), Image.open(photo))
    assert between.near and between.how == "keypoints" and between.agreement < CATALOG_KEYPOINT_AGREE
    assert [f for f in checked(photo, product) if f["kind"] == "copy"] == []


@pytest.mark.parametrize("edit", ["crop", "tilt"])
def test_edited_copies_of_the_same_catalog_photos_still_are(checked, tmp_path, edit):
    for name in sorted(PAIRS.values()):
        original = Image.open(checked.shop / name).convert("RGB")
        w, h = original.size
        copy = (original.crop((w // 10, h // 10, w - w // 10, h - h // 10)) if edit == "crop"
                else _tilt(original, 0.15))
        path = tmp_path / f"{edit}_{name.replace('/', '_')}"
        copy.save(path, "JPEG", quality=90)
        flags = checked(path, name.split("/")[0])
        assert [(f["kind"], f["detail"].count(name)) for f in flags] == [("copy", 1)], (edit, name, flags)

"""The blur job refuses a destination inside its source (or the reverse) however either is spelled (issue 19)."""

from __future__ import annotations

import os

import pytest

from services.core.errors import InvalidInput
from services.core.locations import canonical_location, overlaps
from services.faces import job as face_blur


@pytest.mark.parametrize("destination", [
    "{src}/out", "{src}/./out", "{src}//out", "{src}/", "{src}/sub/../out", "file://{src}/out", "file:///{src}/out",
    "file://localhost{src}/out", "{link}/out", "{parent}",
])
def test_a_destination_inside_the_source_is_refused_however_spelled(tmp_path, destination):
    src = tmp_path / "photos"
    src.mkdir()
    (tmp_path / "link").symlink_to(src)
    spelled = destination.format(src=src, link=tmp_path / "link", parent=tmp_path)
    with pytest.raises(InvalidInput, match="inside"):
        face_blur.validate_params({"source": str(src), "destination": spelled})


def test_a_relative_destination_inside_the_source_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    for source, destination in (("./photos", "photos/out"), ("photos", "./photos//out"),
                                (str(tmp_path / "photos"), "photos/x")):
        with pytest.raises(InvalidInput, match="inside"):
            face_blur.validate_params({"source": source, "destination": destination})


@pytest.mark.parametrize(("source", "destination"), [
    ("s3://b/photos", "s3://b/photos//out"), ("s3://b/photos", "s3://b/photos/./out"), ("s3://b/photos/", "s3://b//photos"),
    ("s3://b/photos", "s3://b/x/../photos/out"), ("s3://b", "s3://b/out"), ("s3://b/photos/out", "s3://b/photos"),
])
def test_an_s3_destination_inside_the_source_is_refused_however_spelled(source, destination):
    with pytest.raises(InvalidInput, match="inside"):
        face_blur.validate_params({"source": source, "destination": destination})


def test_separate_places_are_allowed(tmp_path):
    assert not overlaps(str(tmp_path / "photos"), str(tmp_path / "photos-blurred"))
    assert not overlaps("s3://b/photos", "s3://b/photos-blurred")
    assert not overlaps("s3://b/photos", "s3://other/photos")
    assert not overlaps(str(tmp_path / "photos"), "s3://b" + str(tmp_path / "photos"))
    clean = face_blur.validate_params({"source": str(tmp_path / "a"), "destination": f"file://{tmp_path}/b"})
    assert clean["destination"] == f"file://{tmp_path}/b"  # kept as given; only the comparison normalises


def test_canonical_locations():
    assert canonical_location("s3://b//p/./q/") == ("s3://b", "/p/q")
    assert canonical_location("s3://b") == ("s3://b", "/")
    assert canonical_location("file:///tmp//x/") == ("file", os.path.realpath("/tmp/x"))
    for bad in ("", "http://host/x", "file://elsewhere/x", "s3:///key"):
        with pytest.raises(InvalidInput):
            canonical_location(bad)

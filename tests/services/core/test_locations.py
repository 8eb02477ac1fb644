"""Where two spellings of a folder or S3 prefix point (services.core.locations), case by case: pure, no workspace.

The paths are under a folder whose name holds none of the words the errors use, so a ``match=`` cannot be
satisfied by the path echoed in a message."""

from __future__ import annotations

import os

import pytest

from services.core.errors import InvalidInput
from services.core.locations import canonical_location, overlaps


@pytest.fixture
def root(tmp_path_factory):
    base = tmp_path_factory.mktemp("loc")
    (base / "photos").mkdir()
    (base / "alias").symlink_to(base / "photos")
    return base


def test_local_spellings_name_one_folder(root, monkeypatch):
    real = os.path.realpath(root / "photos")
    for spelled in (f"{root}/photos", f"{root}//photos/", f"{root}/./photos", f"{root}/x/../photos", f"{root}/alias",
                    f"file://{root}/photos", f"file://localhost{root}/photos", f"FILE://{root}/photos",
                    f"file://{root}/pho%74os", f"  {root}/photos  "):
        assert canonical_location(spelled) == ("file", real), spelled
    assert canonical_location(f"/{root}//photos") == ("file", real)  # two leading slashes: one folder still
    monkeypatch.chdir(root)
    assert canonical_location("photos") == ("file", real)
    monkeypatch.setenv("HOME", str(root))
    assert canonical_location("~/photos") == ("file", real)


def test_s3_spellings_name_one_prefix():
    for spelled in ("s3://b/p/q", "s3://b//p/q", "s3://b/p/./q/", "s3://b/p/x/../q", "s3://b/p///q//"):
        assert canonical_location(spelled) == ("s3://b", "/p/q"), spelled
    assert canonical_location("s3://b") == ("s3://b", "/") == canonical_location("s3://b//")


@pytest.mark.parametrize(("bad", "message"), [
    ("", "empty location: give a folder path or an s3://bucket/prefix"),
    ("   ", "empty location: give a folder path or an s3://bucket/prefix"),
    (None, "empty location: give a folder path or an s3://bucket/prefix"),
    ("file://", "empty location: give a folder path or an s3://bucket/prefix"),
    ("file://elsewhere/x", "unsupported file URL 'file://elsewhere/x': only local files (file:///path)"),
    ("file://LOCALHOST.example/x", "unsupported file URL 'file://LOCALHOST.example/x': only local files (file:///path)"),
    ("http://host/x", "unsupported location 'http://host/x': use a local path, a file:// URL or s3://bucket/prefix"),
    ("HTTPS://host/x", "unsupported location 'HTTPS://host/x': use a local path, a file:// URL or s3://bucket/prefix"),
    ("gs://b/x", "unsupported location 'gs://b/x': use a local path, a file:// URL or s3://bucket/prefix"),
])
def test_bad_locations_say_what_is_wrong(bad, message):
    with pytest.raises(InvalidInput) as caught:
        canonical_location(bad)
    assert str(caught.value) == message


def test_inside_same_or_apart(root):
    photos = f"{root}/photos"
    assert overlaps(photos, photos) and overlaps(photos, f"{root}/alias/")  # the same folder
    assert overlaps(photos, f"{root}/photos/out") and overlaps(f"{root}/photos/out", photos)  # either way round
    assert overlaps("/", photos) and overlaps(photos, "file:///")  # the root holds everything
    assert not overlaps(photos, f"{root}/photos-blurred") and not overlaps(f"{root}/photos-blurred", photos)
    assert not overlaps(f"{root}/photos/a", f"{root}/photos/b")
    assert overlaps("s3://b/p", "s3://b/p/q/") and overlaps("s3://b", "s3://b/anything")
    assert not overlaps("s3://b/p", "s3://b/pq") and not overlaps("s3://b/p", "s3://c/p")
    assert not overlaps(photos, "s3://b" + photos)  # a local folder and an S3 prefix never overlap

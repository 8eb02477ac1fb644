"""services.core.storage against the local disk and a real S3 server (SeaweedFS on loopback, tests.conftest_s3)."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest
from botocore.stub import Stubber

from services.core.errors import CloudAccessError, InvalidInput, NotFound, StorageAccessError, StorageError
from services.core.storage import ObjectInfo, ObjectStore, is_s3, join, split_s3
from tests.conftest_s3 import S3Server
from tests.threads import run_at_once

IMAGES = (".jpg", ".jpeg", ".png")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-access-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


# --------------------------------------------------------------------------------------------------
# URIs


def test_uri_helpers(tmp_path: Path) -> None:
    assert is_s3("s3://b/k")
    assert is_s3("S3://b/k")
    assert not is_s3("/data/s3/x")
    assert not is_s3("file:///x")
    assert split_s3("s3://bucket/a/b.jpg") == ("bucket", "a/b.jpg")
    assert split_s3("s3://bucket") == ("bucket", "")
    for bad in ("s3://", "s3:///key", "/local/path"):
        with pytest.raises(InvalidInput):
            split_s3(bad)
    assert join("s3://b", "x/y.jpg") == "s3://b/x/y.jpg"
    assert join("s3://b/", "x.jpg") == "s3://b/x.jpg"
    assert join("s3://b/pre/", "x.jpg") == join("s3://b/pre", "x.jpg") == "s3://b/pre/x.jpg"
    assert join(str(tmp_path), "a/b.jpg") == str(tmp_path / "a" / "b.jpg")
    assert join(f"file://{tmp_path}", "b.jpg") == str(tmp_path / "b.jpg")
    for bad_key in ("", "../etc/passwd", "a/../../b"):
        with pytest.raises(InvalidInput):
            join(str(tmp_path), bad_key)


def test_unsupported_scheme_is_invalid_input() -> None:
    store = ObjectStore()
    with pytest.raises(InvalidInput, match="gs://b/k"):
        store.read("gs://b/k")
    with pytest.raises(InvalidInput, match="only local files"):
        store.read("file://otherhost/x.jpg")


# --------------------------------------------------------------------------------------------------
# local files


def test_local_write_read_exists_size(tmp_path: Path) -> None:
    store = ObjectStore()
    uri = str(tmp_path / "new" / "deeper" / "a.bin")
    assert not store.exists(uri)
    store.write(uri, b"hello")
    assert store.read(uri) == b"hello"
    assert store.exists(uri)
    assert store.size(uri) == 5
    store.write(uri, b"replaced!")
    assert store.read(uri) == b"replaced!"
    assert os.listdir(tmp_path / "new" / "deeper") == ["a.bin"]  # no temp files left behind


def test_local_file_url_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = ObjectStore()
    store.write("rel/a b.txt", b"x")
    assert store.read(f"file://{tmp_path}/rel/a%20b.txt") == b"x"
    assert store.read(f"file://localhost{tmp_path}/rel/a%20b.txt") == b"x"
    assert [o.key for o in store.list("rel")] == ["a b.txt"]


def test_local_list_sorted_filtered_skips_hidden(tmp_path: Path) -> None:
    store = ObjectStore()
    for rel in (
        "b.JPG",
        "a.png",
        "a/x.jpg",
        "a/.hidden.jpg",
        ".git/y.jpg",
        "notes.txt",
        "z/deep/q.jpeg",
        "a-b.jpg",
    ):
        store.write(str(tmp_path / rel), b"12345")
    everything = list(store.list(str(tmp_path)))
    # S3 key order: '-' < '.' < '/', so a folder's files sort exactly as S3 would list them.
    assert [o.key for o in everything] == [
        "a-b.jpg",
        "a.png",
        "a/x.jpg",
        "b.JPG",
        "notes.txt",
        "z/deep/q.jpeg",
    ]
    images = list(store.list(str(tmp_path), suffixes=IMAGES))
    assert [o.key for o in images] == ["a-b.jpg", "a.png", "a/x.jpg", "b.JPG", "z/deep/q.jpeg"]
    assert images[2] == ObjectInfo(uri=str(tmp_path / "a" / "x.jpg"), key="a/x.jpg", size=5)
    flat = list(store.list(str(tmp_path), suffixes=IMAGES, recursive=False))
    assert [o.key for o in flat] == ["a-b.jpg", "a.png", "b.JPG"]
    assert [o.key for o in store.list(str(tmp_path / "a"))] == ["x.jpg"]


def test_local_list_missing_folder_or_file(tmp_path: Path) -> None:
    store = ObjectStore()
    with pytest.raises(NotFound, match="folder not found"):
        store.list(str(tmp_path / "nope"))
    (tmp_path / "f.jpg").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="not a folder"):
        store.list(str(tmp_path / "f.jpg"))


def test_local_copy(tmp_path: Path) -> None:
    store = ObjectStore()
    store.write(str(tmp_path / "src.jpg"), b"photo")
    store.copy(str(tmp_path / "src.jpg"), str(tmp_path / "out" / "dst.jpg"))
    assert (tmp_path / "out" / "dst.jpg").read_bytes() == b"photo"
    with pytest.raises(NotFound):
        store.copy(str(tmp_path / "missing.jpg"), str(tmp_path / "x.jpg"))


def test_local_missing_file_is_not_found(tmp_path: Path) -> None:
    store = ObjectStore()
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(NotFound, match=re.escape(f"not found: {missing}")):
        store.read(missing)
    with pytest.raises(NotFound, match=r"missing\.jpg"):
        store.size(missing)
    assert store.exists(missing) is False


def test_local_directory_as_file_is_invalid_input(tmp_path: Path) -> None:
    store = ObjectStore()
    (tmp_path / "d").mkdir()
    for call in (store.read, store.size, store.exists, lambda u: store.write(u, b"x")):
        with pytest.raises(InvalidInput, match="is a folder"):
            call(str(tmp_path / "d"))
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(InvalidInput, match="is a file, not a folder"):
        store.write(str(tmp_path / "f" / "child.jpg"), b"x")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file permissions")
def test_local_permission_error_is_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "secret.jpg"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(StorageError, match="permission denied"):
        ObjectStore().read(str(path))


# --------------------------------------------------------------------------------------------------
# real S3 (SeaweedFS)


def test_s3_write_read_exists_size(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    uri = f"s3://{bucket}/photos/a.jpg"
    assert store.exists(uri) is False
    store.write(uri, b"jpeg-bytes")
    assert store.read(uri) == b"jpeg-bytes"
    assert store.exists(uri) is True
    assert store.size(uri) == 10
    with pytest.raises(InvalidInput, match="not an object"):
        store.read(f"s3://{bucket}/photos/")


def test_s3_list_prefix_pagination_and_filters(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    for i in range(25):
        store.write(f"s3://{bucket}/p/img{i:02d}.jpg", b"x" * i)
    for key in ("p/sub/deep.PNG", "p/notes.txt", "px/not-in-prefix.jpg", "other/o.jpg"):
        store.write(f"s3://{bucket}/{key}", b"y")
    store.client.put_object(Bucket=bucket, Key="p/folder/", Body=b"")  # a console-made "folder" marker
    calls: list[str] = []
    store.client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append("list"))

    objects = list(store.list(f"s3://{bucket}/p", suffixes=IMAGES, page_size=10))
    assert len(calls) == 3  # 28 keys under p/ at 10 a page
    expected = [f"img{i:02d}.jpg" for i in range(25)] + ["sub/deep.PNG"]
    assert [o.key for o in objects] == expected
    assert objects[3] == ObjectInfo(uri=f"s3://{bucket}/p/img03.jpg", key="img03.jpg", size=3)
    assert [o.key for o in store.list(f"s3://{bucket}/p/", recursive=False, page_size=10)] == [
        *expected[:25],
        "notes.txt",
    ]
    assert list(store.list(f"s3://{bucket}/empty-prefix")) == []


def test_s3_list_whole_bucket(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    for key in ("b/2.jpg", "a.jpg", "b/1.jpg"):
        store.write(f"s3://{bucket}/{key}", b"z")
    assert [(o.key, o.uri) for o in store.list(f"s3://{bucket}")] == [
        ("a.jpg", f"s3://{bucket}/a.jpg"),
        ("b/1.jpg", f"s3://{bucket}/b/1.jpg"),
        ("b/2.jpg", f"s3://{bucket}/b/2.jpg"),
    ]


def test_s3_and_local_copies(s3_bucket: tuple[ObjectStore, str], tmp_path: Path) -> None:
    store, bucket = s3_bucket
    store.write(f"s3://{bucket}/src.jpg", b"original")
    store.copy(f"s3://{bucket}/src.jpg", f"s3://{bucket}/copies/dst.jpg")
    assert store.read(f"s3://{bucket}/copies/dst.jpg") == b"original"
    store.copy(f"s3://{bucket}/src.jpg", str(tmp_path / "down" / "local.jpg"))
    assert (tmp_path / "down" / "local.jpg").read_bytes() == b"original"
    (tmp_path / "up.jpg").write_bytes(b"from disk")
    store.copy(str(tmp_path / "up.jpg"), f"s3://{bucket}/up/up.jpg")
    assert store.read(f"s3://{bucket}/up/up.jpg") == b"from disk"
    with pytest.raises(NotFound, match=re.escape(f"s3://{bucket}/missing.jpg")):
        store.copy(f"s3://{bucket}/missing.jpg", f"s3://{bucket}/x.jpg")


def test_s3_missing_key_is_not_found(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    uri = f"s3://{bucket}/nope.jpg"
    with pytest.raises(NotFound, match=re.escape(f"object not found: {uri}")):
        store.read(uri)
    with pytest.raises(NotFound, match=re.escape(uri)):
        store.size(uri)


def test_s3_missing_bucket_is_not_found(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, bucket = s3_bucket
    missing = f"{bucket}-missing"
    with pytest.raises(NotFound, match=f"bucket not found: {missing}"):
        store.read(f"s3://{missing}/a.jpg")
    with pytest.raises(NotFound, match=f"bucket not found: {missing}"):
        store.list(f"s3://{missing}/photos")
    assert store.exists(f"s3://{missing}/a.jpg") is False


def test_s3_bad_bucket_name_is_invalid_input(s3_bucket: tuple[ObjectStore, str]) -> None:
    store, _ = s3_bucket
    with pytest.raises(InvalidInput, match="s3://b!d/k"):
        store.read("s3://b!d/k")


def test_client_is_created_once_across_threads(s3_server: S3Server) -> None:
    store = ObjectStore(endpoint_url=s3_server.endpoint_url)
    seen = run_at_once([lambda: store.client] * 8)
    assert len(seen) == 8 and seen[0] is not None
    assert all(c is seen[0] for c in seen)


# --------------------------------------------------------------------------------------------------
# failures that need no server


def test_dead_endpoint_is_storage_error_quickly(fake_credentials: None) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = ObjectStore(endpoint_url=endpoint, connect_timeout=0.5, read_timeout=0.5, max_attempts=1)
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot reach the S3 endpoint") as info:
        store.read("s3://bucket/a.jpg")
    assert time.monotonic() - started < 5
    assert endpoint in str(info.value)
    assert "s3://bucket/a.jpg" in str(info.value)
    assert "endpoint_url" in str(info.value)


def test_silent_endpoint_read_timeout_is_storage_error(fake_credentials: None) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # never accepts: the kernel completes the handshake, then nothing answers
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        store = ObjectStore(endpoint_url=endpoint, connect_timeout=0.5, read_timeout=0.5, max_attempts=1)
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"cannot reach the S3 endpoint .*[Rr]ead timeout"):
            store.read("s3://bucket/a.jpg")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("code", ["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"])
def test_access_denied_is_a_cloud_access_and_storage_error(fake_credentials: None, code: str) -> None:
    store = ObjectStore(endpoint_url=f"http://127.0.0.1:{_closed_port()}")
    with Stubber(store.client) as stub:
        stub.add_client_error(
            "get_object",
            service_error_code=code,
            service_message="Access Denied",
            http_status_code=403,
            expected_params={"Bucket": "bucket", "Key": "private/a.jpg"},
            response_meta={"RequestId": "4442587FB7D0A2F9", "HostId": "x"},
        )
        with pytest.raises(
            StorageAccessError, match=re.escape("access denied to s3://bucket/private/a.jpg")
        ) as info:
            store.read("s3://bucket/private/a.jpg")
        stub.assert_no_pending_responses()
    assert isinstance(info.value, CloudAccessError) and isinstance(info.value, StorageError)
    assert "credentials/policy" in str(info.value) and code in str(info.value)


def test_no_credentials_is_a_cloud_access_and_storage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.write_text("")
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    store = ObjectStore(endpoint_url=f"http://127.0.0.1:{_closed_port()}", region="us-east-1", max_attempts=1)
    with pytest.raises(StorageAccessError, match="no AWS credentials were found") as info:
        store.read("s3://bucket/a.jpg")
    assert isinstance(info.value, CloudAccessError) and isinstance(info.value, StorageError)
    message = str(info.value)
    assert "s3://bucket/a.jpg" in message
    assert "AWS_ACCESS_KEY_ID" in message
    assert "~/.aws/credentials" in message

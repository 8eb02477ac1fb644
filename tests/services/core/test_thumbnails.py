"""Display-size thumbnails: kept on disk by content and size, so another cache (another process, a restart)
reuses them instead of reading and encoding the photo again."""

from __future__ import annotations

import io
import os
import stat

from PIL import Image

from services.core.errors import ConsoleError
from services.core.thumbnails import ThumbnailCache

SHA = "ab" * 32


def jpeg(size: tuple[int, int] = (800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


def counting_reader(data: bytes):  # type: ignore[no-untyped-def]
    reads: list[str] = []

    def read(uri: str) -> bytes:
        reads.append(uri)
        return data

    return read, reads


def test_a_thumbnail_is_encoded_once_and_then_read_from_disk_by_another_cache(tmp_path):
    read, reads = counting_reader(jpeg())
    first = ThumbnailCache(reader=read, cache_dir=tmp_path / "thumbs")
    data, error = first.get("/photos/a.jpg", SHA, 160)
    assert error is None and Image.open(io.BytesIO(data)).size == (160, 120)  # at display size
    path = first.disk_path(SHA, 160)
    assert path is not None and path.read_bytes() == data
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700

    second = ThumbnailCache(reader=read, cache_dir=tmp_path / "thumbs")  # another process, or after a restart
    assert second.get("/photos/a.jpg", SHA, 160) == (data, None)
    assert second.get("/photos/a.jpg", SHA, 160) == (data, None)  # then from memory
    assert reads == ["/photos/a.jpg"]  # read and encoded once in all
    assert second.get("/photos/a.jpg", SHA, 720)[0] != data and len(reads) == 2  # another size is its own


def test_no_disk_copy_without_a_content_hash_or_a_folder_and_failures_are_not_kept(tmp_path):
    read, reads = counting_reader(jpeg())
    cache = ThumbnailCache(reader=read, cache_dir=tmp_path / "thumbs")
    assert cache.get("/photos/a.jpg", None, 160)[0] and cache.disk_path(None, 160) is None
    assert cache.disk_path("../../etc/passwd", 160) is None  # a hash, not a path
    assert not (tmp_path / "thumbs").exists()
    assert ThumbnailCache(reader=read).disk_path(SHA, 160) is None

    def broken(uri: str) -> bytes:
        raise ConsoleError("cannot read it")

    failing = ThumbnailCache(reader=broken, cache_dir=tmp_path / "thumbs")
    assert failing.get("/photos/b.jpg", "cd" * 32, 160) == (None, "cannot read it")
    assert not failing.disk_path("cd" * 32, 160).exists()

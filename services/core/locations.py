"""Where two folder or S3-prefix spellings point, compared after normalisation.

``./out``, ``out//``, ``file:///abs/out`` and a symbolic link all name one local folder; ``s3://b/p//q/`` and
``s3://b/p/./q`` one prefix. Comparing such spellings as text lets a destination hide inside its source.
"""

from __future__ import annotations

import os
import posixpath
import re
from urllib.parse import unquote, urlparse

from services.core.errors import InvalidInput
from services.core.storage import is_s3, split_s3


def canonical_location(uri: str) -> tuple[str, str]:
    """``("s3://bucket", "/normalised/prefix")`` for an S3 URI, ``("file", "/absolute/resolved/path")`` for a
    local path or ``file://`` URL (relative to the working directory, ``~`` expanded, links resolved, repeated
    slashes, ``.`` and ``..`` collapsed). Raises InvalidInput for an empty or malformed location or another
    scheme."""
    text = str(uri or "").strip()
    if not text:
        raise InvalidInput("empty location: give a folder path or an s3://bucket/prefix")
    if is_s3(text):
        bucket, prefix = split_s3(text)
        return f"s3://{bucket}", posixpath.normpath("/" + re.sub(r"/+", "/", prefix)).replace("//", "/")
    if text[:5].lower() == "file:":
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidInput(f"unsupported file URL {text!r}: only local files (file:///path)")
        text = unquote(parsed.path)
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        raise InvalidInput(f"unsupported location {text!r}: use a local path, a file:// URL or s3://bucket/prefix")
    if not text:
        raise InvalidInput("empty location: give a folder path or an s3://bucket/prefix")
    return "file", os.path.realpath(re.sub(r"/+", "/", os.path.expanduser(text)))


def overlaps(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are the same folder or prefix, or one lies inside the other, however spelled.
    Raises InvalidInput as ``canonical_location`` does."""
    (root_a, path_a), (root_b, path_b) = canonical_location(a), canonical_location(b)
    if root_a != root_b:
        return False
    inner, outer = sorted((path_a, path_b), key=len, reverse=True)
    return inner == outer or outer == "/" or inner.startswith(outer.rstrip("/") + "/")

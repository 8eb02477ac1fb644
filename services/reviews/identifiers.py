"""Identifiers shown to people: a review imported from a folder or prefix gets a neutral id, never the photo's
server path (a path such as ``.../reviews/full_length/...`` tells an inspector the answer)."""

from __future__ import annotations

import hashlib

LISTING_PREFIX = "photo-"


def listing_review_id(uri: str) -> str:
    """The review id of a photo imported from a folder or S3 prefix: ``photo-`` and 12 hex digits of its URI's
    SHA-256, the same on every import of the same photo. Raises nothing."""
    return LISTING_PREFIX + hashlib.sha256(uri.encode()).hexdigest()[:12]


def looks_like_path(text: str) -> bool:
    """Whether ``text`` reads as a file path or storage URI (slashes, ``s3:``, ``file:``). Raises nothing."""
    return "/" in text or "\\" in text or text.startswith(("s3:", "file:"))


def shown_review_id(review_id: str) -> str:
    """``review_id`` as shown in the console: a path-like id (a folder import from before neutral ids) is shown as
    the neutral id a new import would get; any other id as it is. Raises nothing."""
    return listing_review_id(review_id) if looks_like_path(review_id) else review_id

"""Photos shown under neutral captions: a photo's server path (``.../reviews/full_length/...``) can tell an
inspector the answer, so captions name the photo by its id and only admins see the path, under Details.

Not a page: ``app.py`` lists pages explicitly with ``st.navigation``.
"""

from __future__ import annotations

import base64
import functools

import streamlit as st

from pages.common import current_user, db, md, run_memo, thumbnail
from services.core.authz import allowed
from services.reviews.identifiers import shown_review_id

ADMIN_ACTION = "quality.manage"  # who may see where a photo is stored


def sees_paths() -> bool:
    """Whether the signed-in user may see photos' server paths (admins); asked once per run."""
    memo = run_memo()
    if "sees_paths" not in memo:
        memo["sees_paths"] = allowed(db(), actor=current_user().name, action=ADMIN_ACTION)
    return memo["sees_paths"]


def review_name(review_id: str) -> str:
    """A review's id as shown: never a server path (``services.reviews.identifiers``)."""
    return shown_review_id(review_id)


def data_url(uri: str, sha256: str | None, size: int = 96) -> str | None:
    """A small JPEG thumbnail as a data URL, for an image column of a table (None when it cannot be read)."""
    data, _ = thumbnail(uri, sha256, size)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode() if data else None


ZOOM_LEVELS = {"fit": "Fit the screen", "2x": "2×", "4x": "4×"}
_ZOOM_WIDTH = {"fit": None, "2x": "200%", "4x": "400%"}


def zoomed(*, label: str, uri: str, sha256: str | None, size: int, level: str) -> None:
    """The photo across the whole page, as tall as the window allows (``level`` "fit"), or two or four times wider
    than the page ("2x", "4x") in a box the height of the window that pans with the scroll bars, wheel or trackpad."""
    data, _ = thumbnail(uri, sha256, size)
    if not data:
        show(st, label=label, uri=uri, sha256=sha256, size=size, details=False)
        return
    src = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    width = _ZOOM_WIDTH.get(level)
    img = (f'<img src="{src}" alt="{label}" style="display:block;margin:auto;max-width:100%;'
           'height:calc(100vh - 140px);object-fit:contain">' if width is None else
           f'<img src="{src}" alt="{label}" style="display:block;width:{width};max-width:none;height:auto">')
    st.html(f'<div data-zoom="{level}" style="width:100%;height:calc(100vh - 120px);overflow:auto;'
            f'background:#111;border-radius:6px">{img}</div>')


def at_width(data: bytes, *, width: int) -> bytes:
    """The JPEG ``data`` no wider than ``width``: Streamlit would otherwise decode, resize and encode a wider image
    again on every run (issue 23). Made from the small JPEG itself (not the stored photo), once per process."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:  # reads the header only
        if img.size[0] <= width:
            return data
    return _narrowed(data, width)


@functools.lru_cache(maxsize=4096)
def _narrowed(data: bytes, width: int) -> bytes:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        out = io.BytesIO()
        img.convert("RGB").resize((width, max(1, round(h * width / w))), Image.Resampling.LANCZOS).save(
            out, format="JPEG", quality=85)
    return out.getvalue()


def show(container, *, label: str, uri: str, sha256: str | None, size: int, caption: str = "",  # type: ignore[no-untyped-def]
         width: int | str = "content", details: bool = True) -> None:
    """The photo in ``container`` captioned ``label`` (neutral: "photo 12", "check 3") and ``caption`` (markdown, the
    caller escapes customer text with ``md``); for admins, the stored path under Details (``details``). A photo
    that cannot be shown says why: with its path for admins, without for the others."""
    admin = sees_paths()
    data, error = thumbnail(uri, sha256, size)
    if data and isinstance(width, int):
        data = at_width(data, width=width)
    text = " · ".join(t for t in (md(label), caption) if t)
    if data:
        container.image(data, caption=text, width=width)
    elif admin:
        container.error(f"Cannot show {md(label)} ({md(uri)}): {md(error)}")
    else:
        container.error(f"Cannot show {md(label)}: the file could not be read. An admin can see why under "
                        "Label quality → Photo history.")
    if admin and details:
        with container.expander("Details: where it is stored", icon=":material/info:"):
            st.code(uri, language=None, wrap_lines=True)  # literal, and easy to copy

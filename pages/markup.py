r"""Customer text in markdown.

Text from customers, files and users goes into the markdown Streamlit renders (st.markdown, captions, alerts,
labels, image captions) through ``md``, so it shows literally: no image the browser would fetch, no link, no
HTML, no icon, no LaTeX, no colour directive. Two things are needed, as Streamlit's markdown does more than
CommonMark:
* the characters of markdown syntax are backslash-escaped (CommonMark drops the backslash on render, so what
  shows and what is copied is the original text): ``![x](url)``, ``[x](javascript:...)``, ``<b>``, ``&amp;``,
  ``$...$``, ``:red[...]``, headings, lists, tables; ``:material/`` gets ``\:material\/`` (Streamlit rewrites
  ``:material/`` in the source before parsing, escapes or not);
* a word Streamlit still turns into something after parsing, when the escapes are gone (bare ``https://``
  and ``www.`` URLs and e-mail addresses, which remark-gfm links; ``:name:`` emoji and ``:streamlit:``;
  ``->`` style arrows), goes into an inline code span, where nothing is parsed or rewritten.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=])")
_MD_LIVE_WORD = re.compile(r"(?i)https?://|www\.|@[-\w]+\.[-\w]|:(?:[+-]1|100|1234|[a-z_][\w+-]*):"
                           r"|^(?:<->|->|<-|--|>=|<=|~=)$")
_MD_BREAK = re.compile(r"([ \t\r\n]+)")  # where the autolink and arrow rules of remark-gfm and Streamlit stop


def code_span(word: str) -> str:
    """``word`` as an inline code span that shows it exactly (a fence longer than any backtick run in it)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", word)), default=0) + 1)
    pad = " " if word.startswith("`") or word.endswith("`") else ""
    return f"{fence}{pad}{word}{pad}{fence}"


def md(text: object) -> str:
    """``str(text)`` escaped for Streamlit markdown so it shows literally (see the comment above)."""
    return "".join(code_span(part) if part.strip() and _MD_LIVE_WORD.search(part)
                   else _MD_SPECIAL.sub(r"\\\1", part).replace(r"\:material/", r"\:material\/")
                   for part in _MD_BREAK.split(str(text)))


def when(value: object) -> str:
    """An ISO time from the database as the app shows times: ``2026-12-05 10:51 UTC`` (to the minute, UTC);
    anything that is not such a time as it is, nothing as an empty string."""
    text = str(value or "").strip()
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 file``, ``1,200 files``: the count and the noun it takes (``many``, by default ``one`` + "s")."""
    return f"{n:,} {one if n == 1 else (many or one + 's')}"

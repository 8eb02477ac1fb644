"""What Streamlit's markdown would make live out of a markdown source: links, images, HTML, autolinked bare
URLs and e-mail addresses, icons, emoji and arrow rewrites. CommonMark parsing by markdown-it-py; the
post-parse rewrites Streamlit applies to text nodes (remark-gfm's autolink literals, Streamlit's
``:material_x:`` icons, ``:streamlit:``, remark-emoji, arrows) are emulated on the parsed text, as in the
browser, where backslash escapes are already gone."""

from __future__ import annotations

import re

from markdown_it import MarkdownIt

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_PUNCT = r"!-/:-@\[-`{-~"
_URL = re.compile(r"(?i)(?:^|(?<=[\s" + _PUNCT + r"]))(?:https?://|www(?=\.))[-.\w]+")
_EMAIL = re.compile(r"(?:^|(?<=[\s" + _PUNCT + r"]))[-.\w+]+@[-\w]+(?:\.[-\w]+)+")
_REWRITES = re.compile(r":material_\w+:|:streamlit:|:(?:[+-]1|100|1234|[a-zA-Z_][\w+-]*):|(?:^|(?<=\s))(?:<->|->|<-|--|>=|<=|~=)(?=\s|$)")
_LIVE_TOKENS = {"link_open", "image", "html_inline", "html_block", "autolink"}


def _inline_tokens(source: str):  # type: ignore[no-untyped-def]
    for token in _PARSER.parse(source.replace(":material/", ":material_")):  # as Streamlit does first
        if token.type in _LIVE_TOKENS:
            yield token
        yield from token.children or []


def live_parts(source: str) -> list[str]:
    """What the browser would not show as plain text (empty when the source is inert)."""
    found = []
    for token in _inline_tokens(source):
        if token.type in _LIVE_TOKENS:
            found.append(f"{token.type}: {token.attrs or token.content}")
        elif token.type == "text":
            found += [f"rewritten: {m.group()}" for rx in (_URL, _EMAIL, _REWRITES) for m in rx.finditer(token.content)]
    return found


def shown_text(source: str) -> str:
    """The text a one-paragraph source shows (text and inline code, escapes removed)."""
    return "".join(t.content for t in _inline_tokens(source) if t.type in ("text", "code_inline"))

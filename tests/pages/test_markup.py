"""pages.markup.md: text from customers, files and users shows literally in Streamlit markdown."""

from __future__ import annotations

import pytest

from pages.common import md
from tests.pages.markdown_check import live_parts, shown_text

HOSTILE = [
    "![x](https://evil.example/p.png)",
    "photos/![x](//evil.example/u.png).jpg",
    "[click](javascript:alert(1))",
    "see https://evil.example/a?b=c and www.evil.example now",
    "HTTPS://EVIL.EXAMPLE",
    "mail bob@evil.example",
    "<img src=x onerror=alert(1)> <script>alert(1)</script>",
    ":material/warning: :streamlit: :smile: :red[alarm] :red-badge[x]",
    "$x^2$ and $$y$$",
    "# heading | a | b |",
    "**bold** _it_ ~~gone~~ `code` ``two``",
    "a -> b <- c -- d >= e",
    "[ref]: https://evil.example",
    "<https://evil.example>",
    "&lt;b&gt; &amp; &#58;",
    "back\\slash and \\[x\\](y)",
    "(`https://evil.example`)",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_md_leaves_nothing_live(text):
    assert live_parts(md(text)) == [], md(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_md_shows_the_text_as_it_is(text):
    assert shown_text(md(text)) == text, md(text)


@pytest.mark.parametrize("text", [HOSTILE[0], HOSTILE[3], HOSTILE[5], HOSTILE[6], HOSTILE[7], HOSTILE[11]])
def test_the_check_sees_live_markdown(text):
    assert live_parts(text), text


def test_the_old_escaping_left_bare_urls_live():
    old = __import__("re").sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", HOSTILE[3])
    assert old.startswith("see https\\://evil\\.example") and live_parts(old)


def test_times_show_to_the_minute_in_utc():
    from pages.markup import when

    assert when("2026-12-05T10:51:58.123456Z") == "2026-12-05 10:51 UTC"
    assert when("2026-12-05T12:51:58+02:00") == "2026-12-05 10:51 UTC"
    assert when(None) == "" and when("yesterday") == "yesterday"


def test_plural_says_the_count_with_the_noun_it_takes():
    from pages.markup import plural

    assert [plural(1, "file"), plural(0, "file"), plural(1200, "box", "boxes")] == ["1 file", "0 files", "1,200 boxes"]

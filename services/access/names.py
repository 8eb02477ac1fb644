"""User names that cannot pass for one another: normalised (NFKC, case-folded), from a plain set of
characters, in one script, with no invisible or control characters.

``normalise_username`` is what an account is stored and found under: ``Admin``, ``ADMIN`` and fullwidth
``ａｄｍｉｎ`` all become ``admin``, so they are one name. A name mixing scripts (Latin ``dmin`` with a
Cyrillic ``а``), a name whose every letter is a Latin look-alike from another script, and names with
zero-width, bidirectional or other format characters are refused.
"""

from __future__ import annotations

import unicodedata

from services.core.authz import SYSTEM_SEPARATOR
from services.core.errors import InvalidInput

MAX_USERNAME_LENGTH = 254
PUNCTUATION = frozenset("._-@+")  # e-mail style names; never the colon of the console's own principals
# Scripts that are written together in one name (Japanese mixes Han and the kana; Korean Han and Hangul).
_MIXES_ALLOWED = (frozenset({"CJK", "HIRAGANA", "KATAKANA"}), frozenset({"CJK", "HANGUL"}))
# Case-folded Cyrillic and Greek letters that look like Latin ones: a name made only of these passes for Latin.
_LATIN_LOOKALIKES = frozenset("аеорсухіјѕԁһӏԛԝүкмнвтαβεικνορτυχζ")


def _script(ch: str) -> str | None:
    """The script of a letter from its Unicode name (LATIN, CYRILLIC, GREEK, CJK, ...); None for others."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return "CJK" if first in ("CJK", "IDEOGRAPHIC") else first or "UNKNOWN"


def normalise_username(username: str) -> str:
    """The form an account is stored and found under: stripped, NFKC, case-folded (``ＡＤＭＩＮ`` -> ``admin``).
    Raises InvalidInput for an empty or long name, spaces, invisible or control characters, a colon,
    characters other than letters, digits and ``. _ - @ +``, mixed scripts, or an all look-alike name."""
    raw = username.strip()
    for ch in raw:
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Cc", "Co", "Cn", "Cs") or cat.startswith("Z") or ch.isspace():
            what = "a space" if cat.startswith("Z") or ch.isspace() else "an invisible or control character"
            raise InvalidInput(f"a user name cannot contain {what} (U+{ord(ch):04X}): type it again with "
                               "letters, digits and . _ - @ + only, without spaces")
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold())
    if not name or len(name) > MAX_USERNAME_LENGTH:
        raise InvalidInput(f"a user name needs 1 to {MAX_USERNAME_LENGTH} characters, without spaces or colons")
    if SYSTEM_SEPARATOR in name:
        raise InvalidInput("a user name cannot contain colons (also fullwidth ones): names with a colon are "
                           "the console's own principals (cli:..., model:...)")
    for i, ch in enumerate(name):
        cat = unicodedata.category(ch)
        plain = cat.startswith("L") or cat == "Nd" or ch in PUNCTUATION
        if cat.startswith("M") and i > 0 and unicodedata.category(name[i - 1]).startswith("L"):
            plain = True  # an accent on a letter
        if not plain:
            raise InvalidInput(f"a user name cannot contain '{ch}' (U+{ord(ch):04X}): use letters, digits and "
                               ". _ - @ + only")
    scripts = {s for s in map(_script, name) if s}
    if len(scripts) > 1 and not any(scripts <= ok for ok in _MIXES_ALLOWED):
        raise InvalidInput(f"a user name cannot mix scripts ({', '.join(sorted(s.title() for s in scripts))}): "
                           "look-alike letters from another alphabet make it pass for a different name; "
                           "write it in one alphabet")
    letters = [ch for ch in name if _script(ch)]
    if letters and scripts <= {"CYRILLIC", "GREEK"} and all(ch in _LATIN_LOOKALIKES for ch in letters):
        raise InvalidInput("this user name is written with Cyrillic or Greek letters that all look like Latin "
                           "ones, so it would pass for a Latin name: write it in Latin letters")
    return name


def fold(username: str) -> str:
    """The normalised key of any stored name, valid or not (NFKC, case-folded, stripped); raises nothing."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username.strip()).casefold())

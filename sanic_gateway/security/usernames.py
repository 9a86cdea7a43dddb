"""Usernames of the local strategy: which are accepted, and when two are the same account.

Two usernames are the same when equal after Unicode NFKC normalization and case folding (the
Unicode "NFKC_Casefold" comparison): `Bob`, `BOB` and the fullwidth `bob` (U+FF42 U+FF4F U+FF42)
name one account, whichever form was used to create it or to log in. Names holding characters
a reader cannot see or that reorder text (controls, zero-width and other format characters,
bidi overrides) are refused: they make look-alike names of other accounts.
"""

from __future__ import annotations

import unicodedata

from .. import errors

# Cc control, Cf format (zero-width, bidi, soft hyphen...), Cs surrogate, Co private use,
# Zl/Zp line and paragraph separators.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
# Invisible code points of other categories (Unicode's Default_Ignorable_Code_Point).
INVISIBLE = frozenset([0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0,
                       *range(0x180B, 0x1810), *range(0xFE00, 0xFE10),
                       *range(0xE0100, 0xE01F0)])


def username_key(username: str) -> str:
    """The form two usernames are compared in: NFKC, case folded, NFKC again (case folding
    can leave text that NFKC changes)."""
    return unicodedata.normalize(
        "NFKC", unicodedata.normalize("NFKC", username).casefold())


def check_username(username: str) -> str:
    """`username` if its characters are acceptable, else security.credentials.invalid_username
    (400). The message names the first refused character by code point, never echoes it."""
    for char in username:
        point = ord(char)
        if unicodedata.category(char) in REFUSED_CATEGORIES or point in INVISIBLE:
            name = unicodedata.name(char, "unnamed")
            raise errors.get(
                "security.credentials.invalid_username",
                f"control, invisible or bidirectional characters are refused "
                f"(U+{point:04X} {name})")
    if username != username.strip():
        raise errors.get("security.credentials.invalid_username",
                         "no leading or trailing spaces")
    return username

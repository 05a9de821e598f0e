"""Names and fields that reach storage, logs or answers are valid text.

JSON escapes can carry lone surrogates ("\\ud800") and forms can carry control characters;
neither encodes to UTF-8 or prints safely, so one stored in the gallery or a user record
would break every later answer that lists it. They are refused where they enter.
"""

from __future__ import annotations

import re

from mlapi.errors import TextError

SURROGATE = re.compile("[\ud800-\udfff]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
CONTROL_BUT_WHITESPACE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Embeddings and overrides of the text direction: in a name they make it display as
# another (`\u202eenoJ` shows as "Jone..."), and they leak into whatever follows it.
BIDI_CONTROL = re.compile("[\u202a-\u202e\u2066-\u2069]")


def check(value: str, what: str, *, multiline: bool = False) -> str:
    """`value`, or TextError naming `what`: no lone surrogates, and no control characters
    (tabs and line breaks allowed when `multiline`)."""
    if SURROGATE.search(value):
        raise TextError(f"{what} is not valid text (an undecodable byte or a lone surrogate)")
    if (CONTROL_BUT_WHITESPACE if multiline else CONTROL).search(value):
        raise TextError(f"{what} contains control characters")
    return value


def name(value: str, what: str) -> str:
    """`value` as a name or label people read (a person, a subject, a key): valid text
    with no control of the text direction; TextError naming `what` otherwise."""
    check(value, what)
    if BIDI_CONTROL.search(value):
        raise TextError(f"{what} contains characters that change the text's direction")
    return value


def shown(value: str) -> str:
    """`value` safe to print and to encode: lone surrogates as \\udXXX escapes (how a
    name stored by an older version is shown, and can be typed to remove it)."""
    if SURROGATE.search(value) is None:
        return value
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


def normalise_plate(value: str) -> str:
    """A plate's upper-case letters and digits only: how plates are read, stored and
    compared ("5au·534-1 " is 5AU5341)."""
    return "".join(c for c in value.upper() if c.isascii() and c.isalnum())

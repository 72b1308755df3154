"""One JSON value a line, with nothing in it that a terminal or an editor acts on.

Every JSON line fleetwatch writes (``replay --output jsonl`` and ``incidents``,
``parse``, ``findings``, ``silence --list``, ``watch --jsonl``) goes through
``json_line``. JSON already escapes the C0 controls (a newline, ESC) in a string, but
with ``ensure_ascii=False`` it writes every other character as it is, and a node name
or a summary comes from input: a bidi override (U+202E) would reorder what a person
reads in ``less`` or an editor, a C1 control or U+2028 is a line break to some readers,
a lone surrogate (an undecodable byte of a folder name) cannot be encoded as UTF-8 at
all. So every character that is not printable (Python's ``str.isprintable``, the rule
of ``one_line``) is written as a ``\\uXXXX`` escape, a surrogate pair beyond the BMP.
A JSON reader decodes the escapes back: the data is unchanged, only its spelling is.
Printable text, the usual case, stays as it is (no ``\\u00e9`` for ``é``).
"""

from __future__ import annotations

import json
from typing import Any, Final

_ENCODE: Final = json.JSONEncoder(ensure_ascii=False).encode


def _escape(char: str) -> str:
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # UTF-16's surrogate pair, the way JSON writes a character past U+FFFF
    return f"\\u{0xD800 | code >> 10:04x}\\u{0xDC00 | code & 0x3FF:04x}"


def json_line(value: Any) -> str:
    """``value`` as one line of JSON, ending in a newline, every unprintable character
    escaped. (Outside strings JSON holds only printable ASCII, so an unprintable
    character is always inside a string, where ``\\uXXXX`` means that character.)"""
    return json_text(value) + "\n"


def json_text(value: Any) -> str:
    """``value`` as JSON, every unprintable character escaped: ``json_line`` without its
    newline (a piece of a line that ``event_lines`` puts together)."""
    text = _ENCODE(value)
    return text if text.isprintable() else "".join(map(_escape, text))

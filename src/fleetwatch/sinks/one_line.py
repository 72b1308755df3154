"""Text from input on one line: what is not printable becomes a backslash escape.

Line-oriented outputs (the drain list, the watch console, one-line messages on stderr)
hold one record a line and tab-separated columns. A node name or a summary comes from
input and may hold a newline, a tab, a carriage return, a terminal escape sequence, an
undecodable byte (a lone surrogate from a folder name) or a bidi override. ``one_line``
writes each such character as Python writes it in a string literal (``\\n``, ``\\t``,
``\\x1b``, ``\\udcff``, ``\\u202e``), and a backslash as ``\\\\``, so the result cannot
add a line or a column, always encodes as UTF-8, and reads back unambiguously.
Printable text, the usual case, is returned as it is.
"""

from __future__ import annotations


def _escape(char: str) -> str:
    if char.isprintable() and char != "\\":
        return char
    return char.encode("unicode_escape").decode("ascii")


def one_line(text: str) -> str:
    """``text`` with every character that is not printable, and backslash, escaped."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(map(_escape, text))

"""Whole numbers read from text, only as far as an event's column can hold them.

A corrupted line can carry a digit run of any length where a code, a pid or a rank
belongs. Python reads it all, and ``int()`` refuses one past 4,300 digits; a value past
int64 (past int32 for a GPU index) has no column to go to. ``whole`` reads a run of
decimal digits (what ``\\d+`` matched, or a string ``isdecimal()`` accepted) as an int
when it fits, else gives None, and the reader counts the record ``out of range``:
the same reason ``FileContext.emit`` counts a record that reaches it with such a value.
"""

from __future__ import annotations

from typing import Final

INT32_MAX: Final = 2**31 - 1
INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
OUT_OF_RANGE: Final = "out of range"
_INT64_DIGITS: Final = 19


def whole(digits: str, most: int = INT64_MAX) -> int | None:
    """``digits`` as an int no larger than ``most``; None past it (or not a number)."""
    if len(digits) > _INT64_DIGITS and len(digits.lstrip("0")) > _INT64_DIGITS:
        return None  # past int64 whatever the digits, and never handed to int()
    try:
        value = int(digits)
    except ValueError:
        return None
    return value if 0 <= value <= most else None

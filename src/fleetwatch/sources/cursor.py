"""The contract between the line stream and the record readers.

A record reader is called with one line that looked like its format, the envelope of
that line, and a ``Cursor`` over the lines that follow, so a record that spans lines
(an AER report and its bit lines, a three-line "fallen off the bus", an APEI block,
an ``nvidia-smi -q`` section) is read as one record and its continuation lines are
not read again.
"""

from __future__ import annotations

from typing import Protocol


class NeedMore(Exception):
    """The record continues past the data read so far; the stream reads more first."""


class Cursor(Protocol):
    """The lines after the current one."""

    def peek(self, n: int) -> list[str]:
        """Up to ``n`` following lines, decoded (fewer only at the end of the input)."""
        ...

    def skip(self, n: int) -> None:
        """Consume ``n`` of the lines ``peek`` returned: they belong to this record."""
        ...

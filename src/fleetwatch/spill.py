"""Spill: sorted runs of events parked in one temporary file until replay merges them.

Replay cannot hand the engine its first event before every input is read (the earliest
event may be the last line of the last file, and a boot-clock stamp waits for its
node's anchor, which any file may carry), yet it must not hold every event in memory.
So it writes events out as it reads them, in sorted *runs*, and reads each run back a
piece at a time when it merges them (``merge.py``).

A run is a list of *segments*: ``count`` records (``records.py``) at an ``offset`` of
the file, written as they are in memory, so reading one back is one system call.

The file is a ``tempfile.TemporaryFile`` (under ``$TMPDIR``): unnamed, it goes when
closed or when the process ends, however it ends. Where no temporary file can be made
or written (no writable ``$TMPDIR``, a full disk), segments stay in memory instead: a
replay that needs the memory it always needed beats one that stops.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from fleetwatch.records import ROW, Records


@dataclass(frozen=True)
class Segment:
    """``count`` records at byte ``offset`` of the spill file, or ``held`` in memory."""

    offset: int
    count: int
    held: Records | None = None


@dataclass
class Run:
    """Segments whose records, read in turn, are in sorted order.

    ``group`` is what the events share (``replay``: their file, and for boot-clock
    events their node); ``last`` is the sort key of the run's last event, which tells
    whether a next sorted chunk of the same group continues the run.
    """

    group: tuple[int, int]
    segments: list[Segment] = field(default_factory=list)
    last: tuple[int, float, int] | None = None


class SpillFile:
    """A temporary file that records are appended to and read back from, by segment."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        with contextlib.suppress(OSError):  # no temporary directory: segments in memory
            self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (close())
        self._end = 0

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def write(self, rows: Records) -> Segment:
        """Append ``rows`` as one segment."""
        if self._file is None:
            return Segment(-1, len(rows), rows.copy())
        data = np.ascontiguousarray(rows).view(np.uint8).data
        written = 0
        try:
            while written < len(data):  # a raw write may take less than all of it
                written += os.pwrite(self._file.fileno(), data[written:], self._end + written)
        except OSError:  # a full disk: what is written stays readable, the rest in memory
            return Segment(-1, len(rows), rows.copy())
        segment = Segment(self._end, len(rows))
        self._end += len(data)
        return segment

    def read(self, segment: Segment, start: int, count: int) -> Records:
        """Records ``start`` to ``start + count`` of ``segment`` (a writable array)."""
        count = max(0, min(count, segment.count - start))
        if segment.held is not None:
            return segment.held[start : start + count].copy()  # anchoring writes to it
        if self._file is None:
            raise ValueError("a segment on disk, but no spill file")
        rows = np.empty(count, dtype=ROW)
        data = rows.view(np.uint8).data
        offset = segment.offset + start * ROW.itemsize
        got = 0
        while got < len(data):
            n = os.preadv(self._file.fileno(), [data[got:]], offset + got)
            if n <= 0:
                raise OSError(f"spill file ended early at byte {offset + got}")
            got += n
        return rows

    def pieces(self, run: Run, size: int) -> Iterator[Records]:
        """The records of ``run`` in order, at most ``size`` at a time."""
        for segment in run.segments:
            for start in range(0, segment.count, size):
                yield self.read(segment, start, size)

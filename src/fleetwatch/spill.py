"""Spill: sorted runs of events parked in one temporary file until replay merges them.

Replay cannot hand the engine its first event before every input is read (the earliest
event may be the last line of the last file, and a boot-clock stamp waits for its
node's anchor, which any file may carry), yet it must not hold every event in memory.
So it writes events out as it reads them, in sorted *runs*, and reads each run back a
piece at a time when it merges them (``merge.py``).

A run is a list of *segments*: ``count`` fixed-size records at an ``offset`` of the
file. A record is one event's fields, packed in a NumPy structured dtype (148 bytes),
plus its ``arrival``: its place in the order the inputs were read, which breaks ties in
time exactly as replay's stable sort did. String fields hold ids into replay's one
string table, which stays in memory, so a record needs no strings of its own.

The file is a ``tempfile.TemporaryFile`` (under ``$TMPDIR``): unnamed, it goes when
closed or when the process ends, however it ends.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import FIELDS, EventBatch

RECORD: Final[np.dtype[Any]] = np.dtype(
    [(name, dtype) for name, (dtype, _, _) in FIELDS.items()] + [("arrival", np.int64)]
)
"""One event on disk: every field of ``events.FIELDS``, then its read order."""


@dataclass(frozen=True)
class Segment:
    """``count`` records at byte ``offset`` of the spill file."""

    offset: int
    count: int


@dataclass
class Run:
    """Segments whose events, read in turn, are in sorted order.

    ``group`` is what the events share (``replay``: their file, and for boot-clock
    events their node); ``last`` is the sort key of the run's last event, which tells
    whether a next sorted chunk of the same group continues the run.
    """

    group: tuple[int, int]
    segments: list[Segment] = field(default_factory=list)
    last: tuple[int, float, int] | None = None

    def __len__(self) -> int:
        return sum(s.count for s in self.segments)


class SpillFile:
    """A temporary file that records are appended to and read back from, by segment."""

    def __init__(self) -> None:
        self._file: IO[bytes] = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115 (closed by close())
        self._end = 0

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._end

    def write(self, events: EventBatch, arrival: npt.NDArray[np.int64]) -> Segment:
        """Append ``events`` (with their ``arrival``) as one segment."""
        records = np.empty(len(events), dtype=RECORD)
        for name, column in events.columns.items():
            records[name] = column
        records["arrival"] = arrival
        data = records.view(np.uint8).data
        written = 0
        while written < len(data):  # a raw write may take less than all of it
            written += os.pwrite(self._file.fileno(), data[written:], self._end + written)
        segment = Segment(self._end, len(events))
        self._end += len(data)
        return segment

    def read(
        self, segment: Segment, start: int, count: int, strings: tuple[str, ...]
    ) -> tuple[EventBatch, npt.NDArray[np.int64]]:
        """Records ``start`` to ``start + count`` of ``segment``: events and their arrival."""
        count = max(0, min(count, segment.count - start))
        records = np.empty(count, dtype=RECORD)
        data = records.view(np.uint8).data
        offset = segment.offset + start * RECORD.itemsize
        got = 0
        while got < len(data):
            n = os.preadv(self._file.fileno(), [data[got:]], offset + got)
            if n <= 0:
                raise OSError(f"spill file ended early at byte {offset + got}")
            got += n
        # copies, not views of the records: anchoring writes to ts and clock
        columns = {name: records[name].copy() for name in FIELDS}
        return EventBatch(columns, strings), records["arrival"].copy()

    def pieces(
        self, run: Run, size: int, strings: tuple[str, ...]
    ) -> Iterator[tuple[EventBatch, npt.NDArray[np.int64]]]:
        """The events of ``run`` in order, at most ``size`` at a time."""
        for segment in run.segments:
            for start in range(0, segment.count, size):
                yield self.read(segment, start, size, strings)

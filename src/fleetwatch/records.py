"""Records: events as rows of one NumPy structured array, with their place in the input.

An ``EventBatch`` is 28 columns; sorting, cutting or joining it is 28 NumPy calls. The
replay's merge moves events around far more often than the engine reads them, so it
moves them as records: one array whose rows are an event's fields packed together
(148 bytes), plus ``arrival``, the event's place in the order the inputs were read.
One call then sorts, cuts, joins, writes or reads them, and ``to_batch`` turns them back
into columns where the engine needs them. They are moved as opaque ``ROW`` bytes (NumPy
copies a structured row field by field, twenty times slower) and read through
``fields``, a view. String fields keep their ids, into a table
the records do not carry (``replay`` keeps one table for all).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import FIELDS, EventBatch

RECORD: Final[np.dtype[Any]] = np.dtype(
    [(name, dtype) for name, (dtype, _, _) in FIELDS.items()] + [("arrival", np.int64)]
)
"""One event: every field of ``events.FIELDS``, then its read order."""

ROW: Final[np.dtype[Any]] = np.dtype((np.void, RECORD.itemsize))
"""A record as opaque bytes: how records are moved."""

Records = npt.NDArray[Any]
"""An array of ``ROW``."""


def to_records(events: EventBatch, arrival: npt.NDArray[np.int64]) -> Records:
    """``events`` as records; ``arrival``: each one's place in the read order."""
    rows = np.empty(len(events), dtype=RECORD)
    for name, column in events.columns.items():
        rows[name] = column
    rows["arrival"] = arrival
    return rows.view(ROW)


def fields(rows: Records) -> npt.NDArray[Any]:
    """The records' fields by name (``fields(rows)["ts"]``): a view, writable as they are."""
    return rows.view(RECORD)


def to_batch(rows: Records, strings: tuple[str, ...]) -> EventBatch:
    """Records as a batch of columns (contiguous copies, as detectors read them fast)."""
    named = fields(rows)
    return EventBatch({name: named[name].copy() for name in FIELDS}, strings)

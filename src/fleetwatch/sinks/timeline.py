"""The events a report draws: counted by place, kind and time, in bounded memory.

The HTML report (``report.py``) draws the events of each affected GPU as marks on
that GPU's row. Which GPUs are affected is known only once every event has gone
through the detectors, and replay never holds its events (``replay.py``), so a
``Timeline`` counts every event as it goes by: keyed by its ``Place`` (clock, node,
PCI address, UUID, GPU index, job and rank) and kind, in
time buckets. The report picks the places of its rows at the end.

Memory is one entry per key and bucket that holds events: at most ``max_entries``,
whatever the number of events. Buckets start ``finest_s`` wide; when the entries pass
the bound, every bucket doubles in width (two neighbours' counts summed), so a long or
a wide input is counted coarser, never dropped. Times far outside any clock a log
could have (a forged stamp) are counted with the untimed events: they have no place
on an axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import CLOCK_ID, CLOCKS, KINDS, EventBatch

_NONE: Final = CLOCK_ID["none"]
FARTHEST_S: Final = 1e13
"""~ Year 318,000: a time farther from 0 is a forged stamp, with no place on an axis."""

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Place:
    """Where events happened, as the events name it (None: the event does not say).

    ``clock`` is ``wall`` or ``boot``; boot-clock times count from their node's boot,
    so they compare only within one node.
    """

    clock: str
    node: str | None
    pci: str | None
    uuid: str | None
    gpu: int | None
    job: str | None
    rank: int | None


@dataclass(frozen=True)
class Counts:
    """Counted events, one entry per (key, bucket): parallel arrays."""

    key: Ints
    """Index into ``Timeline.keys``."""
    ts: npt.NDArray[np.float64]
    """The middle of the bucket."""
    count: Ints


class Timeline:
    """Counts of events by ``(Place, kind)`` and time bucket; feed it with ``add``."""

    def __init__(self, max_entries: int = 1 << 20, finest_s: float = 1 / 64) -> None:
        if max_entries < 2 or not finest_s > 0:
            raise ValueError("a timeline needs max_entries >= 2 and finest_s > 0")
        self.max_entries = max_entries
        self.width_s = finest_s
        """The width of a bucket now (it only grows)."""
        self.keys: list[tuple[Place, str]] = []
        """Every (place, kind) seen; ``Counts.key`` indexes it."""
        self.events = 0
        """Events seen, timed or not."""
        self.untimed = 0
        """Events without a usable time (no stamp, or one far outside any clock)."""
        self._ids: dict[tuple[Place, str], int] = {}
        self._key: Ints = np.zeros(0, np.int64)
        self._bucket: Ints = np.zeros(0, np.int64)
        self._count: Ints = np.zeros(0, np.int64)
        self._pending: list[tuple[Ints, Ints, Ints]] = []
        self._pending_entries = 0

    def add(self, batch: EventBatch) -> None:
        """Count the events of ``batch``."""
        self.events += len(batch)
        ts = batch["ts"]
        timed = (batch["clock"] != _NONE) & (np.abs(ts) < FARTHEST_S)  # NaN compares false
        rows = np.flatnonzero(timed)
        self.untimed += len(batch) - len(rows)
        if not len(rows):
            return
        names = ("clock", "node", "pci", "uuid", "gpu", "job", "rank", "kind")
        columns = np.stack([batch[name][rows] for name in names], axis=1).astype(np.int64)
        place = _dense_rows(columns)
        _, first = np.unique(place, return_index=True)
        ids = np.fromiter(
            (self._id(batch, *row) for row in columns[first].tolist()), np.int64, len(first)
        )
        key = ids[place]
        bucket = np.floor(ts[rows] / self.width_s).astype(np.int64)
        self._pending.append(_summed(key, bucket, np.ones(len(rows), np.int64)))
        self._pending_entries += len(self._pending[-1][0])
        if self._pending_entries >= self.max_entries // 2:
            self._settle()

    def _id(self, batch: EventBatch, *row: int) -> int:
        """The key id of one unique row of ``add``'s columns (a new one if unseen)."""
        clock, node, pci, uuid, gpu, job, rank, kind = row
        place = Place(
            CLOCKS[clock],
            batch.string(node),
            batch.string(pci),
            batch.string(uuid),
            gpu if gpu >= 0 else None,
            batch.string(job),
            rank if rank >= 0 else None,
        )
        key = (place, KINDS[kind])
        found = self._ids.get(key)
        if found is None:
            found = self._ids[key] = len(self.keys)
            self.keys.append(key)
        return found

    def _settle(self) -> None:
        """Fold the pending counts in; widen the buckets while there are too many."""
        if not self._pending:
            return
        parts = [(self._key, self._bucket, self._count), *self._pending]
        self._pending, self._pending_entries = [], 0
        key, bucket, count = (np.concatenate(column) for column in zip(*parts, strict=True))
        self._key, self._bucket, self._count = _summed(key, bucket, count)
        while len(self._key) > self.max_entries:
            self.width_s *= 2
            self._key, self._bucket, self._count = _summed(
                self._key, np.floor_divide(self._bucket, 2), self._count
            )

    def counts(self) -> Counts:
        """The counts so far."""
        self._settle()
        middles = (self._bucket + 0.5).astype(np.float64) * self.width_s
        return Counts(self._key, middles, self._count)


def _dense_rows(columns: Ints) -> Ints:
    """Each row's number among the distinct rows of ``columns`` (0, 1, ...): a column at
    a time, kept dense, which is several times faster than ``np.unique(axis=0)``."""
    code = np.zeros(len(columns), np.int64)
    for column in columns.T:
        values, inverse = np.unique(column, return_inverse=True)
        code = code * len(values) + inverse.reshape(-1)
        code = np.unique(code, return_inverse=True)[1].reshape(-1)
    return code


def _summed(key: Ints, bucket: Ints, count: Ints) -> tuple[Ints, Ints, Ints]:
    """One entry per (key, bucket), the counts of equal ones summed; sorted."""
    if not len(key):
        return key, bucket, count
    order = np.lexsort((bucket, key))
    key, bucket, count = key[order], bucket[order], count[order]
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (bucket[1:] != bucket[:-1])])
    return key[starts], bucket[starts], np.add.reduceat(count, starts)

"""Merge: sorted streams of events into one sorted stream, holding a piece of each.

Replay's order is the key ``(rank, when, arrival)``:

* ``rank``: 0 for a boot-clock time (seconds since an unknown boot, so before all
  else), 1 for the wall clock, 2 for no time at all (last);
* ``when``: the time, with NaN as +inf (``np.nan_to_num``, as replay always sorted);
* ``arrival``: the event's place in the order the inputs were read, so that events at
  the same time keep file order, then line order, as a stable sort keeps them.

``arrival`` is unique, so the key orders events totally and the merged order is the one
sorting all events at once would give, whatever the streams and pieces.

Each stream yields sorted pieces that follow one another (``Keyed``). The merge holds
one piece per stream, or what is left of it. Every held event whose key is at most
the smallest of the streams' *last* held keys can go out: no stream has anything
unread that sorts before it. The stream that set that bound has then handed out all
it held and reads its next piece. So memory holds one piece per stream, however long
the streams are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import CLOCK_ID, EventBatch

_WALL: Final = CLOCK_ID["wall"]

Key = tuple[int, float, int]
"""``(rank, when, arrival)`` of one event."""


@dataclass(frozen=True, slots=True)
class Keyed:
    """Events with their sort keys, one array per part of the key."""

    events: EventBatch
    rank: npt.NDArray[np.int8]
    when: npt.NDArray[np.float64]
    arrival: npt.NDArray[np.int64]

    @classmethod
    def of(cls, events: EventBatch, arrival: npt.NDArray[np.int64]) -> Keyed:
        """``events`` keyed by their clock and time as they stand (anchor first)."""
        ts = events["ts"]
        rank = np.where(events["clock"] == _WALL, 1, np.where(np.isnan(ts), 2, 0))
        return cls(events, rank.astype(np.int8), np.nan_to_num(ts, nan=np.inf), arrival)

    def __len__(self) -> int:
        return len(self.arrival)

    def key(self, row: int) -> Key:
        return (int(self.rank[row]), float(self.when[row]), int(self.arrival[row]))

    def take(self, rows: npt.NDArray[np.intp]) -> Keyed:
        """The events at ``rows``, in that order."""
        return Keyed(self.events.take(rows), self.rank[rows], self.when[rows], self.arrival[rows])

    def where(self, mask: npt.NDArray[np.bool_]) -> Keyed:
        """The events ``mask`` marks."""
        return self.take(np.flatnonzero(mask))

    def sorted(self) -> Keyed:
        """The same events in key order."""
        return self.take(np.lexsort((self.arrival, self.when, self.rank)))

    def upto(self, key: Key) -> npt.NDArray[np.bool_]:
        """Which events sort at or before ``key``."""
        rank, when, arrival = key
        upto: npt.NDArray[np.bool_] = (self.rank < rank) | (
            (self.rank == rank)
            & ((self.when < when) | ((self.when == when) & (self.arrival <= arrival)))
        )
        return upto


def join_events(parts: Sequence[EventBatch]) -> EventBatch:
    """Batches that share one string table, as one batch (ids need no remapping)."""
    if len(parts) == 1:
        return parts[0]
    columns = {name: np.concatenate([p.columns[name] for p in parts]) for name in parts[0].columns}
    return EventBatch(columns, parts[0].strings)


def join(parts: Sequence[Keyed]) -> Keyed:
    """Keyed pieces that share one string table, as one piece, in the order given."""
    if len(parts) == 1:
        return parts[0]
    return Keyed(
        join_events([p.events for p in parts]),
        np.concatenate([p.rank for p in parts]),
        np.concatenate([p.when for p in parts]),
        np.concatenate([p.arrival for p in parts]),
    )


def merge(
    streams: Sequence[Iterator[Keyed]], held: Callable[[int], None] | None = None
) -> Iterator[Keyed]:
    """The events of ``streams``, each sorted, as one sorted stream of pieces.

    ``held`` is told how many events the merge holds each time it reads a piece
    (tests check that this stays bounded).
    """
    heads: list[Keyed] = []
    sources: list[Iterator[Keyed]] = []
    for stream in streams:
        first = _next(stream)
        if first is not None:
            heads.append(first)
            sources.append(stream)
    if held is not None:
        held(sum(map(len, heads)))
    while heads:
        lasts = [head.key(len(head) - 1) for head in heads]
        bound = min(lasts)
        out: list[Keyed] = []
        for i, head in enumerate(heads):
            if head.key(0) > bound:
                continue  # nothing of this stream goes out yet
            if lasts[i] <= bound:
                out.append(head)  # all of it (the stream that set the bound)
                continue
            ready = head.upto(bound)
            out.append(head.where(ready))
            heads[i] = head.where(~ready)
        yield join(out).sorted()
        # the stream that set the bound handed out all it held: it reads on, or ends
        drained = lasts.index(bound)
        following = _next(sources[drained])
        if following is None:
            del heads[drained], sources[drained]
        else:
            heads[drained] = following
        if held is not None:
            held(sum(map(len, heads)))


def _next(stream: Iterator[Keyed]) -> Keyed | None:
    """The stream's next piece that holds any event, or None at its end."""
    for piece in stream:
        if len(piece):
            return piece
    return None

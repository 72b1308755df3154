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

from fleetwatch.events import CLOCK_ID
from fleetwatch.records import Records, fields

_WALL: Final = CLOCK_ID["wall"]

Key = tuple[int, float, int]
"""``(rank, when, arrival)`` of one event."""


def sort_key(
    clock: npt.NDArray[np.int8], ts: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.float64]]:
    """``rank`` and ``when`` of events with these clocks and times."""
    rank = np.where(clock == _WALL, 1, np.where(np.isnan(ts), 2, 0)).astype(np.int8)
    return rank, np.nan_to_num(ts, nan=np.inf)


@dataclass(frozen=True, slots=True)
class Keyed:
    """Records (``records.py``) with their keys, one array per part of the key."""

    rows: Records
    rank: npt.NDArray[np.int8]
    when: npt.NDArray[np.float64]
    arrival: npt.NDArray[np.int64]

    @classmethod
    def of(cls, rows: Records) -> Keyed:
        """``rows`` keyed by their clock and time as they stand (anchor first)."""
        named = fields(rows)
        return cls(rows, *sort_key(named["clock"], named["ts"]), named["arrival"].copy())

    def __len__(self) -> int:
        return len(self.rows)

    def key(self, row: int) -> Key:
        return (int(self.rank[row]), float(self.when[row]), int(self.arrival[row]))

    def take(self, rows: npt.NDArray[np.intp] | slice) -> Keyed:
        """The records at ``rows``, in that order (a slice: views, no copy)."""
        return Keyed(self.rows[rows], self.rank[rows], self.when[rows], self.arrival[rows])

    def where(self, mask: npt.NDArray[np.bool_]) -> Keyed:
        """The records ``mask`` marks."""
        return self.take(np.flatnonzero(mask))

    def sorted(self) -> Keyed:
        """The same records in key order."""
        return self.take(np.lexsort((self.arrival, self.when, self.rank)))

    def upto(self, key: Key) -> int:
        """How many records, from the first, sort at or before ``key`` (they are sorted).

        Binary searches, part by part of the key: the records of a lower rank, then of
        this rank at an earlier time, then of this time arrived no later.
        """
        rank, when, arrival = key
        low, high = self.rank.searchsorted(rank, "left"), self.rank.searchsorted(rank, "right")
        if low == high:
            return int(low)
        times = self.when[low:high]
        low, high = low + times.searchsorted(when, "left"), low + times.searchsorted(when, "right")
        if low == high:
            return int(low)
        return int(low + self.arrival[low:high].searchsorted(arrival, "right"))


def join(parts: Sequence[Keyed]) -> Keyed:
    """Keyed pieces as one, in the order given."""
    if len(parts) == 1:
        return parts[0]
    return Keyed(
        np.concatenate([p.rows for p in parts]),
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
    # a stream's first and last held keys, kept as they change (a Python loop over
    # the streams compares tuples only; arrays are touched where events go out)
    firsts = [head.key(0) for head in heads]
    lasts = [head.key(len(head) - 1) for head in heads]
    while heads:
        if held is not None:
            held(sum(map(len, heads)))
        bound = min(lasts)
        drained = lasts.index(bound)
        out: list[Keyed] = []
        for i, head in enumerate(heads):
            if firsts[i] > bound:
                continue  # nothing of this stream goes out yet
            if i == drained:
                out.append(head)  # all of it: its last key is the bound
                continue
            ready = head.upto(bound)
            out.append(head.take(slice(0, ready)))
            heads[i] = head.take(slice(ready, None))
            firsts[i] = heads[i].key(0)  # not empty: its last key is past the bound
        yield out[0] if len(out) == 1 else join(out).sorted()
        # the stream that set the bound handed out all it held: it reads on, or ends
        following = _next(sources[drained])
        if following is None:
            del heads[drained], sources[drained], firsts[drained], lasts[drained]
        else:
            heads[drained] = following
            firsts[drained] = following.key(0)
            lasts[drained] = following.key(len(following) - 1)


def _next(stream: Iterator[Keyed]) -> Keyed | None:
    """The stream's next piece that holds any event, or None at its end."""
    for piece in stream:
        if len(piece):
            return piece
    return None

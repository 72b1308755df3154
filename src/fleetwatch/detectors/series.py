"""Series: each counter series' last sample, in arrays, found by a batch's string ids.

A counter detector (``hbm_ecc``) compares each sample with the one before it of the same
series: one GPU's counter. Kept in a dict of key tuples, that costs a Python turn per
series and batch, and a fleet's scrapes put hundreds of series in every batch. Here
each series has a *slot*, and its last value, time and stamp are arrays indexed by
slot. A batch names its series by ids packed from its string ids (``base.pack``);
``slots`` finds them with one sorted search in what the same string table has shown
before, so only a series that this table has not shown takes a Python turn. Replay
keeps one table for every batch: each series takes one turn in the whole replay. (In
watch each batch has its own table: one turn per series and batch, as a dict took.)

Keys are what the detector says they are (strings and small ints, never batch ids), so
saved state means the same in another process; ``as_dict`` and ``of`` are that saved
form: key -> (value, time, stamp), stamp None for "changed since the last flush".
``expire`` forgets as ``base.expire_stamped`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.detectors.base import PACKED_IDS_APART
from fleetwatch.events import EventBatch

Key = tuple[Any, ...]
_UNSTAMPED: Final = np.nan  # a stamp: sampled since the last flush


class Series:
    """The last value and time of each counter series, by slot (see the module)."""

    def __init__(self) -> None:
        self.keys: list[Key] = []  # slot -> key; the arrays have room for more slots
        self._slot_of: dict[Key, int] = {}
        self.value = np.empty(0)  # slot -> the last sample's value (NaN: none yet)
        self.time = np.empty(0)
        self.stamp = np.empty(0)  # the flush clock then; NaN: sampled since
        self.known = np.empty(0, dtype=bool)  # slot -> whether it has had a sample
        self._table: tuple[str, ...] | None = None  # the string table ``_ids`` are of
        self._inexact = False  # whether its ids may pack alike (too many strings)
        self._ids = np.empty(0, dtype=np.int64)  # packed ids seen with it, sorted
        self._at = np.empty(0, dtype=np.intp)  # their slots

    def __len__(self) -> int:
        return len(self.keys)

    def slots(
        self,
        batch: EventBatch,
        ids: npt.NDArray[np.int64],
        rows: npt.NDArray[np.intp],
        key_of: Callable[[EventBatch, int], Key],
    ) -> npt.NDArray[np.intp]:
        """The slot of each of the distinct series ``ids`` (packed from the batch's
        string ids); ``rows[i]`` is a row of series ``ids[i]``, whose key is
        ``key_of(batch, row)``, asked only for the series this string table has not
        shown. A series never seen has a new slot, not ``known``."""
        if batch.strings is not self._table or self._inexact:
            # another table: its ids mean other strings (and past the ids ``pack`` keeps
            # apart, two series may pack alike: then what one batch shows is not kept)
            self._table = batch.strings
            self._inexact = len(batch.strings) > PACKED_IDS_APART
            self._ids = np.empty(0, dtype=np.int64)
            self._at = np.empty(0, dtype=np.intp)
        where = self._ids.searchsorted(ids)
        if self._ids.size:
            np.minimum(where, self._ids.size - 1, out=where)
            found = self._ids[where] == ids
            if found.all():
                return self._at[where]
            missing = np.flatnonzero(~found)
        else:
            missing = np.arange(ids.size)
        # some this table has not shown: their keys, once
        added = [self._slot(key_of(batch, rows.item(i))) for i in missing.tolist()]
        known = np.concatenate([self._ids, ids[missing]])
        order = np.argsort(known, kind="stable")
        self._ids = known[order]
        self._at = np.concatenate([self._at, np.asarray(added, dtype=np.intp)])[order]
        return self._at[self._ids.searchsorted(ids)]

    def update(
        self, slots: npt.NDArray[np.intp], batch: EventBatch, rows: npt.NDArray[np.intp]
    ) -> None:
        """Each slot's new last sample (``rows[i]`` of the batch for ``slots[i]``),
        sampled since the last flush."""
        self.value[slots] = batch["value"][rows]
        self.time[slots] = batch["ts"][rows]
        self.stamp[slots] = _UNSTAMPED
        self.known[slots] = True

    def expire(self, now: float, keep: float) -> list[Key]:
        """Stamp the series sampled since the last flush with ``now``; forget those not
        sampled for longer than ``keep``, and return their keys."""
        stamp = self.stamp[: len(self.keys)]  # a view: the slots in use
        stamp[np.isnan(stamp)] = now
        stale = now - stamp > keep
        if not stale.any():
            return []
        gone = [self.keys[slot] for slot in np.flatnonzero(stale).tolist()]
        kept = np.flatnonzero(~stale)
        self.keys = [self.keys[slot] for slot in kept.tolist()]
        self._slot_of = {key: slot for slot, key in enumerate(self.keys)}
        self.value, self.time = self.value[kept], self.time[kept]
        self.stamp, self.known = self.stamp[kept], self.known[kept]
        self._table = None  # slots moved: what tables showed is asked again
        return gone

    def as_dict(self) -> dict[Key, tuple[float, float, float | None]]:
        """Each known series' last sample and stamp: its saved form."""
        known = np.flatnonzero(self.known[: len(self.keys)]).tolist()
        values, times = self.value[known].tolist(), self.time[known].tolist()
        stamps = self.stamp[known].tolist()
        return {
            self.keys[slot]: (value, time, None if stamp != stamp else stamp)
            for slot, value, time, stamp in zip(known, values, times, stamps, strict=True)
        }

    @classmethod
    def of(cls, saved: dict[Key, tuple[Any, ...]]) -> Series:
        """Series from their saved form; a value without a stamp (saved before values
        had stamps) counts as sampled since the last flush."""
        series = cls()
        for key, (value, time, *stamp) in saved.items():
            slot = series._slot(key)
            series.value[slot], series.time[slot] = value, time
            series.stamp[slot] = _UNSTAMPED if not stamp or stamp[0] is None else stamp[0]
            series.known[slot] = True
        return series

    def _slot(self, key: Key) -> int:
        """``key``'s slot; a new one (not known, no sample) for a key never seen."""
        slot = self._slot_of.get(key)
        if slot is not None:
            return slot
        slot = self._slot_of[key] = len(self.keys)
        self.keys.append(key)
        if slot == self.value.size:  # full: twice the room, as a list grows
            room = max(16, 2 * slot)
            self.value, self.time, self.stamp, self.known = (
                np.concatenate([column, np.zeros(room - slot, dtype=column.dtype)])
                for column in (self.value, self.time, self.stamp, self.known)
            )
        self.value[slot] = self.time[slot] = np.nan
        self.stamp[slot] = _UNSTAMPED
        self.known[slot] = False
        return slot

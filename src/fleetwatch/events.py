"""Events: the columnar batches every reader emits and every detector reads.

A batch is a set of parallel NumPy arrays, one per field, with every string interned
into an integer id that indexes the batch's own string table. The hot path never
builds one Python object per event; a reader appends only the fields a record has
(``BatchBuilder.add``), and the builder fills the rest with "absent" when the batch is
sealed.

Fields (DESIGN.md, "Event fields and kinds"); "absent" is NaN for floats, -1 for
integers and string ids:

========================  =====================================================
``kind``                  one of ``KINDS``
``ts``, ``clock``         seconds; ``clock`` is ``wall`` (epoch), ``boot``
                          (seconds since boot) or ``none``
``source``                the reader: ``kmsg dcgm smi nvml k8s nccl jsonl``
``file``, ``line``        input file, 1-based line of the record's first line
``node``                  host name (see ``sources.files`` for the fallbacks)
``pci``                   ``dddd:bb:dd.f``, lowercase (``fleetwatch.pci``)
``gpu uuid serial``       NVML index, ``GPU-…`` UUID, board serial
``link``                  NVLink link number (``nvlink_*`` counters)
``code``                  XID or SXID number
``severity``              ``aer``/``sxid``: corrected, nonfatal, fatal
``scope``                 counters: volatile, aggregate
``value``                 the sample (cumulative counts stay cumulative);
                          ``pcie_link``: width; ``nccl_init``: world size;
                          ``nccl_timeout``: the timeout in ms
``rank seq op``           NCCL rank, collective sequence number, operation
``last_completed``        the watchdog's last completed sequence number
``last_enqueued``         the watchdog's last enqueued sequence number
``job pod namespace``     workload identity
``reason``                Kubernetes reason (``Evicted``, ``NodeNotReady``, …)
``pid process``           the process an XID names
``detail``                the rest of the record in a few words
========================  =====================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

KINDS: Final[tuple[str, ...]] = (
    "xid",
    "sxid",
    "gpu_lost",
    "gpu_reset",
    "gpu_identity",
    "aer",
    "ecc_corrected",
    "ecc_uncorrected",
    "remap_correctable",
    "remap_uncorrectable",
    "remap_pending",
    "remap_failure",
    "clock_event",
    "temperature",
    "memory_temperature",
    "pcie_replay",
    "pcie_link",
    "power",
    "pod_evicted",
    "node_not_ready",
    "nccl_init",
    "nccl_timeout",
    "nccl_progress",
    "nccl_error",
    "gsp_timeout",
    "rm_error",
    "nvlink_crc",
    "nvlink_replay",
    "nvlink_recovery",
)
KIND_ID: Final[dict[str, int]] = {name: i for i, name in enumerate(KINDS)}

SOURCES: Final[tuple[str, ...]] = ("kmsg", "dcgm", "smi", "nvml", "k8s", "nccl", "jsonl")
SOURCE_ID: Final[dict[str, int]] = {name: i for i, name in enumerate(SOURCES)}

CLOCKS: Final[tuple[str, ...]] = ("none", "wall", "boot")
CLOCK_ID: Final[dict[str, int]] = {name: i for i, name in enumerate(CLOCKS)}

# Index 0 is "absent" for the two small enumerations below.
SEVERITIES: Final[tuple[str | None, ...]] = (None, "corrected", "nonfatal", "fatal")
SEVERITY_ID: Final[dict[str, int]] = {s: i for i, s in enumerate(SEVERITIES) if s}
SCOPES: Final[tuple[str | None, ...]] = (None, "volatile", "aggregate")
SCOPE_ID: Final[dict[str, int]] = {s: i for i, s in enumerate(SCOPES) if s}

# Field name -> (dtype, absent value, how JSON shows it).
#   "enum:<table>" columns hold an index into one of the tables above;
#   "str" columns hold an id into the batch's string table.
_F64 = np.dtype(np.float64)
_I64 = np.dtype(np.int64)
_I32 = np.dtype(np.int32)
_I8 = np.dtype(np.int8)
FIELDS: Final[dict[str, tuple[np.dtype[Any], float | int, str]]] = {
    "kind": (_I8, -1, "enum:kind"),
    "ts": (_F64, np.nan, "float"),
    "clock": (_I8, 0, "enum:clock"),
    "source": (_I8, -1, "enum:source"),
    "file": (_I32, -1, "str"),
    "line": (_I64, -1, "int"),
    "node": (_I32, -1, "str"),
    "pci": (_I32, -1, "str"),
    "gpu": (_I32, -1, "int"),
    "link": (_I32, -1, "int"),
    "uuid": (_I32, -1, "str"),
    "serial": (_I32, -1, "str"),
    "code": (_I64, -1, "int"),
    "severity": (_I8, 0, "enum:severity"),
    "scope": (_I8, 0, "enum:scope"),
    "value": (_F64, np.nan, "float"),
    "rank": (_I64, -1, "int"),
    "seq": (_I64, -1, "int"),
    "op": (_I32, -1, "str"),
    "last_completed": (_I64, -1, "int"),
    "last_enqueued": (_I64, -1, "int"),
    "job": (_I32, -1, "str"),
    "pod": (_I32, -1, "str"),
    "namespace": (_I32, -1, "str"),
    "reason": (_I32, -1, "str"),
    "pid": (_I64, -1, "int"),
    "process": (_I32, -1, "str"),
    "detail": (_I32, -1, "str"),
}
STRING_FIELDS: Final[frozenset[str]] = frozenset(
    name for name, (_, _, shown) in FIELDS.items() if shown == "str"
)
_ENUM_TABLES: Final[dict[str, Sequence[str | None]]] = {
    "kind": KINDS,
    "clock": CLOCKS,
    "source": SOURCES,
    "severity": SEVERITIES,
    "scope": SCOPES,
}
# each enum field's table, by the field's name (slicing "enum:..." would be a new
# string on every value shown)
FIELD_ENUMS: Final[dict[str, Sequence[str | None]]] = {
    name: _ENUM_TABLES[shown[5:]]
    for name, (_, _, shown) in FIELDS.items()
    if shown.startswith("enum:")
}
SHOWN_STR, SHOWN_INT, SHOWN_FLOAT, SHOWN_ENUM = range(4)
FIELD_SHOWN: Final[dict[str, tuple[int, Sequence[str | None]]]] = {
    name: (
        {"str": SHOWN_STR, "int": SHOWN_INT, "float": SHOWN_FLOAT}.get(shown, SHOWN_ENUM),
        FIELD_ENUMS.get(name, ()),
    )
    for name, (_, _, shown) in FIELDS.items()
}
"""How each field's raw value is shown (``SHOWN_*``; absent: -1, or NaN for a float),
and an enum field's table: what ``EventBatch.value`` and evidence lines read."""
# The fields every event has, always shown in JSON even when null.
ALWAYS_SHOWN: Final[frozenset[str]] = frozenset(
    {"kind", "ts", "clock", "source", "file", "line", "node"}
)

# How ``BatchBuilder.add`` encodes a field: interned (string fields), looked up in an
# enumeration's table, or stored as given (numbers: absent from this map).
_STRING: Final[dict[str, int]] = {}
_ENCODERS: Final[dict[str, dict[str, int]]] = {
    **{name: _STRING for name in STRING_FIELDS},
    "kind": KIND_ID,
    "clock": CLOCK_ID,
    "source": SOURCE_ID,
    "severity": SEVERITY_ID,
    "scope": SCOPE_ID,
}

BATCH_SIZE: Final[int] = 1024

# The Python ints each numeric column can hold: int64 or int32, or what a float64 holds.
_FLOAT_MAX: Final[int] = int(np.finfo(np.float64).max)
_INT_RANGE: Final[dict[str, tuple[int, int]]] = {
    name: (
        (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max))
        if shown == "int"
        else (-_FLOAT_MAX, _FLOAT_MAX)
    )
    for name, (dtype, _, shown) in FIELDS.items()
    if shown in ("int", "float")
}


class BadRecord(ValueError):
    """A record that cannot become an event: a value outside its column, an unknown name.

    ``reason`` is what the read statistics count it under (``out of range``, …).
    """

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(f"{reason}: {field}")
        self.reason = reason
        self.field = field


@dataclass(frozen=True, slots=True)
class EventBatch:
    """Parallel columns of events plus the string table their string ids point into."""

    columns: dict[str, npt.NDArray[Any]]
    strings: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.columns["kind"].shape[0])

    def __getitem__(self, field: str) -> npt.NDArray[Any]:
        return self.columns[field]

    def string(self, string_id: int) -> str | None:
        """The string behind an id of a string column (None for absent)."""
        return None if string_id < 0 else self.strings[string_id]

    def kind_mask(self, *kinds: str) -> npt.NDArray[np.bool_]:
        """A boolean mask of the rows whose kind is one of ``kinds``."""
        return np.isin(self.columns["kind"], [KIND_ID[k] for k in kinds])

    def take(self, rows: npt.NDArray[np.intp] | slice) -> EventBatch:
        """The events at ``rows``, in that order (the string table is shared)."""
        return EventBatch({name: col[rows] for name, col in self.columns.items()}, self.strings)

    def value(self, field: str, row: int) -> Any:
        """One field of one event as a plain value (None when absent)."""
        # item(row) reads the plain value from the array; column[row].item() would make
        # a NumPy scalar first (allocations per field of every evidence line)
        return self._shown(field, self.columns[field].item(row))

    def record(self, row: int) -> dict[str, Any]:
        """One event as a dict of its present fields."""
        return {
            name: value
            for name in FIELDS
            if (value := self.value(name, row)) is not None or name in ALWAYS_SHOWN
        }

    def records(self) -> Iterator[dict[str, Any]]:
        """Each event as a dict of its present fields, for tests and other readers (not
        hot: ``parse`` writes its lines by column, ``sinks/event_lines.py``)."""
        cols = {name: col.tolist() for name, col in self.columns.items()}
        for i in range(len(self)):
            yield {
                name: value
                for name in FIELDS
                if (value := self._shown(name, cols[name][i])) is not None or name in ALWAYS_SHOWN
            }

    def _shown(self, name: str, raw: Any) -> Any:
        """A column's raw value as a plain one (None when absent). One lookup of how the
        field is shown, strings read here: evidence lines call this a dozen times each."""
        shown, table = FIELD_SHOWN[name]
        if shown == SHOWN_STR:
            return None if raw < 0 else self.strings[raw]
        if shown == SHOWN_INT:
            return None if raw < 0 else raw
        if shown == SHOWN_FLOAT:
            return None if raw != raw else raw  # NaN is absent
        return None if raw < 0 else table[raw]


class BatchBuilder:
    """Accumulates events field by field and seals them into an ``EventBatch``.

    Storage is sparse: each field keeps (row, value) pairs only for rows that have it,
    so a record pays for the fields it sets, not for all 27. A compiled reader
    (``sources/kmsg_compiled.py``) writes its rows in place instead, into typed columns
    (``columns_in_place``) that ``seal`` starts from; a row is written one way or the
    other, never both.
    """

    __slots__ = ("_dense", "_interned", "_rows", "_slots", "_strings")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._rows = 0
        # field -> (rows that have it, their values, how to encode a value)
        self._slots: dict[str, tuple[list[int], list[Any], dict[str, int] | None]] = {
            name: ([], [], _ENCODERS.get(name)) for name in FIELDS
        }
        self._strings: list[str] = []
        self._interned: dict[str, int] = {}
        self._dense: dict[str, npt.NDArray[Any]] | None = None  # made by columns_in_place

    def __len__(self) -> int:
        return self._rows

    def intern(self, text: str) -> int:
        """The id of ``text`` in this batch's string table (added if new)."""
        found = self._interned.get(text)
        if found is None:
            found = self._interned[text] = len(self._strings)
            self._strings.append(text)
        return found

    def columns_in_place(self, room: int) -> dict[str, npt.NDArray[Any]]:
        """Every field as a typed column with room for ``room`` rows past ``len(self)``,
        "absent" in every row not written in place: a compiled reader writes the fields
        of rows ``len(self)``, ``len(self) + 1``, … here, then says how many it wrote
        (``added_in_place``). String fields hold ids from ``intern``."""
        dense = self._dense
        need = self._rows + room
        if dense is None or len(dense["kind"]) < need:
            grown = {
                name: np.full(max(need, BATCH_SIZE), absent, dtype=dtype)
                for name, (dtype, absent, _) in FIELDS.items()
            }
            if dense is not None:
                for name, column in dense.items():
                    grown[name][: len(column)] = column
            dense = self._dense = grown
        return dense

    def added_in_place(self, rows: int) -> None:
        """``rows`` more events were written in place, after the ones before."""
        if self._dense is None or self._rows + rows > len(self._dense["kind"]):
            raise ValueError("rows added in place past the columns given out")
        self._rows += rows

    def add(self, fields: dict[str, Any]) -> None:
        """Append one event; ``fields`` maps field names to plain values (None: absent).

        ``kind``, ``source``, ``clock``, ``severity`` and ``scope`` are given by name.
        A value its column cannot hold (an integer past int64, a GPU index past int32,
        an unknown enumeration value or field) raises ``BadRecord`` and adds nothing:
        one bad record never spoils the batch it would have joined.
        """
        row = self._rows
        slots = self._slots
        try:
            for name, value in fields.items():
                if value is None:
                    continue
                rows, values, encode = slots[name]
                if encode is not None:
                    if encode is _STRING:
                        found = self._interned.get(value)
                        if found is None:
                            found = self._interned[value] = len(self._strings)
                            self._strings.append(value)
                        value = found
                    else:
                        value = encode[value]
                elif value.__class__ is int:
                    low, high = _INT_RANGE[name]
                    if not low <= value <= high:
                        raise BadRecord("out of range", name)
                rows.append(row)
                values.append(value)
        except (KeyError, TypeError) as exc:
            self._forget(row)
            raise BadRecord("unknown field or value", str(exc)) from None
        except BadRecord:
            self._forget(row)
            raise
        self._rows = row + 1

    def _forget(self, row: int) -> None:
        """Take back what a failed ``add`` appended for ``row``."""
        for rows, values, _ in self._slots.values():
            if rows and rows[-1] == row:
                rows.pop()
                values.pop()

    def seal(self) -> EventBatch:
        """The batch so far; the builder starts empty again."""
        n = self._rows
        columns: dict[str, npt.NDArray[Any]] = {}
        dense = self._dense
        for name, (dtype, absent, _) in FIELDS.items():
            # rows written in place (compiled), "absent" in the others: else all absent
            column = np.full(n, absent, dtype=dtype) if dense is None else dense[name][:n].copy()
            rows, values, _encode = self._slots[name]
            if rows:
                column[np.asarray(rows, dtype=np.int64)] = values
            columns[name] = column
        batch = EventBatch(columns=columns, strings=tuple(self._strings))
        self._reset()
        return batch


def concat(batches: Sequence[EventBatch]) -> EventBatch:
    """One batch of all events of ``batches``, with one string table for them all."""
    if not batches:
        return empty_batch()
    strings: list[str] = []
    interned: dict[str, int] = {}
    remaps = []
    for batch in batches:
        ids = []
        for text in batch.strings:
            found = interned.get(text)
            if found is None:
                found = interned[text] = len(strings)
                strings.append(text)
            ids.append(found)
        # index -1 (absent) must stay -1: append it as the map's last entry
        remaps.append(np.asarray([*ids, -1], dtype=np.int32))
    columns: dict[str, npt.NDArray[Any]] = {}
    for name in FIELDS:
        parts = [b.columns[name] for b in batches]
        if name in STRING_FIELDS:
            parts = [remap[col] for remap, col in zip(remaps, parts, strict=True)]
        columns[name] = np.concatenate(parts)
    return EventBatch(columns, tuple(strings))


def empty_batch() -> EventBatch:
    """A batch with no events (every column present, length 0)."""
    return BatchBuilder().seal()

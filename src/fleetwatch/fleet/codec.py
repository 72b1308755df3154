"""An ``EventBatch`` as the bytes of one stream entry, and back.

Layout (version 1)::

    b"FWB" version:u8  header_len:u32 (little endian)  header (JSON)  columns  strings (JSON)

The header is ``{"rows": n, "columns": [[name, dtype, nbytes], ...], "strings": nbytes}``;
the columns follow it as raw little-endian arrays in that order, then the string table
as a JSON list. Raw arrays cost one copy each way (no per-event objects); JSON for the
strings because they are few per batch and must stay text. Nothing is unpickled or
evaluated.

``decode`` trusts nothing: a wrong magic, version, length, dtype, an unknown or missing
column, a string id outside the table, an enumeration value outside its table or an
infinite number raises
``CodecError``, which a reader counts and skips; a detector never sees a batch that
could make it index out of range.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import _ENUM_TABLES, FIELDS, STRING_FIELDS, EventBatch

MAGIC: Final = b"FWB"
VERSION: Final = 1
_PREFIX: Final = struct.Struct("<3sBI")


class CodecError(ValueError):
    """A stream entry that is not a batch this version can read."""


def encode(batch: EventBatch) -> bytes:
    """The entry bytes of ``batch``, with only the strings its rows use."""
    batch = compact(batch)
    columns = []
    blobs: list[bytes] = []
    for name in FIELDS:
        column = np.ascontiguousarray(batch.columns[name])
        wire = column.dtype.newbyteorder("<")
        blob = column.astype(wire, copy=False).tobytes()
        columns.append([name, wire.str, len(blob)])
        blobs.append(blob)
    strings = json.dumps(list(batch.strings), ensure_ascii=False).encode()
    header = json.dumps(
        {"rows": len(batch), "columns": columns, "strings": len(strings)},
        separators=(",", ":"),
    ).encode()
    return b"".join([_PREFIX.pack(MAGIC, VERSION, len(header)), header, *blobs, strings])


def decode(data: bytes) -> EventBatch:
    """The batch ``encode`` made ``data`` from; ``CodecError`` for anything else."""
    if len(data) < _PREFIX.size:
        raise CodecError("entry shorter than its prefix")
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("not a fleetwatch batch (bad magic)")
    if version != VERSION:
        raise CodecError(f"batch version {version}, this reader knows {VERSION}")
    at = _PREFIX.size
    header = _json(data[at : at + header_len], "header")
    at += header_len
    if not isinstance(header, dict):
        raise CodecError("header is not an object")
    rows = header.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise CodecError("header: bad row count")
    listed = header.get("columns")
    if not isinstance(listed, list):
        raise CodecError("header: no column list")
    columns: dict[str, npt.NDArray[Any]] = {}
    for item in listed:
        if not (isinstance(item, list) and len(item) == 3):
            raise CodecError("header: bad column entry")
        name, dtype_text, nbytes = item
        if not isinstance(name, str) or name not in FIELDS or name in columns:
            raise CodecError(f"header: unknown or repeated column {name!r}")
        expected = FIELDS[name][0]
        if (
            not isinstance(dtype_text, str)
            or np.dtype(expected).newbyteorder("<").str != dtype_text
        ):
            raise CodecError(f"column {name}: dtype {dtype_text!r}, expected {expected}")
        if (
            not isinstance(nbytes, int)
            or isinstance(nbytes, bool)
            or nbytes != rows * expected.itemsize
            or at + nbytes > len(data)
        ):
            raise CodecError(f"column {name}: {nbytes} bytes for {rows} rows")
        raw = np.frombuffer(data, dtype=dtype_text, count=rows, offset=at)
        columns[name] = raw.astype(expected)  # native order, and writable (take copies)
        at += nbytes
    missing = set(FIELDS) - set(columns)
    if missing:
        raise CodecError(f"missing columns: {', '.join(sorted(missing))}")
    size = header.get("strings")
    if not isinstance(size, int) or isinstance(size, bool) or at + size != len(data):
        raise CodecError("string table length does not match the entry")
    strings = _json(data[at:], "string table")
    if not (isinstance(strings, list) and all(isinstance(s, str) for s in strings)):
        raise CodecError("string table is not a list of strings")
    _check_ranges(columns, len(strings))
    return EventBatch(columns, tuple(strings))


def compact(batch: EventBatch) -> EventBatch:
    """``batch`` with a string table of only the strings its rows use.

    A part of a large batch (``EventBatch.take``) shares the whole table; an entry
    should carry only its own.
    """
    used = np.unique(np.concatenate([batch.columns[name] for name in STRING_FIELDS]))
    used = used[used >= 0]
    if used.size == len(batch.strings):
        return batch
    remap = np.full(len(batch.strings) + 1, -1, dtype=np.int32)  # the last: absent
    remap[used] = np.arange(used.size, dtype=np.int32)
    columns = dict(batch.columns)
    for name in STRING_FIELDS:
        columns[name] = remap[batch.columns[name]]
    return EventBatch(columns, tuple(batch.strings[i] for i in used.tolist()))


def _json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:  # not UTF-8, not JSON, a number past Python's digit limit
        raise CodecError(f"{what}: not JSON ({str(exc)[:80]})") from None
    except RecursionError:  # nested past Python's stack: no header is
        raise CodecError(f"{what}: nested too deep") from None


def _check_ranges(columns: dict[str, npt.NDArray[Any]], n_strings: int) -> None:
    """String ids and enumeration values inside their tables (absent is -1 or 0), and
    no infinite number (absent is NaN; a finding's time cannot be infinite)."""
    for name, column in columns.items():
        if column.dtype.kind == "f" and np.isinf(column).any():
            raise CodecError(f"column {name}: an infinite value")
    for name in STRING_FIELDS:
        column = columns[name]
        if column.size and (column.min() < -1 or column.max() >= n_strings):
            raise CodecError(f"column {name}: string id outside the table")
    for name, table in _ENUM_TABLES.items():
        column = columns[name]
        if column.size and (column.min() < -1 or column.max() >= len(table)):
            raise CodecError(f"column {name}: value outside its table")

"""``parse``'s output: each event as one JSON line, written column by column.

The bytes are those of ``json_line(record)`` for each of ``EventBatch.records()``: the
fields in ``FIELDS`` order, an absent one left out (null where it is always shown),
every unprintable character escaped. They are made by column, not by event: each of a
batch's strings and enumeration values is encoded once, each number by one ``repr``
over its column, and every field's pieces carry their key, so the lines are one join
of them, row after row. (Building a dict per event and encoding it took three times
as long as reading a fleet's logs.)
"""

from __future__ import annotations

from itertools import chain
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import ALWAYS_SHOWN, FIELD_ENUMS, FIELDS, EventBatch
from fleetwatch.sinks.json_line import json_text

_NULL: Final = "null"


def _key(name: str) -> str:
    """What goes before a field's value: its key, after the field before it."""
    return '{"kind": ' if name == "kind" else f', "{name}": '


# an absent field's piece: its key and null where it is always shown, else nothing
_ABSENT: Final = {name: _key(name) + _NULL if name in ALWAYS_SHOWN else "" for name in FIELDS}


def _enum_pieces(name: str) -> npt.NDArray[np.object_]:
    """Each of an enumeration's values as its field's piece, and last, for -1, the
    absent piece (a value None, index 0 of some, is absent too)."""
    key, absent = _key(name), _ABSENT[name]
    pieces = [absent if v is None else key + json_text(v) for v in FIELD_ENUMS[name]]
    return np.array([*pieces, absent], dtype=object)


_ENUM_PIECES: Final = {name: _enum_pieces(name) for name in FIELD_ENUMS}


def event_lines(batch: EventBatch) -> str:
    """Every event of ``batch`` as a JSON line, in order."""
    if not len(batch):
        return ""
    columns: list[list[str]] = []
    strings: npt.NDArray[np.object_] | None = None
    for name, (_, _, shown) in FIELDS.items():
        column = batch.columns[name]
        if shown in ("str", "int", "float"):
            present = column >= 0 if shown != "float" else ~np.isnan(column)
            if not present.any() and name not in ALWAYS_SHOWN:
                continue
            if shown == "str":
                if strings is None:  # the batch's strings, each encoded once
                    encoded = [json_text(text) for text in batch.strings]
                    strings = np.array([*encoded, ""], dtype=object)
                texts = strings[column].tolist()
            else:
                texts = map(int.__repr__ if shown == "int" else float.__repr__, column.tolist())
            key, absent = _key(name), _ABSENT[name]
            columns.append(
                [
                    key + text if p else absent
                    for text, p in zip(texts, present.tolist(), strict=True)
                ]
            )
        else:
            pieces = _ENUM_PIECES[name][column]
            columns.append(pieces.tolist())
    columns.append(["}\n"] * len(batch))
    return "".join(chain.from_iterable(zip(*columns, strict=True)))

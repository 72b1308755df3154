"""fleetwatch's own events, read back: the output of ``fleetwatch parse --output jsonl``.

Each line is one event with the fields of ``events.FIELDS``. Reading them back means
a capture can be parsed once, filtered with ``jq``, and replayed; and test data for
the detectors can be written as events (the real H100 NVML series is stored so).
The event keeps its own ``source``, ``file`` and ``line`` when it has them.
A line whose fields have the wrong types is counted unreadable ("invalid event"); one
with a number its column cannot hold (an int past int64), or a time no clock shows
(past year 9999), "out of range".
"""

from __future__ import annotations

import math
import sys
from typing import Any, Final

import numpy as np

from fleetwatch.events import CLOCK_ID, FIELDS, KIND_ID, SCOPE_ID, SEVERITY_ID, SOURCE_ID
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.envelope import showable
from fleetwatch.sources.numbers import OUT_OF_RANGE

_ENUMS: Final[dict[str, dict[str, int]]] = {
    "kind": KIND_ID,
    "source": SOURCE_ID,
    "clock": CLOCK_ID,
    "severity": SEVERITY_ID,
    "scope": SCOPE_ID,
}
_INVALID: Final = "invalid event"
_INT_MOST: Final[dict[str, int]] = {
    name: int(np.iinfo(dtype).max) for name, (dtype, _, shown) in FIELDS.items() if shown == "int"
}
_FLOAT_MOST: Final = int(sys.float_info.max)
_FLOAT_LEAST: Final = -_FLOAT_MOST
_NUMBER: Final = (int, float)  # a tuple: "int | float" builds a new union at each call


def _problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be field ``name`` of an event; None if it can."""
    shown = FIELDS[name][2]
    if shown.startswith("enum:"):
        return None if isinstance(value, str) and value in _ENUMS[name] else _INVALID
    if shown == "str":
        return None if isinstance(value, str) else _INVALID
    if isinstance(value, bool) or not isinstance(value, _NUMBER):
        return _INVALID
    if shown == "int":
        if not isinstance(value, int) or value < 0:
            return _INVALID
        return None if value <= _INT_MOST[name] else OUT_OF_RANGE
    if isinstance(value, float) and not math.isfinite(value):
        return _INVALID
    if not _FLOAT_LEAST <= value <= _FLOAT_MOST:
        return OUT_OF_RANGE
    return OUT_OF_RANGE if name == "ts" and not showable(value) else None


def read(obj: dict[str, Any], line: int, ctx: FileContext) -> None:
    """Emit the event ``obj`` describes."""
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        if value is None or name not in FIELDS:
            continue
        problem = _problem(name, value)
        if problem is not None:
            ctx.stats.bad("jsonl", problem)
            return
        fields[name] = value
    fields.setdefault("source", "jsonl")
    fields.setdefault("clock", "none" if fields.get("ts") is None else "wall")
    fields.setdefault("line", line)
    ctx.emit(fields)

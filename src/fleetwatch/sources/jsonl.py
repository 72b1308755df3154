"""fleetwatch's own events, read back: the output of ``fleetwatch parse --output jsonl``.

Each line is one event with the fields of ``events.FIELDS``. Reading them back means
a capture can be parsed once, filtered with ``jq``, and replayed; and test data for
the detectors can be written as events (the real H100 NVML series is stored so).
The event keeps its own ``source``, ``file`` and ``line`` when it has them.
A line whose fields have the wrong types is counted unreadable ("invalid event").
"""

from __future__ import annotations

import math
from typing import Any, Final

from fleetwatch.events import CLOCK_ID, FIELDS, KIND_ID, SCOPE_ID, SEVERITY_ID, SOURCE_ID
from fleetwatch.sources.context import FileContext

_ENUMS: Final[dict[str, dict[str, int]]] = {
    "kind": KIND_ID,
    "source": SOURCE_ID,
    "clock": CLOCK_ID,
    "severity": SEVERITY_ID,
    "scope": SCOPE_ID,
}


def _valid(name: str, value: Any) -> bool:
    shown = FIELDS[name][2]
    if shown.startswith("enum:"):
        return value in _ENUMS[name]
    if shown == "str":
        return isinstance(value, str)
    if shown == "int":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read(obj: dict[str, Any], line: int, ctx: FileContext) -> None:
    """Emit the event ``obj`` describes."""
    fields: dict[str, Any] = {}
    for name, value in obj.items():
        if value is None or name not in FIELDS:
            continue
        if not _valid(name, value):
            ctx.stats.bad("jsonl", "invalid event")
            return
        fields[name] = value
    fields.setdefault("source", "jsonl")
    fields.setdefault("clock", "none" if fields.get("ts") is None else "wall")
    fields.setdefault("line", line)
    ctx.emit(fields)

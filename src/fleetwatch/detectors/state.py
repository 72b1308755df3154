"""Detector state as JSON: saved by one process, restored by another.

A detector's state is its attributes (incident books, per-entity counters), all keyed
by strings from the events, never by a batch's string ids, so a checkpoint means the
same on another machine. ``dump`` turns it into JSON-able data; ``load`` turns that
back. The types JSON lacks are tagged: tuples, sets, deques, dicts with non-string
keys, the ``Severity`` and ``Action`` enums, and the dataclasses registered with
``register``. Nothing is evaluated; an unknown tag is an error.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from fleetwatch.findings import Action, Severity

_TYPES: dict[str, type] = {}
_FIELDS: dict[type, tuple[str, ...]] = {}  # a registered dataclass's field names, cached


class StateError(ValueError):
    """A saved state that this version cannot read."""


def register(cls: type) -> type:
    """Allow instances of the dataclass ``cls`` in saved state (a class decorator)."""
    if cls.__name__ in _TYPES and _TYPES[cls.__name__] is not cls:
        raise ValueError(f"two state types are named {cls.__name__!r}")
    _TYPES[cls.__name__] = cls
    return cls


_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})
"""Types that are their own JSON (exactly these: an ``IntEnum`` is an int, but tagged)."""


def _items(values: Any) -> list[Any]:
    # the plain test inline: most of a state is numbers and strings, and a call per
    # value was most of a correlator's commit (fleet/correlate.py)
    return [v if type(v) in _PLAIN else dump(v) for v in values]


_DUMPERS: dict[type, Any] = {
    list: _items,
    tuple: lambda v: {"$tuple": _items(v)},
    set: lambda v: {"$set": sorted(_items(v), key=repr)},
    frozenset: lambda v: {"$set": sorted(_items(v), key=repr)},
    deque: lambda v: {"$deque": _items(v), "maxlen": v.maxlen},
    dict: lambda v: {"$dict": [_items(pair) for pair in v.items()]},
    Severity: lambda v: {"$severity": v.name},
    Action: lambda v: {"$action": v.value},
}
"""Exact type -> its tagged form; subclasses and dataclasses go the slow way."""


def dump(value: Any) -> Any:
    """``value`` as data ``json.dumps`` can write."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    dumper = _DUMPERS.get(kind)
    if dumper is not None:
        return dumper(value)
    if _TYPES.get(kind.__name__) is kind:
        return _dump_dataclass(value)
    return _dump_other(value)


def _dump_dataclass(value: Any) -> Any:
    names = _FIELDS.get(type(value))
    if names is None:
        names = _FIELDS[type(value)] = tuple(f.name for f in dataclasses.fields(value))
    fields = {}
    for name in names:
        v = getattr(value, name)
        fields[name] = v if type(v) in _PLAIN else dump(v)
    return {"$type": type(value).__name__, "fields": fields}


def _dump_other(value: Any) -> Any:
    """Subclasses of the types above, and registered dataclasses."""
    if isinstance(value, Severity):
        return {"$severity": value.name}
    if isinstance(value, Action):
        return {"$action": value.value}
    if isinstance(value, bool | str | int | float):
        return value
    for base, dumper in _DUMPERS.items():
        if isinstance(value, base):
            return dumper(value)
    if dataclasses.is_dataclass(value) and type(value).__name__ in _TYPES:
        return _dump_dataclass(value)
    raise StateError(f"cannot save a {type(value).__name__} in detector state")


def load(data: Any) -> Any:
    """The value ``dump`` made ``data`` from."""
    if data is None or isinstance(data, bool | str | int | float):
        return data
    if isinstance(data, list):
        return [load(v) for v in data]
    if not isinstance(data, dict):
        raise StateError(f"unexpected {type(data).__name__} in saved state")
    if "$severity" in data:
        return Severity[data["$severity"]]
    if "$action" in data:
        return Action(data["$action"])
    if "$tuple" in data:
        return tuple(load(v) for v in data["$tuple"])
    if "$set" in data:
        return {load(v) for v in data["$set"]}
    if "$deque" in data:
        return deque((load(v) for v in data["$deque"]), maxlen=data.get("maxlen"))
    if "$dict" in data:
        return {load(k): load(v) for k, v in data["$dict"]}
    if "$type" in data:
        cls = _TYPES.get(data["$type"])
        if cls is None:
            raise StateError(f"unknown state type {data['$type']!r}")
        return cls(**{name: load(v) for name, v in data["fields"].items()})
    raise StateError(f"unknown tag in saved state: {sorted(data)[:3]}")


class Stateful:
    """``state()`` and ``restore()`` for a detector whose attributes are its state.

    Everything but ``config`` and scratch attributes (named with a leading underscore)
    is saved; restoring sets the saved attributes on a detector built with its own
    (possibly newer) config.
    """

    def state(self) -> dict[str, Any]:
        """The detector's state as JSON-able data."""
        return {
            name: dump(value)
            for name, value in vars(self).items()
            if name != "config" and not name.startswith("_")
        }

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from ``saved``, as returned by ``state``."""
        for name, value in saved.items():
            if name == "config" or not hasattr(self, name):
                raise StateError(f"{type(self).__name__} has no state named {name!r}")
            setattr(self, name, load(value))

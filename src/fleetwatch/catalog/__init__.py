"""The catalog: facts about GPUs and logs, kept as data files beside this module.

Each loader reads one TOML file, checks it against its schema and returns plain
read-only mappings. A malformed file raises ``CatalogError`` naming the file and the
entry, so a bad edit fails at start-up (and in the test that loads every file), never
in the middle of a stream. ``README.md`` beside this file says how to add an entry.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from fleetwatch.events import KIND_ID, SCOPE_ID

__all__ = [
    "AerBits",
    "CatalogError",
    "ClockReason",
    "MetricRule",
    "aer_bits",
    "clock_event_reasons",
    "dcgm_metrics",
    "months",
    "smi_query_columns",
]


class CatalogError(ValueError):
    """A shipped data file does not match its schema."""


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog/{name}: {exc}") from exc


def _require(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise CatalogError(f"{where}: `{key}` must be a {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class AerBits:
    """AER status bit -> today's error name, per register; old spellings -> new."""

    correctable: MappingProxyType[int, str]
    uncorrectable: MappingProxyType[int, str]
    new_name: MappingProxyType[str, str]


@cache
def aer_bits() -> AerBits:
    """The AER error bits of ``aer.toml``."""
    data = _load("aer.toml")
    tables: dict[str, dict[int, str]] = {"correctable": {}, "uncorrectable": {}}
    renames: dict[str, str] = {}
    for register, table in tables.items():
        for i, entry in enumerate(data.get(register, [])):
            where = f"catalog/aer.toml: {register}[{i}]"
            bit = _require(entry, "bit", int, where)
            if not 0 <= bit < 32 or bit in table:
                raise CatalogError(f"{where}: bit {bit} is out of range or repeated")
            name = _require(entry, "name", str, where)
            table[bit] = name
            renames[_require(entry, "old_name", str, where).lower()] = name
            renames[name.lower()] = name
    if not tables["correctable"] or not tables["uncorrectable"]:
        raise CatalogError("catalog/aer.toml: both registers need entries")
    return AerBits(
        MappingProxyType(tables["correctable"]),
        MappingProxyType(tables["uncorrectable"]),
        MappingProxyType(renames),
    )


@dataclass(frozen=True, slots=True)
class ClockReason:
    """One clocks-event reason bit."""

    bit: int
    name: str
    smi_label: str
    xml_tag: str


@cache
def clock_event_reasons() -> tuple[ClockReason, ...]:
    """The clocks event reasons of ``clock_event_reasons.toml``."""
    reasons = []
    for i, entry in enumerate(_load("clock_event_reasons.toml").get("reason", [])):
        where = f"catalog/clock_event_reasons.toml: reason[{i}]"
        bit = _require(entry, "bit", int, where)
        if bit <= 0 or bit & (bit - 1):
            raise CatalogError(f"{where}: bit {bit:#x} is not a single bit")
        reasons.append(
            ClockReason(
                bit,
                _require(entry, "name", str, where),
                _require(entry, "smi_label", str, where),
                _require(entry, "xml_tag", str, where),
            )
        )
    if not reasons:
        raise CatalogError("catalog/clock_event_reasons.toml: no reasons")
    return tuple(reasons)


@dataclass(frozen=True, slots=True)
class MetricRule:
    """What one metric or column becomes: an event kind, a counter scope, a link part."""

    kind: str
    scope: str | None = None
    link: str | None = None


def _rules(name: str, table: str) -> MappingProxyType[str, MetricRule]:
    rules: dict[str, MetricRule] = {}
    for key, entry in _load(name).get(table, {}).items():
        where = f"catalog/{name}: {table}.{key}"
        kind = _require(entry, "kind", str, where)
        if kind not in KIND_ID:
            raise CatalogError(f"{where}: unknown event kind {kind!r}")
        scope = entry.get("scope")
        if scope is not None and scope not in SCOPE_ID:
            raise CatalogError(f"{where}: unknown scope {scope!r}")
        link = entry.get("link")
        if link not in (None, "width", "gen"):
            raise CatalogError(f"{where}: link must be width or gen, got {link!r}")
        rules[key] = MetricRule(kind, scope, link)
    if not rules:
        raise CatalogError(f"catalog/{name}: no entries")
    return MappingProxyType(rules)


@cache
def dcgm_metrics() -> MappingProxyType[str, MetricRule]:
    """dcgm-exporter metric name -> event rule (``dcgm_fields.toml``)."""
    return _rules("dcgm_fields.toml", "metric")


@cache
def smi_query_columns() -> MappingProxyType[str, MetricRule]:
    """``nvidia-smi --query-gpu`` column -> event rule (``smi_query_fields.toml``)."""
    return _rules("smi_query_fields.toml", "column")


@cache
def months() -> MappingProxyType[str, int]:
    """Lowercased month abbreviation (any shipped locale) -> month number."""
    table = _load("months.toml")
    for key, value in table.items():
        if not isinstance(value, int) or not 1 <= value <= 12:
            raise CatalogError(f"catalog/months.toml: {key} = {value!r} is not a month")
    return MappingProxyType(table)

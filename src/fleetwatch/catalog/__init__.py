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
from fleetwatch.findings import Action, Severity

__all__ = [
    "AerBits",
    "CatalogError",
    "ClockReason",
    "MetricRule",
    "RmFault",
    "SmiField",
    "SmiReportFields",
    "XidEntry",
    "aer_bits",
    "clock_event_reasons",
    "dcgm_metrics",
    "months",
    "rm_faults",
    "smi_query_columns",
    "smi_report_fields",
    "xid",
    "xid_catalog",
    "xids_owned_by",
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
    """AER status bit -> today's error name, per register; old spellings -> new.

    ``fatal_mask``: the uncorrectable bits that are fatal by default (the spec's
    default severity register), for a report that prints no severity of its own.
    """

    correctable: MappingProxyType[int, str]
    uncorrectable: MappingProxyType[int, str]
    new_name: MappingProxyType[str, str]
    fatal_mask: int = 0


@cache
def aer_bits() -> AerBits:
    """The AER error bits of ``aer.toml``."""
    data = _load("aer.toml")
    tables: dict[str, dict[int, str]] = {"correctable": {}, "uncorrectable": {}}
    renames: dict[str, str] = {}
    fatal_mask = 0
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
            if register == "uncorrectable" and _require(entry, "fatal", bool, where):
                fatal_mask |= 1 << bit
    if not tables["correctable"] or not tables["uncorrectable"]:
        raise CatalogError("catalog/aer.toml: both registers need entries")
    return AerBits(
        MappingProxyType(tables["correctable"]),
        MappingProxyType(tables["uncorrectable"]),
        MappingProxyType(renames),
        fatal_mask,
    )


@dataclass(frozen=True, slots=True)
class ClockReason:
    """One clocks-event reason bit."""

    bit: int
    name: str
    smi_label: str
    xml_tag: str
    dcgm_label: str | None = None  # the reason's name in dcgm-exporter's clock_event label


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
                _optional_str(entry, "dcgm_label", where),
            )
        )
    if not reasons:
        raise CatalogError("catalog/clock_event_reasons.toml: no reasons")
    return tuple(reasons)


@dataclass(frozen=True, slots=True)
class MetricRule:
    """What one metric or column becomes: an event kind, a counter scope, a link part.

    ``nvlink``: the NVLink link a per-link counter counts (absent for a GPU's total);
    ``counter``: which counter of its kind it is, where a kind has several (NVLink
    CRC errors are counted on flits and on data).
    """

    kind: str
    scope: str | None = None
    link: str | None = None
    nvlink: int | None = None
    counter: str | None = None
    reason_label: str | None = None
    """The label naming the clocks-event reason of a per-reason count in a window."""


def _optional_str(entry: dict[str, Any], key: str, where: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise CatalogError(f"{where}: {key} must be a string, got {value!r}")
    return value


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
        nvlink = entry.get("nvlink")
        if nvlink is not None and (
            not isinstance(nvlink, int) or isinstance(nvlink, bool) or not 0 <= nvlink < 64
        ):
            raise CatalogError(f"{where}: nvlink must be a link number 0-63, got {nvlink!r}")
        counter = entry.get("counter")
        if counter is not None and not isinstance(counter, str):
            raise CatalogError(f"{where}: counter must be a string, got {counter!r}")
        reason_label = _optional_str(entry, "reason_label", where)
        rules[key] = MetricRule(kind, scope, link, nvlink, counter, reason_label)
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


RM_FAULT_KINDS = frozenset({"gsp_timeout", "rm_error", "gpu_lost"})


@dataclass(frozen=True, slots=True)
class RmFault:
    """One NVRM phrase that names a fault without an Xid, and the event it becomes."""

    phrase: str
    kind: str
    name: str
    note: str


@cache
def rm_faults() -> tuple[RmFault, ...]:
    """The NVRM fault phrases of ``rm_errors.toml``, in the order they are tried."""
    faults = []
    for i, entry in enumerate(_load("rm_errors.toml").get("fault", [])):
        where = f"catalog/rm_errors.toml: fault[{i}]"
        phrase = _require(entry, "phrase", str, where)
        kind = _require(entry, "kind", str, where)
        if kind not in RM_FAULT_KINDS or kind not in KIND_ID:
            raise CatalogError(f"{where}: kind must be one of {sorted(RM_FAULT_KINDS)}")
        if not phrase.strip():
            raise CatalogError(f"{where}: empty phrase")
        _require(entry, "source", str, where)
        faults.append(
            RmFault(
                phrase,
                kind,
                _require(entry, "name", str, where),
                _require(entry, "note", str, where),
            )
        )
    if not faults:
        raise CatalogError("catalog/rm_errors.toml: no faults")
    return tuple(faults)


XID_CAUSES = frozenset(
    {"hardware", "driver", "application", "memory", "nvlink", "thermal_power", "gsp"}
)


@dataclass(frozen=True, slots=True)
class XidEntry:
    """What one Xid code means and what to do about it by default."""

    code: int
    name: str
    cause: str
    severity: Severity
    action: Action
    fatal: bool
    note: str
    owner: str = "xid_correlation"
    known: bool = True


@cache
def xid_catalog() -> MappingProxyType[int, XidEntry]:
    """Every Xid code of ``xid.toml``."""
    entries: dict[int, XidEntry] = {}
    for key, entry in _load("xid.toml").get("xid", {}).items():
        where = f"catalog/xid.toml: xid.{key}"
        if not key.isdigit():
            raise CatalogError(f"{where}: the code must be a number")
        cause = _require(entry, "cause", str, where)
        if cause not in XID_CAUSES:
            raise CatalogError(f"{where}: unknown cause {cause!r}")
        owner = _require(entry, "owner", str, where)
        if not owner.isidentifier():
            raise CatalogError(f"{where}: `owner` must name a detector, got {owner!r}")
        try:
            severity = Severity.parse(_require(entry, "severity", str, where))
            action = Action(_require(entry, "action", str, where))
        except ValueError as exc:
            raise CatalogError(f"{where}: {exc}") from exc
        entries[int(key)] = XidEntry(
            int(key),
            _require(entry, "name", str, where),
            cause,
            severity,
            action,
            _require(entry, "fatal", bool, where),
            _require(entry, "note", str, where),
            owner,
        )
    if not entries:
        raise CatalogError("catalog/xid.toml: no entries")
    return MappingProxyType(entries)


def xids_owned_by(detector: str) -> frozenset[int]:
    """The Xid codes ``detector`` judges (``owner`` in ``xid.toml``).

    Codes not in the catalog are ``xid_correlation``'s (it reports them as unknown).
    """
    return frozenset(code for code, entry in xid_catalog().items() if entry.owner == detector)


def xid(code: int) -> XidEntry:
    """The catalog entry of ``code``; an unknown code gets a safe default (warning,
    investigate) and says it is unknown."""
    found = xid_catalog().get(code)
    if found is not None:
        return found
    return XidEntry(
        code,
        f"Unknown Xid {code}",
        "driver",
        Severity.WARNING,
        Action.INVESTIGATE,
        False,
        "Not in fleetwatch's catalog: look it up in NVIDIA's Xid catalog for your driver.",
        known=False,
    )


@dataclass(frozen=True, slots=True)
class SmiField:
    """What one line of an ``nvidia-smi -q`` report becomes (``smi_report_fields.toml``)."""

    kind: str
    read: str = "number"
    combine: str = "last"
    link: str | None = None


@dataclass(frozen=True, slots=True)
class SmiReportFields:
    """The lines of ``nvidia-smi -q`` reports: read ones by path, known ones, renames."""

    fields: MappingProxyType[tuple[str, ...], SmiField]
    renamed: MappingProxyType[str, str]
    top_level: frozenset[str]
    gpu_level: frozenset[str]


@cache
def smi_report_fields() -> SmiReportFields:
    """The fields of ``smi_report_fields.toml``."""
    name = "smi_report_fields.toml"
    data = _load(name)
    fields: dict[tuple[str, ...], SmiField] = {}
    for i, entry in enumerate(data.get("field", [])):
        where = f"catalog/{name}: field[{i}]"
        path = entry.get("path")
        if not isinstance(path, list) or not path or not all(isinstance(p, str) for p in path):
            raise CatalogError(f"{where}: `path` must be a list of names")
        kind = _require(entry, "kind", str, where)
        if kind not in KIND_ID:
            raise CatalogError(f"{where}: unknown event kind {kind!r}")
        rule = SmiField(
            kind,
            entry.get("read", "number"),
            entry.get("combine", "last"),
            entry.get("link"),
        )
        combines = ("sum", "max", "first", "last")
        if rule.read not in ("number", "flag") or rule.combine not in combines:
            raise CatalogError(f"{where}: read is number or flag; combine sum, max, first or last")
        if rule.link not in (None, "width", "gen") or tuple(path) in fields:
            raise CatalogError(f"{where}: link must be width or gen, and a path is listed once")
        fields[tuple(path)] = rule
    known = data.get("known", {})
    renamed = data.get("renamed", {})
    if not fields or not all(isinstance(v, str) for v in renamed.values()):
        raise CatalogError(f"catalog/{name}: no fields, or a rename that is not a name")
    return SmiReportFields(
        MappingProxyType(fields),
        MappingProxyType(dict(renamed)),
        frozenset(known.get("top_level", [])),
        frozenset(known.get("gpu_level", [])),
    )

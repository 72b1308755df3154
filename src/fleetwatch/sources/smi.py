"""nvidia-smi snapshots: ``-q`` text, ``-q -x`` XML and ``--query-gpu … --format=csv``.

Each GPU in a snapshot becomes (source ``smi``): ``gpu_identity`` (PCI address, UUID,
board serial, index), ``clock_event`` (the reason bitmask, built from the "Clocks
Event Reasons" list, or "Clocks Throttle Reasons" before driver 535), ``ecc_corrected``
and ``ecc_uncorrected`` per scope (SRAM + DRAM, or single/double bit on old drivers),
the four remapped-row counters, ``temperature``, ``memory_temperature``, ``power``,
``pcie_replay`` and ``pcie_link``. ``N/A`` and ``[Not Supported]`` are no value.

Reports of drivers 470 to 595 are read (tests/data/smi holds one or more of each).
Which ``-q`` text lines become which event, and the sections renamed across driver
generations, are data: ``catalog/smi_report_fields.toml``; so is the list of lines
known to hold nothing we read. A report ends at its next banner or at a column-0 line
that is none of a report's: a GPU header, a padded ``Key   : value`` line, or a section
title over indented lines (580's ``vGPU Driver Capability``). A top-level line or a
GPU's first-level section no generation had is skipped and counted "unknown field"
(``ReadStats.skip``: not an error, a newer driver); a report (text or XML) with no GPU
block is counted "report without gpus". A pre-Ampere GPU's pending page retirement is
``remap_pending``: like a row remap, it waits for the GPU's next reset.

What operators paste is read too: a report indented as a whole (a Markdown code
block) is read as its banner's indentation says; a fragment without the banner (``-q
| grep -A8 'Clocks Throttle'``, a ``GPU 00000000:01:00.0`` line and the sections under
it) is read wherever it appears. Under a ``GPU <bus id>`` line it is that GPU's, read
like a report's block (clock event reasons, ECC, remapped rows, PCI link, ...). A
``Clocks Event Reasons`` (``Clocks Throttle Reasons``) block with no GPU line above it
names no GPU: its ``clock_event`` is emitted without pci or index, for ``parse`` to
show, and counted "fragment without gpu" (``ReadStats.skip``); detectors judge GPUs by
their PCI address, so it is no finding. Other sections without a GPU line are not
looked for (their titles are too common a word to scan every log for). A fragment is
untimed (clock ``none``) unless its line carries a time; a title or GPU line with
nothing under it is counted "fragment without fields". An annotated value
(``Active   (bitmask 0x20)``) reads as its first words.

The text and XML forms fill one ``GpuSnapshot``, so they cannot disagree on meaning.
A GPU's index is its place in the snapshot, trusted only when the snapshot lists
every attached GPU (``nvidia-smi -q -i 3`` prints one block of several).

A CSV row whose ``index`` no GPU index can be (2^31 and past) is counted "out of range"
and adds nothing, as is a clock-reason mask past 64 bits; a row the CSV parser refuses
(a field past its size limit) is a "malformed csv row". Every pattern here runs in time
linear in the line.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError

from defusedxml import ElementTree

from fleetwatch.catalog import (
    MetricRule,
    SmiField,
    SmiReportFields,
    clock_event_reasons,
    smi_query_columns,
    smi_report_fields,
)
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.cursor import Cursor
from fleetwatch.sources.envelope import Envelope, showable
from fleetwatch.sources.numbers import INT32_MAX, OUT_OF_RANGE, whole
from fleetwatch.sources.reader import Reader

SOURCE: Final = "smi"
_NUMBER: Final = re.compile(r"^\s*(-?\d+(?:\.\d+)?)")
_GPU_HEADER: Final = re.compile(
    r"^GPU (?P<pci>[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.\d)\s*$"
)
# The key ends on a non-space: a lazy key before optional spaces is quadratic on a
# line of spaces without a colon. (An alternation, not "(?:…)?": that one allocates.)
_KEY_VALUE: Final = re.compile(r"^(?P<indent>\s*)(?P<key>\S|\S.*?\S)\s*:(?: (?P<value>.*))?$")
_CTIME: Final = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3})\s+(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})")
_TOP_KEYS: Final = ("Timestamp", "Driver Version", "CUDA Version", "Attached GPUs")
_MAX_BLOCK_LINES: Final = 200_000
_IDENTITY_LINES: Final = frozenset({"Serial Number", "GPU UUID"})
_READ_SECTIONS: Final = frozenset(path[0] for path in smi_report_fields().fields)


@dataclass
class GpuSnapshot:
    """What one snapshot says of one GPU; None where it says nothing."""

    pci: str | None = None
    line: int = 0
    gpu: int | None = None
    uuid: str | None = None
    serial: str | None = None
    clock_reasons: int | None = None
    ecc: dict[tuple[str, str], float] = field(default_factory=dict)  # (kind, scope)
    counters: dict[str, float] = field(default_factory=dict)  # kind -> value
    link_width: float | None = None
    link_gen: str | None = None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    m = _NUMBER.match(text)
    return float(m[1]) if m else None


def _count(value: float | None) -> int | None:
    """A count read as a number (``Attached GPUs``), if it is a count a column holds."""
    if value is None or not 0 <= value <= INT32_MAX:
        return None
    return int(value)


def _name(text: str | None) -> str | None:
    """An identity value (serial, UUID), or None where the report says it has none."""
    value = (text or "").strip()
    return None if value.strip("[]") in ("", "N/A", "Not Supported", "Unknown Error") else value


def _flag(text: str | None) -> float | None:
    low = (text or "").strip().lower()
    return 1.0 if low == "yes" else 0.0 if low == "no" else None


def _add_ecc(snap: GpuSnapshot, kind: str, scope: str, value: float | None) -> None:
    if value is not None:
        snap.ecc[kind, scope] = snap.ecc.get((kind, scope), 0.0) + value


def _number_gpus(snaps: list[GpuSnapshot], attached: int | None) -> None:
    # A GPU's place in a full report is its index; in a partial one (-i N) it is not.
    if attached is not None and attached == len(snaps):
        for position, snap in enumerate(snaps):
            snap.gpu = position


def _emit(snaps: list[GpuSnapshot], env: Envelope, ctx: FileContext) -> None:
    if env.ts is not None and not showable(env.ts):  # the time of a line before the report
        env = Envelope(None, "none", env.host)
    for snap in snaps:
        if snap.pci is None:
            ctx.stats.bad(SOURCE, "gpu without pci address")
            continue
        gpu = snap.gpu
        node = env.host or ctx.node
        ctx.identities.learn(node, snap.pci, uuid=snap.uuid, serial=snap.serial, gpu=gpu)
        base: dict[str, Any] = {
            "source": SOURCE,
            "line": snap.line,
            "ts": env.ts,
            "clock": env.clock,
            "node": node,
            "pci": snap.pci,
            "gpu": gpu,
            "uuid": snap.uuid,
            "serial": snap.serial,
        }
        ctx.emit({**base, "kind": "gpu_identity"})
        if snap.clock_reasons is not None:
            ctx.emit({**base, "kind": "clock_event", "value": float(snap.clock_reasons)})
        for (kind, scope), value in snap.ecc.items():
            ctx.emit({**base, "kind": kind, "scope": scope, "value": value})
        for kind, value in snap.counters.items():
            ctx.emit({**base, "kind": kind, "value": value})
        if snap.link_width is not None or snap.link_gen is not None:
            detail = f"gen{snap.link_gen}" if snap.link_gen else None
            ctx.emit({**base, "kind": "pcie_link", "value": snap.link_width, "detail": detail})


# --- nvidia-smi -q (text) -------------------------------------------------------------

_SCOPES: Final = {"Volatile": "volatile", "Aggregate": "aggregate"}
_CLOCKS: Final = "Clocks Event Reasons"
UNKNOWN_FIELD: Final = "unknown field"
NO_GPUS: Final = "report without gpus"


def _fold(snap: GpuSnapshot, rule: SmiField, scope: str | None, value: str) -> None:
    """Fold one value into its snapshot, as its catalog rule combines them."""
    number = _flag(value) if rule.read == "flag" else _number(value)
    if rule.link == "width":
        snap.link_width = number
    elif rule.link == "gen":
        snap.link_gen = value.strip() if value.strip().isdigit() else None
    elif number is None:
        return
    elif scope is not None:
        _add_ecc(snap, rule.kind, scope, number)
    elif rule.combine == "sum":
        snap.counters[rule.kind] = snap.counters.get(rule.kind, 0.0) + number
    elif rule.combine == "max":
        snap.counters[rule.kind] = max(snap.counters.get(rule.kind, number), number)
    elif rule.combine == "first":
        snap.counters.setdefault(rule.kind, number)
    else:
        snap.counters[rule.kind] = number


def _text_value(snap: GpuSnapshot, path: tuple[str, ...], value: str) -> None:
    """Fold one ``key : value`` line of a GPU section into its snapshot."""
    catalog = smi_report_fields()
    section = catalog.renamed.get(path[0], path[0])
    leaf = path[-1]
    if len(path) == 1:
        if leaf == "Serial Number":
            snap.serial = _name(value)
        elif leaf == "GPU UUID":
            snap.uuid = _name(value)
        return
    if section == _CLOCKS:
        for reason in clock_event_reasons():
            if reason.smi_label == leaf:
                current = snap.clock_reasons or 0
                words = value.split("(")[0].strip()  # "Active   (bitmask 0x20)" pasted
                active = words == "Active"
                snap.clock_reasons = current | reason.bit if active else current
        return
    scope = _SCOPES.get(path[1])
    key = (section, "{scope}", *path[2:]) if scope else (section, *path[1:])
    if (rule := catalog.fields.get(key)) is not None:
        _fold(snap, rule, scope, value)


def _in_report(text: str, after: str | None) -> bool:
    """Whether a line at column 0 is still the report's: a GPU, a key or a section."""
    if _GPU_HEADER.match(text) or text.startswith(_TOP_KEYS):
        return True
    key, colon, _ = text.partition(":")
    if colon:  # nvidia-smi pads its keys to the colon's column
        return key.endswith("  ") and key[:1].isalpha()
    # a section of its own (``vGPU Driver Capability``): a title over indented lines
    indented = after is not None and after[:1] in (" ", "\t") and bool(after.strip())
    return indented and len(text) <= 80 and text[:1].isalpha()


def _undent(text: str, margin: int) -> str:
    """A line of a report pasted ``margin`` columns in, at the report's own columns."""
    return text[margin:] if margin and not text[:margin].strip() else text


def _block_lines(cursor: Cursor, margin: int = 0) -> list[str]:
    """The lines of one ``-q`` report after its banner, up to where it ends."""
    want = 512
    while True:
        lines = [_undent(text, margin) for text in cursor.peek(want)]
        more = len(lines) == want and want < _MAX_BLOCK_LINES
        for i, text in enumerate(lines):
            if "NVSMI LOG" in text:
                return lines[:i]
            at_column_0 = text[:1] not in ("", " ", "\t")
            if at_column_0 and i + 1 == len(lines) and more:
                break  # whether it is a section title, its next line tells: read on
            after = lines[i + 1] if i + 1 < len(lines) else None
            if at_column_0 and not _in_report(text, after):
                return lines[:i]
        if not more:
            return lines
        want *= 4


def read_text_block(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read one ``nvidia-smi -q`` report, starting at its ``NVSMI LOG`` banner."""
    lines = _block_lines(cursor, len(text) - len(text.lstrip()))
    cursor.skip(len(lines))
    _read_gpus(lines, line + 1, env, ctx)


def _read_gpus(lines: list[str], first: int, env: Envelope, ctx: FileContext) -> None:
    """Read the lines of a report (or a fragment of one); ``first`` is the first's number."""
    catalog = smi_report_fields()
    snaps: list[GpuSnapshot] = []
    attached: int | None = None
    path: list[tuple[int, str]] = []
    for offset, raw in enumerate(lines):
        if not raw.strip():
            continue
        if m := _GPU_HEADER.match(raw):
            snaps.append(GpuSnapshot(pci=normalize_pci(m["pci"]), line=first + offset))
            path = []
            continue
        kv = _KEY_VALUE.match(raw)
        indent = len(raw) - len(raw.lstrip())
        key = kv["key"] if kv else raw.strip()
        value = kv["value"] if kv else None
        if indent == 0:
            if key == "Timestamp" and value and (ts := _ctime(value, ctx)) is not None:
                env = Envelope(ts, "wall", env.host)
            elif key == "Attached GPUs" and value:
                attached = _count(_number(value))
            elif key not in catalog.top_level:
                ctx.stats.skip(SOURCE, UNKNOWN_FIELD)
            continue
        if not snaps:
            continue  # inside a top-level section, counted at its title
        while path and path[-1][0] >= indent:
            path.pop()
        path.append((indent, key))
        if len(path) == 1 and not _known(catalog, key):
            ctx.stats.skip(SOURCE, UNKNOWN_FIELD)
        if value is not None and value.strip():
            _text_value(snaps[-1], tuple(name for _, name in path), value)
    if not snaps:
        ctx.stats.bad(SOURCE, NO_GPUS)
        return
    _number_gpus(snaps, attached)
    _emit(snaps, env, ctx)


# --- a pasted fragment of nvidia-smi -q -----------------------------------------------

_FRAGMENT_TITLES: Final = frozenset({_CLOCKS, "Clocks Throttle Reasons"})
NO_GPU: Final = "fragment without gpu"
NO_FIELDS: Final = "fragment without fields"


def _fragment_lines(cursor: Cursor, margin: int) -> list[str]:
    """The lines under a fragment's first line: indented past ``margin``, unbroken."""
    want = 64
    while True:
        lines = cursor.peek(want)
        for i, text in enumerate(lines):
            indent = len(text) - len(text.lstrip())
            if not text.strip() or indent <= margin:
                return lines[:i]  # a blank line, grep's "--", the next GPU, other text
        if len(lines) < want or want >= _MAX_BLOCK_LINES:
            return lines
        want *= 4


def read_fragment(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    """Read a pasted ``GPU <bus id>`` block or a GPU-less ``Clocks Event Reasons`` block."""
    margin = len(text) - len(text.lstrip())
    body = _fragment_lines(cursor, margin)
    cursor.skip(len(body))
    if not body:
        ctx.stats.skip(SOURCE, NO_FIELDS)
        return
    title = text.strip()
    if _GPU_HEADER.match(title):
        _read_gpus([title, *(text[margin:] for text in body)], line, env, ctx)
        return
    snap = GpuSnapshot(line=line)
    for raw in body:
        if (kv := _KEY_VALUE.match(raw)) and kv["value"] and kv["value"].strip():
            _text_value(snap, (title, kv["key"]), kv["value"])
    if snap.clock_reasons is None:
        ctx.stats.skip(SOURCE, NO_FIELDS)
        return
    ctx.stats.skip(SOURCE, NO_GPU)
    if env.ts is not None and not showable(env.ts):
        env = Envelope(None, "none", env.host)
    ctx.emit(
        env.event(
            "clock_event", SOURCE, line, node=env.host or ctx.node, value=float(snap.clock_reasons)
        )
    )


def _known(catalog: SmiReportFields, key: str) -> bool:
    """Whether a GPU's first-level line is one the reader reads or knows to hold nothing."""
    section = catalog.renamed.get(key, key)
    return (
        key in _IDENTITY_LINES
        or section in (_CLOCKS, *_READ_SECTIONS)
        or section in catalog.gpu_level
    )


def _ctime(text: str, ctx: FileContext) -> float | None:
    m = _CTIME.search(text)
    return None if m is None else ctx.rules.ctime(m[1], m[2], m[3], m[4], m[5], m[6])


# --- nvidia-smi -q -x (XML) -----------------------------------------------------------

_ECC_XML: Final = {
    "sram_correctable": "ecc_corrected",
    "dram_correctable": "ecc_corrected",
    "sram_uncorrectable": "ecc_uncorrected",
    "sram_uncorrectable_parity": "ecc_uncorrected",
    "sram_uncorrectable_secded": "ecc_uncorrected",
    "dram_uncorrectable": "ecc_uncorrected",
}


def _xml_text(element: Element, path: str) -> str | None:
    found = element.find(path)
    return None if found is None or found.text is None else found.text.strip()


def _xml_snapshot(gpu: Element, line: int) -> GpuSnapshot:
    snap = GpuSnapshot(
        pci=normalize_pci(gpu.get("id") or _xml_text(gpu, "pci/pci_bus_id") or ""),
        line=line,
        uuid=_name(_xml_text(gpu, "uuid")),
        serial=_name(_xml_text(gpu, "serial")),
    )
    for section in ("clocks_event_reasons", "clocks_throttle_reasons"):
        reasons = gpu.find(section)
        if reasons is None:
            continue
        mask = 0
        for reason in clock_event_reasons():
            for tag in (
                f"clocks_event_reason_{reason.xml_tag}",
                f"clocks_throttle_reason_{reason.xml_tag}",
            ):
                if _xml_text(reasons, tag) == "Active":
                    mask |= reason.bit
        snap.clock_reasons = mask
    for scope in ("volatile", "aggregate"):
        counts = gpu.find(f"ecc_errors/{scope}")
        if counts is None:
            continue
        for child in counts:
            if child.tag in _ECC_XML:
                _add_ecc(snap, _ECC_XML[child.tag], scope, _number(child.text))
        for bits, kind in (("single_bit", "ecc_corrected"), ("double_bit", "ecc_uncorrected")):
            _add_ecc(snap, kind, scope, _number(_xml_text(counts, f"{bits}/total")))
    for tag, kind, read in (
        ("remapped_row_corr", "remap_correctable", _number),
        ("remapped_row_unc", "remap_uncorrectable", _number),
        ("remapped_row_pending", "remap_pending", _flag),
        ("remapped_row_failure", "remap_failure", _flag),
    ):
        if (value := read(_xml_text(gpu, f"remapped_rows/{tag}"))) is not None:
            snap.counters[kind] = value
    for tag in ("pending_blacklist", "pending_retirement"):  # pre-Ampere page retirement
        if (value := _flag(_xml_text(gpu, f"retired_pages/{tag}"))) is not None:
            snap.counters["remap_pending"] = max(snap.counters.get("remap_pending", value), value)
    for xml_path, kind in (
        ("temperature/gpu_temp", "temperature"),
        ("temperature/memory_temp", "memory_temperature"),
        ("gpu_power_readings/instant_power_draw", "power"),
        ("gpu_power_readings/power_draw", "power"),
        ("power_readings/power_draw", "power"),
        ("pci/replay_counter", "pcie_replay"),
    ):
        if kind not in snap.counters and (value := _number(_xml_text(gpu, xml_path))) is not None:
            snap.counters[kind] = value
    snap.link_width = _number(
        _xml_text(gpu, "pci/pci_gpu_link_info/link_widths/current_link_width")
    )
    gen = _xml_text(gpu, "pci/pci_gpu_link_info/pcie_gen/current_link_gen")
    snap.link_gen = gen if gen and gen.isdigit() else None
    return snap


def read_xml(data: bytes, ctx: FileContext) -> None:
    """Read a whole ``nvidia-smi -q -x`` document."""
    try:
        root = ElementTree.fromstring(data, forbid_dtd=False)
    except (ParseError, ValueError, LookupError) as exc:  # LookupError: encoding="UPF-8"
        ctx.stats.bad(SOURCE, f"invalid xml ({type(exc).__name__})")
        return
    ts = _ctime(_xml_text(root, "timestamp") or "", ctx)
    env = Envelope(ts, "wall" if ts is not None else "none", None)
    attached = _number(_xml_text(root, "attached_gpus"))
    snaps = []
    # GPUs come in document order: each one's line is found after the one before, so
    # a report of many GPUs is read in one pass, not one pass per GPU
    at, line = 0, 1
    for gpu in root.iter("gpu"):
        found = data.find(f'<gpu id="{gpu.get("id")}"'.encode(), at)
        if found >= 0:
            line += data.count(b"\n", at, found)
            at = found
        snaps.append(_xml_snapshot(gpu, line))
    if not snaps:
        ctx.stats.bad(SOURCE, NO_GPUS)
        return
    _number_gpus(snaps, _count(attached))
    _emit(snaps, env, ctx)


# --- nvidia-smi --query-gpu=… --format=csv ------------------------------------------

_IDENTITY_COLUMNS: Final = frozenset({"index", "uuid", "pci.bus_id", "serial", "timestamp"})
_CSV_TIME: Final = re.compile(r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9})\d*)?")
_MASK_BITS: Final = 64


def _column_name(cell: str) -> str:
    """``power.draw [W]`` -> ``power.draw`` (cut in code: a regex is quadratic on junk)."""
    name = cell.strip()
    if name.endswith("]"):
        at = name.rfind("[")
        if at >= 0 and "]" not in name[at:-1]:
            name = name[:at].rstrip()
    return name


def csv_columns(header: str) -> list[str] | None:
    """The column names of a ``--query-gpu`` CSV header, or None if it is not one."""
    names = [_column_name(name) for name in header.split(",")]
    known = set(smi_query_columns()) | _IDENTITY_COLUMNS
    if len(names) >= 2 and sum(name in known for name in names) >= 2 and "pci.bus_id" in names:
        return names
    return None


def read_csv(lines: list[str], first_line: int, ctx: FileContext) -> None:
    """Read a ``--query-gpu`` CSV: ``lines[0]`` is its header."""
    names = csv_columns(lines[0])
    if names is None:
        return
    rules = smi_query_columns()
    rows = csv.reader(lines[1:])
    offset = 0
    while True:
        offset += 1
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error:  # a field past the parser's size limit: the row alone is lost
            ctx.stats.bad(SOURCE, "malformed csv row")
            continue
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != len(names):
            ctx.stats.bad(SOURCE, "malformed csv row")
            continue
        _read_csv_row(names, row, first_line + offset, rules, ctx)


def _read_csv_row(
    names: list[str],
    row: list[str],
    line: int,
    rules: Mapping[str, MetricRule],
    ctx: FileContext,
) -> None:
    cells = {name: cell.strip() for name, cell in zip(names, row, strict=True)}
    index = cells.get("index", "")
    gpu = whole(index, INT32_MAX) if index.isdecimal() else None  # "²" is no index
    if gpu is None and index.isdecimal():
        ctx.stats.bad(SOURCE, OUT_OF_RANGE)
        return
    ts = None
    if m := _CSV_TIME.match(cells.get("timestamp", "")):
        frac = int(m[7]) / 10 ** len(m[7]) if m[7] else 0.0
        ts = ctx.rules.local(
            int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]) + frac
        )
    pci = normalize_pci(cells.get("pci.bus_id", ""))
    if pci is None:
        ctx.stats.bad(SOURCE, "csv row without pci address")
        return
    snap = GpuSnapshot(pci=pci, line=line, uuid=cells.get("uuid") or None, gpu=gpu)
    snap.serial = cells.get("serial") or None
    for name, cell in cells.items():
        rule = rules.get(name)
        if rule is None or cell.strip("[]") in ("N/A", "Not Supported", "Unknown Error", ""):
            continue
        if rule.kind == "clock_event":
            try:
                mask = int(cell, 16)
            except ValueError:
                ctx.stats.bad(SOURCE, "malformed csv value")
                continue
            if not 0 <= mask < 1 << _MASK_BITS:
                ctx.stats.bad(SOURCE, OUT_OF_RANGE)
                continue
            snap.clock_reasons = mask
        elif rule.link == "width":
            snap.link_width = _number(cell)
        elif rule.link == "gen":
            snap.link_gen = cell if cell.isdigit() else None
        elif (value := _flag(cell) if cell.lower() in ("yes", "no") else _number(cell)) is None:
            ctx.stats.bad(SOURCE, "malformed csv value")
        elif rule.scope is not None:
            snap.ecc[rule.kind, rule.scope] = value
        else:
            snap.counters.setdefault(rule.kind, value)
    _emit([snap], Envelope(ts, "wall" if ts is not None else "none", None), ctx)


_KINDS: Final = frozenset(
    {"gpu_identity", "clock_event", "pcie_link", "pcie_replay"}
    | {rule.kind for rule in smi_query_columns().values()}
)


def _claims_text(text: str) -> bool:
    if "NVSMI LOG" in text:
        return True
    line = text.strip()
    return line in _FRAGMENT_TITLES or (
        line.startswith("GPU ") and _GPU_HEADER.match(line) is not None
    )


def _read_text(text: str, env: Envelope, line: int, cursor: Cursor, ctx: FileContext) -> None:
    if "NVSMI LOG" in text:
        read_text_block(text, env, line, cursor, ctx)
    else:
        read_fragment(text, env, line, cursor, ctx)


def _is_xml(head: bytes) -> bool:
    return head.lstrip().startswith((b"<?xml", b"<nvidia_smi_log")) and b"<nvidia_smi_log" in head


def _is_csv(head: bytes) -> bool:
    first_line = head.split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    return csv_columns(first_line) is not None


def _read_csv_document(data: bytes, ctx: FileContext) -> None:
    read_csv(data.decode("utf-8", "replace").splitlines(), 1, ctx)


TEXT: Final = Reader(
    name="smi_text",
    source=SOURCE,
    kinds=_KINDS,
    description="nvidia-smi -q reports and pasted fragments, wherever they appear in a file",
    keywords=(
        rb"NVSMI LOG",
        rb"Clocks Event Reasons",  # a fragment: a pasted grep -A8 of the reasons
        rb"Clocks Throttle Reasons",
        rb"^[ \t]*GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:",  # a GPU's block of -q, pasted
    ),
    claims=_claims_text,
    read_line=_read_text,
)
XML: Final = Reader(
    name="smi_xml",
    source=SOURCE,
    kinds=_KINDS,
    description="nvidia-smi -q -x documents",
    sniff=_is_xml,
    read_document=read_xml,
)
CSV: Final = Reader(
    name="smi_csv",
    source=SOURCE,
    kinds=_KINDS,
    description="nvidia-smi --query-gpu=... --format=csv tables",
    sniff=_is_csv,
    read_document=_read_csv_document,
)

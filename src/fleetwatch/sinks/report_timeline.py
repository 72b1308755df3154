"""The report's timelines: a row per affected GPU, findings as spans, events as marks.

One timeline per clock: all wall-clock findings on one (UTC), and each node with
boot-clock findings on its own (a plain dmesg without a wall-clock anchor counts from
its node's boot: ``boot+Ns``). A row is a GPU (named by its PCI address; a finding
that gives only a UUID or an index joins the row of a finding that gives it with the
address), or a node's findings that name no GPU, or a job's that name no node. The
findings are spans from their first to their last time, colored by severity, in lanes
that never overlap; an incident is dashed connectors from its root to each effect.

A row's events are marks, a band per kind, counted into bins across the range: at
most ``_MARK_BUDGET`` marks in all, so the page does not grow with the events. A GPU
row takes the events that name its GPU (or the job rank a finding of it names); a
node's row the rest of that node's events. The range is the findings' span and, around
it, the events there are up to a quarter of that span (two minutes at least) either
side; a row's events outside it are counted at its ends.

A row's label (a node's name above its rows, a GPU's at its left) is cut with an
ellipsis to an estimate of its width and clipped to its column, so a name of any
length never runs into the plot; its tooltip gives it whole. Every string from input
goes through ``shown`` (``one_line``, then ``html.escape``) or ``_fit`` (the same, cut).
"""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import KIND_ID, KINDS
from fleetwatch.findings import Finding, Severity
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.table import when
from fleetwatch.sinks.timeline import FARTHEST_S, Place, Timeline

# The geometry, in pixels.
WIDTH: Final = 1240
_AXIS_H: Final = 26
_GROUP_H: Final = 20  # a node's (or job's) name above its rows
_LANE_H: Final = 13  # one lane of finding spans
_LANE_GAP: Final = 3
_KIND_H: Final = 6  # one kind's band of event marks
_ROW_PAD: Final = 4
_EDGE_W: Final = 44  # either side of the plot: counts of events outside the drawn range
_MIN_SPAN_W: Final = 5.0
_CHAR_W: Final = 6.4  # about, for 10 px text: a span's label "F12"
_GROUP_PX: Final = 12.0  # .group-label's font size (bold), in report.css
_ROW_PX: Final = 11.5  # .row-label's (regular)
_REGULAR: Final = 0.9  # a regular glyph's width against the bold one's
_EM_NARROW: Final = frozenset(" !\"'(),-./:;I[\\]`fijlrt|")
_EM_WIDE: Final = frozenset("mwMW@%")
_EM_UPPER: Final = frozenset("ABCDEGHKNOPQRSUVXYZ#&+<=>^~")
"""Widths of glyphs in em, by class: DejaVu Sans Bold's, the widest of the usual
sans-serif faces, so a label cut to fit an estimate does fit (a clip path catches the
rest): narrow 0.5, wide 1.1, upper case and symbols 0.85, the rest 0.72."""
_MARK_BUDGET: Final = 60_000
"""At most about this many (row, kind, bin) marks in all, ~25 bytes each: the page's
size does not grow with the events, nor much with the rows (fewer, wider bins when
there are many rows)."""
_MOST_BINS: Final = (WIDTH - 2 * _EDGE_W - 200) // 5  # bins of 5 px at least
_LEVELS: Final = 4  # a mark's shade: how many events its bin holds, in 4 steps
_INCIDENT_COLORS: Final = 6  # classes inc-0 .. inc-5 in report.css
_CURVE_STEPS: Final = 32  # points along a connector: to keep it clear of the labels, to label it
SEVERITY_NAMES: Final = tuple(str(s) for s in sorted(Severity, reverse=True))
"""Most severe first."""


def shown(value: object) -> str:
    """Any value as HTML text or attribute value: one line, escaped (quotes too)."""
    return html.escape(one_line(str(value)), quote=True)


@dataclass(frozen=True)
class Link:
    """An incident to draw: connectors from its root's span to each effect's."""

    number: int  # I1, I2, ...
    root: int | None  # the root finding's index (None: not in the report)
    effects: list[int]  # the effects' indexes
    summary: str


@dataclass(frozen=True)
class Drawn:
    """How many events the timeline draws, of how many."""

    on_rows: int
    outside: int  # on rows, before or after the drawn range


def timelines(
    findings: Sequence[Finding], links: Sequence[Link], timeline: Timeline
) -> tuple[list[str], Drawn]:
    """Each clock's timeline as HTML (a heading, a legend, the SVG), and how many
    events they draw."""
    sections = _sections(findings)
    drawn = _place_events(sections, findings, timeline)
    return [_section_svg(s, n, findings, links) for n, s in enumerate(sections)], drawn


@dataclass
class _Row:
    """One row of a timeline: a GPU, a node's findings without a GPU, or a job's."""

    kind: str  # "gpu", "node", "job" or "other"
    group: str  # the node's name, or "job …", or "(no node)": the heading above
    node: str | None
    device: str | None  # a GPU row's key ("pci:…", "uuid:…", "gpu:N"); a job row's job
    findings: list[int] = field(default_factory=list)
    lane: dict[int, int] = field(default_factory=dict)
    lanes: int = 1
    marks: list[tuple[int, int, int]] = field(default_factory=list)  # kind id, bin, count
    kinds: list[int] = field(default_factory=list)
    before: int = 0
    after: int = 0
    y: float = 0.0
    height: float = 0.0


@dataclass
class _Section:
    """The rows of one clock: all wall-clock findings, or one node's boot clock."""

    clock: str
    node: str | None  # the boot clock's node
    rows: list[_Row]
    gpu_names: dict[str | None, dict[str, str]]  # node -> a GPU's name -> its row key
    row_of: dict[tuple[str, str | None, str | None], _Row]
    rank_rows: dict[tuple[str, int], _Row] = field(default_factory=dict)
    """A job's rank -> the row of a finding that names it (its events may name no GPU)."""
    start: float = 0.0
    end: float = 1.0
    bins: int = 1
    peaks: dict[int, int] = field(default_factory=dict)  # kind id -> most events in a bin


def _clock(f: Finding) -> str:
    if f.clock in ("wall", "boot"):
        return f.clock
    # saved before findings named their clock: small times are since boot (table.when)
    return "boot" if f.first_ts is not None and f.first_ts < 1e9 else "wall"


def _gpu_names(gpus: Sequence[tuple[str | None, str | None, int | None]]) -> dict[str, str]:
    """A node's GPUs as its findings name them -> the key of each GPU's row.

    The PCI address names a GPU; a UUID or an index names the GPU of a finding that
    gives both it and the address (unless two addresses claim it), else its own row.
    """
    names: dict[str, str | None] = {}

    def claim(name: str, key: str) -> None:
        if names.setdefault(name, key) != key:
            names[name] = None  # two GPUs claim it: it names neither

    for pci, uuid, gpu in gpus:
        if pci is not None:
            names[f"pci:{pci}"] = f"pci:{pci}"
            if uuid is not None:
                claim(f"uuid:{uuid}", f"pci:{pci}")
            if gpu is not None:
                claim(f"gpu:{gpu}", f"pci:{pci}")
    for pci, uuid, gpu in gpus:
        if pci is None and uuid is not None:
            key = names.get(f"uuid:{uuid}") or f"uuid:{uuid}"
            names.setdefault(f"uuid:{uuid}", key)
            if gpu is not None:
                claim(f"gpu:{gpu}", key)
    for pci, uuid, gpu in gpus:
        if pci is None and uuid is None and gpu is not None:
            names.setdefault(f"gpu:{gpu}", f"gpu:{gpu}")
    return {name: key for name, key in names.items() if key is not None}


def _gpu_key(
    names: Mapping[str, str], pci: str | None, uuid: str | None, gpu: int | None
) -> str | None:
    """The row key of the GPU named so, or None: its PCI address decides, if given."""
    if pci is not None:
        return names.get(f"pci:{pci}")
    if uuid is not None and (key := names.get(f"uuid:{uuid}")) is not None:
        return key
    if gpu is not None:
        return names.get(f"gpu:{gpu}")
    return None


def _sections(findings: Sequence[Finding]) -> list[_Section]:
    """The sections and their rows, the most severe first (the findings' order)."""
    domains: dict[tuple[str, str | None], list[int]] = {}
    for i, f in enumerate(findings):
        clock = _clock(f)
        domains.setdefault((clock, f.node if clock == "boot" else None), []).append(i)
    order = sorted(domains, key=lambda d: (d[0] != "wall", domains[d][0]))
    sections = []
    for clock, boot_node in order:
        members = domains[clock, boot_node]
        gpus: dict[str | None, list[tuple[str | None, str | None, int | None]]] = {}
        for i in members:
            f = findings[i]
            if f.node is not None:
                gpus.setdefault(f.node, []).append((f.pci, f.uuid, f.gpu))
        names = {node: _gpu_names(ids) for node, ids in gpus.items()}
        section = _Section(clock, boot_node, [], names, {})
        groups: dict[tuple[str, str], list[_Row]] = {}
        for i in members:
            f = findings[i]
            row = _row_for(f, section, groups)
            row.findings.append(i)
            if f.job is not None and f.rank is not None:
                section.rank_rows.setdefault((f.job, f.rank), row)
        for rows in groups.values():  # the node's own row, then its GPUs by name
            section.rows.extend(sorted(rows, key=_row_order))
        sections.append(section)
    return sections


def _row_for(f: Finding, section: _Section, groups: dict[tuple[str, str], list[_Row]]) -> _Row:
    """The row of ``f`` in ``section`` (made if new, in its group: node, job or none)."""
    where: tuple[str, str | None, str | None]
    if f.node is not None:
        key = _gpu_key(section.gpu_names.get(f.node, {}), f.pci, f.uuid, f.gpu)
        where = ("gpu", f.node, key) if key is not None else ("node", f.node, None)
        group = ("node", f.node)
    elif f.job is not None:
        where, group = ("job", None, f.job), ("job", f.job)
    else:
        where, group = ("other", None, None), ("other", "")
    row = section.row_of.get(where)
    if row is None:
        kind, node, device = where
        heading = {"node": group[1], "job": f"job {group[1]}"}.get(group[0], "(no node)")
        row = _Row(kind, heading, node, device)
        section.row_of[where] = row
        groups.setdefault(group, []).append(row)
    return row


def _row_order(row: _Row) -> tuple[int, int, str]:
    if row.kind != "gpu" or row.device is None:
        return (0, 0, "")
    name, _, value = row.device.partition(":")
    return (1, int(value) if name == "gpu" else -1, value)


def _place_events(
    sections: list[_Section], findings: Sequence[Finding], timeline: Timeline
) -> Drawn:
    """Fix each section's time range and count each row's events into its bins."""
    rows = [row for section in sections for row in section.rows]
    number_of_row = {id(row): n for n, row in enumerate(rows)}
    by_domain = {(s.clock, s.node): s for s in sections}

    def row_of(place: Place) -> _Row | None:
        section = by_domain.get((place.clock, place.node if place.clock == "boot" else None))
        if section is None:
            return None
        if place.node is not None and (names := section.gpu_names.get(place.node)):
            key = _gpu_key(names, place.pci, place.uuid, place.gpu)
            if key is not None:
                return section.row_of[("gpu", place.node, key)]
        if place.job is not None and place.rank is not None:  # a rank's GPU, if a finding names it
            row = section.rank_rows.get((place.job, place.rank))
            if row is not None:
                return row
        if place.node is None:
            return section.row_of.get(("job", None, place.job)) if place.job else None
        return section.row_of.get(("node", place.node, None))

    # each (place, kind) the timeline counted -> its row (-1: none) and kind
    key_rows = np.full(len(timeline.keys), -1, np.int64)
    key_kinds = np.zeros(len(timeline.keys), np.int64)
    for k, (place, kind_name) in enumerate(timeline.keys):
        row = row_of(place)
        if row is not None:
            key_rows[k], key_kinds[k] = number_of_row[id(row)], KIND_ID[kind_name]
    counts = timeline.counts()
    drawn = key_rows[counts.key] >= 0
    row_ids, kinds = key_rows[counts.key][drawn], key_kinds[counts.key][drawn]
    times, numbers = counts.ts[drawn], counts.count[drawn]
    section_of_row = np.asarray([n for n, s in enumerate(sections) for _ in s.rows], np.int64)
    section_ids = section_of_row[row_ids] if len(rows) else np.zeros(0, np.int64)
    for n, section in enumerate(sections):
        _fix_range(section, findings, times[section_ids == n])
    # fewer, wider bins when there are many (row, kind) pairs: the page stays small
    pairs = len(np.unique(row_ids * len(KINDS) + kinds))
    bins = max(8, min(_MOST_BINS, _MARK_BUDGET // max(pairs, 1)))
    starts = np.asarray([s.start for s in sections] or [0.0])[section_ids]
    ends = np.asarray([s.end for s in sections] or [1.0])[section_ids]
    slot = np.floor((times - starts) / (ends - starts) * bins)
    slot = np.clip(slot, -1, bins).astype(np.int64) + 1  # 0: before the range; bins + 1: after
    code = (row_ids * len(KINDS) + kinds) * (bins + 2) + slot
    unique, inverse = np.unique(code, return_inverse=True)
    summed = np.bincount(inverse.reshape(-1), weights=numbers, minlength=len(unique))
    outside = 0
    for value, n in zip(unique.tolist(), summed.astype(np.int64).tolist(), strict=True):
        rest, where = divmod(value, bins + 2)
        row_number, kind = divmod(rest, len(KINDS))
        row = rows[row_number]
        if where == 0:
            row.before += n
        elif where == bins + 1:
            row.after += n
        else:
            row.marks.append((kind, where - 1, n))
            continue
        outside += n
    for section in sections:
        section.bins = bins
        for row in section.rows:
            row.kinds = sorted({kind for kind, _, _ in row.marks})
            for kind, _, n in row.marks:
                section.peaks[kind] = max(section.peaks.get(kind, 0), n)
    return Drawn(int(numbers.sum()), outside)


def times_of(f: Finding) -> tuple[float, float] | None:
    """A finding's span on its own clock (None: it has no time, or one of a forged stamp)."""
    if f.first_ts is None:
        return None
    last = f.last_ts if f.last_ts is not None else f.first_ts
    if not (abs(f.first_ts) < FARTHEST_S and abs(last) < FARTHEST_S):
        return None
    return f.first_ts, max(last, f.first_ts)


def _fix_range(
    section: _Section, findings: Sequence[Finding], times: npt.NDArray[np.float64]
) -> None:
    """The section's range: its findings, and around them the events there are, up to
    a quarter of the findings' span (two minutes at least) either side."""
    spans = [t for row in section.rows for i in row.findings if (t := times_of(findings[i]))]
    if spans:
        lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
        pad = max((hi - lo) * 0.25, 120.0)
        start, end = lo, hi
        if len(times):
            start = max(lo - pad, min(float(times.min()), lo))
            end = min(hi + pad, max(float(times.max()), hi))
    elif len(times):
        start, end = float(times.min()), float(times.max())
    else:
        start, end = 0.0, 1.0
    if end - start < 1.0:  # one moment: a second around it
        start, end = start - 0.5, end + 0.5
    margin = (end - start) * 0.03
    section.start, section.end = start - margin, end + margin


# --- drawing ----------------------------------------------------------------------


def _f(value: float) -> str:
    """A coordinate for an attribute."""
    return f"{value:.1f}"


def _compact(n: int) -> str:
    for size, unit in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _em(char: str) -> float:
    """About how wide ``char`` is, in em (see ``_EM_NARROW``)."""
    if char in _EM_NARROW:
        return 0.5
    if char in _EM_WIDE:
        return 1.1
    if char in _EM_UPPER:
        return 0.85
    if char.isascii():
        return 0.72
    if unicodedata.combining(char):
        return 0.0
    return 1.1 if unicodedata.east_asian_width(char) in "WF" else 0.85


def _text_w(text: str, px: float, bold: bool = True) -> float:
    """About how many pixels ``text`` takes at ``px`` (an estimate: no font is measured)."""
    return sum(map(_em, text)) * px * (1.0 if bold else _REGULAR)


def _fit(text: str, width: float, px: float, bold: bool = True) -> str:
    """``text`` from input as SVG text that fits ``width`` pixels: one line, cut with
    an ellipsis where it would not fit, escaped (the whole of it is in the tooltip)."""
    text = one_line(text)
    room = width / (px * (1.0 if bold else _REGULAR))
    if sum(map(_em, text)) > room:
        room -= _em("…")
        used, n = 0.0, 0
        while n < len(text) and used + _em(text[n]) <= room:
            used += _em(text[n])
            n += 1
        text = text[:n] + "…"
    return html.escape(text, quote=True)


def _row_label(row: _Row, findings: Sequence[Finding]) -> tuple[str, str]:
    """What a row's label says, and its tooltip (the whole identity)."""
    if row.kind == "node":
        return (
            "node",
            f"{row.node}: findings that name no GPU, and the node's events that no GPU row takes",
        )
    if row.kind == "job":
        return "job", f"job {row.device}: findings that name no node"
    if row.kind == "other":
        return "no node", "findings that name no node and no job"
    of = [findings[i] for i in row.findings]
    index = next((f.gpu for f in of if f.gpu is not None), None)
    pci = next((f.pci for f in of if f.pci is not None), None)
    uuid = next((f.uuid for f in of if f.uuid is not None), None)
    serial = next((f.serial for f in of if f.serial is not None), None)
    shown = [f"GPU {index}" if index is not None else "", pci or (uuid if index is None else "")]
    label = " · ".join(part for part in shown if part) or "GPU"
    whole = [f"{row.node}", f"GPU {index}" if index is not None else "", pci or "", uuid or ""]
    if serial:
        whole.append(f"serial {serial}")
    return label, " ".join(part for part in whole if part)


_STEPS: Final = (
    *(m * 10.0**e for e in range(-3, 0) for m in (1, 2, 5)),
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200),
    *(86400 * d for d in (1, 2, 7, 14, 30, 91, 182, 365)),
    *(86400 * 365 * y for y in (2, 5, 10, 20, 50, 100, 200, 500, 1000)),
)


def _ticks(start: float, end: float, most: int) -> tuple[list[float], float]:
    """Round times between ``start`` and ``end``, at most about ``most`` of them."""
    span = end - start
    step = next((s for s in _STEPS if span / s <= most), _STEPS[-1] * math.ceil(span / most))
    first = math.ceil(start / step) * step
    count = int((end - first) // step) + 1
    return [first + k * step for k in range(max(count, 0))], float(step)


def _tick_label(t: float, step: float, clock: str, previous: str | None) -> tuple[str, str]:
    """A tick's label, and its day (a wall-clock label names the day when it changes)."""
    if clock == "boot":
        decimals = 0 if step >= 1 else math.ceil(-math.log10(step))
        return f"+{t:.{decimals}f}s", ""
    try:
        moment = datetime.fromtimestamp(t, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{t:.0f}", ""
    day = moment.strftime("%Y-%m-%d")
    if step >= 86400:
        return day, day
    text = moment.strftime("%H:%M" if step >= 60 else "%H:%M:%S")
    if step < 1:
        text += f".{moment.microsecond // 1000:03d}"
    if day != previous:
        text = f"{moment.strftime('%m-%d')} {text}"
    return text, day


def _section_svg(
    section: _Section, number: int, findings: Sequence[Finding], links: Sequence[Link]
) -> str:
    """One clock's timeline: a heading, a legend, and the SVG."""
    labels = {id(row): _row_label(row, findings) for row in section.rows}
    longest = max(
        [_text_w(one_line(row.group), _GROUP_PX) - _EDGE_W + 16 for row in section.rows]
        + [_text_w(one_line(text), _ROW_PX, bold=False) + 28 for text, _ in labels.values()]
    )
    label_w = min(max(longest, 150.0), 300.0)
    x0, x1 = label_w + _EDGE_W, WIDTH - _EDGE_W
    scale = (x1 - x0) / (section.end - section.start)

    def x(t: float) -> float:
        return x0 + (t - section.start) * scale

    # lanes: a row's spans (with their labels) never overlap
    for row in section.rows:
        ends: list[float] = []
        for i in sorted(row.findings, key=lambda i: times_of(findings[i]) or (0.0, 0.0)):
            times = times_of(findings[i])
            if times is None:
                continue
            a = x(times[0])
            b = max(x(times[1]), a + _MIN_SPAN_W) + (len(str(i + 1)) + 2) * _CHAR_W
            lane = next((n for n, end in enumerate(ends) if end <= a), len(ends))
            ends[lane : lane + 1] = [b]
            row.lane[i] = lane
        row.lanes = max(len(ends), 1)
        band = max(len(row.kinds), 1) * _KIND_H
        row.height = 2 * _ROW_PAD + row.lanes * (_LANE_H + _LANE_GAP) + band
    y = float(_AXIS_H)
    group = None
    for row in section.rows:
        if row.group != group:
            group, y = row.group, y + _GROUP_H
        row.y = y
        y += row.height
    height = y + 6

    out: list[str] = []
    kinds = sorted(section.peaks)
    clock = section.clock
    if clock == "wall":
        title = f"Wall clock, UTC: {when(section.start, 'wall')} → {when(section.end, 'wall')}"
    else:
        node = section.node if section.node is not None else "(no node)"
        title = f"{node}: seconds since its boot (no wall-clock time for it)"
    out.append(f'<h3 id="timeline-{number + 1}">{shown(title)}</h3>')
    out.append(_legend(kinds, bool(links)))
    out.append(
        f'<div class="timeline"><svg class="tl" data-clock="{clock}" width="{WIDTH}" '
        f'height="{_f(height)}" viewBox="0 0 {WIDTH} {_f(height)}" role="img" '
        f'aria-label="{shown(title)}">'
    )
    # a label cut to an estimate of its width: clipped where the estimate falls short,
    # so a name never runs into the plot (or the row's counts of events outside it)
    clips = f"tl{number + 1}"
    out.append(
        f'<defs><clipPath id="{clips}-names"><rect width="{_f(x0 - 6)}" height="{_f(height)}"/>'
        f'</clipPath><clipPath id="{clips}-rows"><rect width="{_f(label_w - 4)}" '
        f'height="{_f(height)}"/></clipPath></defs>'
    )
    names, row_names = f'clip-path="url(#{clips}-names)"', f'clip-path="url(#{clips}-rows)"'
    # the axis, with a grid line through every row
    out.append('<g class="axis">')
    ticks, step = _ticks(section.start, section.end, max(int((x1 - x0) // 110), 2))
    day: str | None = None
    for t in ticks:
        text, day = _tick_label(t, step, clock, day)
        out.append(
            f'<line class="grid" x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{_AXIS_H - 4}" '
            f'y2="{_f(height - 4)}"/><text x="{_f(x(t))}" y="{_AXIS_H - 9}" '
            f'text-anchor="middle">{shown(text)}</text>'
        )
    out.append(
        f'<line class="base" x1="{_f(x0)}" x2="{_f(x1)}" y1="{_AXIS_H - 4}" y2="{_AXIS_H - 4}"/>'
    )
    out.append("</g>")
    group = None
    at: dict[int, tuple[float, float]] = {}  # a finding's span: its left end and middle
    for n, row in enumerate(section.rows):
        if row.group != group:
            group = row.group
            out.append(
                f'<text class="group-label" x="8" y="{_f(row.y - 6)}" {names}>'
                f"{_fit(group, x0 - 14, _GROUP_PX)}<title>{shown(group)}</title></text>"
            )
        label, whole = labels[id(row)]
        attributes = f'data-row="{row.kind}" data-clock="{clock}"'
        if row.node is not None:
            attributes += f' data-node="{shown(row.node)}"'
        if row.kind == "gpu":
            attributes += f' data-gpu="{shown(row.device)}"'
        if row.kind == "job":
            attributes += f' data-job="{shown(row.device)}"'
        out.append(f'<g class="row" {attributes} data-findings="{len(row.findings)}">')
        out.append(
            f'<rect class="row-bg{" alt" if n % 2 else ""}" x="0" y="{_f(row.y)}" '
            f'width="{WIDTH}" height="{_f(row.height - 1)}"/>'
            f'<text class="row-label" x="20" y="{_f(row.y + _ROW_PAD + _LANE_H - 2)}" '
            f"{row_names}>{_fit(label, label_w - 24, _ROW_PX, bold=False)}"
            f"<title>{shown(whole)}</title></text>"
        )
        out.extend(_spans_svg(row, findings, x, at))
        out.extend(_marks_svg(row, section, x0, (x1 - x0) / section.bins))
        out.extend(_edges_svg(row, x0, x1))
        out.append("</g>")
    # connectors curve out to the left, into the counts' column but not the labels'
    out.extend(_links_svg(links, at, label_w + 28))
    out.append("</svg></div>")
    return "\n".join(out)


def _legend(kinds: list[int], incidents: bool) -> str:
    def swatch(css: str) -> str:
        return f'<svg width="10" height="10"><rect class="{css}" width="10" height="10"/></svg>'

    items = [f"<span>{swatch(f'span sev-{name}')}{name}</span>" for name in SEVERITY_NAMES]
    items += [f"<span>{swatch(f'mark k-{KINDS[k]}')}{KINDS[k]}</span>" for k in kinds]
    if incidents:
        items.append("<span>dashed: incident, root → effect</span>")
    return f'<div class="legend">spans: findings by severity; marks: events {"".join(items)}</div>'


def _spans_svg(
    row: _Row,
    findings: Sequence[Finding],
    x: Callable[[float], float],
    at: dict[int, tuple[float, float]],
) -> list[str]:
    out = []
    for i in row.findings:
        f, times = findings[i], times_of(findings[i])
        if times is None:
            continue
        a = x(times[0])
        b = max(x(times[1]), a + _MIN_SPAN_W)
        top = row.y + _ROW_PAD + row.lane[i] * (_LANE_H + _LANE_GAP)
        at[i] = (a, top + _LANE_H / 2)
        tip = (
            f"F{i + 1} {f.severity} {f.action} · {f.detector}: {f.summary} "
            f"({when(times[0], f.clock)} → {when(times[1], f.clock)})"
        )
        out.append(
            f'<a href="#finding-{i + 1}"><title>{shown(tip)}</title>'
            f'<rect class="span sev-{f.severity}" x="{_f(a)}" y="{_f(top)}" '
            f'width="{_f(b - a)}" height="{_LANE_H}" rx="2"/>'
            f'<text class="span-label" x="{_f(b + 3)}" y="{_f(top + _LANE_H - 3)}">'
            f"F{i + 1}</text></a>"
        )
    return out


def _marks_svg(row: _Row, section: _Section, x0: float, bin_w: float) -> list[str]:
    """A row's events: per kind, a band of marks, one per bin that holds any, shaded by
    how many (against the most in a bin of that kind in the section). One path per
    kind and shade keeps the page small; the tooltip gives the kind's count."""
    band = row.y + _ROW_PAD + row.lanes * (_LANE_H + _LANE_GAP)
    width = _f(max(bin_w - 0.5, 2.0))
    shapes: dict[int, dict[int, list[str]]] = {}  # kind -> shade -> subpaths
    totals: dict[int, int] = {}
    for kind, slot, n in row.marks:
        peak = section.peaks[kind]
        shade = _LEVELS if peak <= 1 else math.ceil(_LEVELS * math.log1p(n) / math.log1p(peak))
        y = band + row.kinds.index(kind) * _KIND_H
        shapes.setdefault(kind, {}).setdefault(shade, []).append(
            f"M{_f(x0 + slot * bin_w)} {_f(y)}h{width}v{_KIND_H - 1}h-{width}z"
        )
        totals[kind] = totals.get(kind, 0) + n
    out = []
    for kind, by_shade in shapes.items():
        name = KINDS[kind]
        out.append(f"<g><title>{name}: {totals[kind]:,} event(s) in this range</title>")
        for shade, subpaths in sorted(by_shade.items()):
            opacity = 0.25 + 0.75 * shade / _LEVELS
            out.append(
                f'<path class="mark k-{name}" opacity="{opacity:.2f}" d="{"".join(subpaths)}"/>'
            )
        out.append("</g>")
    return out


def _edges_svg(row: _Row, x0: float, x1: float) -> list[str]:
    middle = row.y + row.height - _ROW_PAD - max(len(row.kinds), 1) * _KIND_H / 2 + 3
    out = []
    if row.before:
        out.append(
            f'<text class="edge" x="{_f(x0 - 4)}" y="{_f(middle)}" text-anchor="end">'
            f"◂{_compact(row.before)}<title>{row.before:,} event(s) before this range"
            "</title></text>"
        )
    if row.after:
        out.append(
            f'<text class="edge" x="{_f(x1 + 4)}" y="{_f(middle)}">{_compact(row.after)}▸'
            f"<title>{row.after:,} event(s) after this range</title></text>"
        )
    return out


def _connector(
    a: tuple[float, float], b: tuple[float, float], bend: float, leftmost: float
) -> tuple[float, list[tuple[float, float]]]:
    """A connector from ``a`` to ``b``: a cubic curve whose controls lie ``bend`` to the
    left of each end, the bend made smaller where the curve would pass left of
    ``leftmost``; return the bend and points along the curve."""
    (ax, ay), (bx, by) = a, b
    steps = [k / _CURVE_STEPS for k in range(_CURVE_STEPS + 1)]
    for t in steps[1:-1]:  # x(t) = base(t) - 3(1-t)t bend: the bend that keeps it right
        u = 1 - t
        base = ax * (u**3 + 3 * u * u * t) + bx * (3 * u * t * t + t**3)
        bend = max(min(bend, (base - leftmost) / (3 * u * t)), 0.0)
    c1x, c2x = ax - bend, bx - bend
    points = []
    for t in steps:
        u = 1 - t
        w0, w1, w2, w3 = u**3, 3 * u * u * t, 3 * u * t * t, t**3
        points.append((w0 * ax + w1 * c1x + w2 * c2x + w3 * bx, (w0 + w1) * ay + (w2 + w3) * by))
    return bend, points


def _links_svg(
    links: Sequence[Link], at: dict[int, tuple[float, float]], leftmost: float
) -> list[str]:
    """Each incident: a dashed connector from its root's span to each effect's, curving
    out to the left (not past ``leftmost``: the row labels are there), and its label
    ``I1`` just left of the connectors' farthest point, on them."""
    out = []
    for inc in links:
        if inc.root is None or inc.root not in at:
            continue
        css = f"inc-{(inc.number - 1) % _INCIDENT_COLORS}"
        ax, ay = at[inc.root]
        summary = shown(inc.summary)
        parts = [
            f'<g class="incident" data-incident="{inc.number}">'
            f"<title>I{inc.number}: {summary}</title>"
            f'<circle class="{css}" cx="{_f(ax)}" cy="{_f(ay)}" r="3"/>'
        ]
        far: tuple[float, float] | None = None  # the connectors' leftmost point
        for effect in inc.effects:
            if effect not in at or effect == inc.root:
                continue
            bx, by = at[effect]
            bend = max(26.0, abs(bx - ax) / 2, abs(by - ay) / 3)
            bend, points = _connector((ax, ay), (bx - 1, by), bend, leftmost)
            parts.append(
                f'<path class="link {css}" d="M{_f(ax)},{_f(ay)} C{_f(ax - bend)},{_f(ay)} '
                f'{_f(bx - 1 - bend)},{_f(by)} {_f(bx - 1)},{_f(by)}"/>'
                f'<polygon class="{css}" points="{_f(bx)},{_f(by)} {_f(bx - 7)},{_f(by - 4)} '
                f'{_f(bx - 7)},{_f(by + 4)}"/>'
            )
            point = min(points)
            far = point if far is None or point < far else far
        if far is not None:
            parts.append(
                f'<text class="link-label {css}" x="{_f(far[0] - 4)}" y="{_f(far[1] + 3.5)}" '
                f'text-anchor="end">I{inc.number}</text>'
            )
            out.extend(parts)
            out.append("</g>")
    return out

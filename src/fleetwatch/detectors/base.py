"""The detector contract, and the incident book every detector keeps.

A detector subscribes to event kinds, reads whole batches (``process``), closes its
windows when told the time (``flush``), and can save and restore its state
(``state.Stateful``: a restart loses no window and repeats no finding). Its
thresholds live in a frozen config dataclass whose fields have defaults; the user's
TOML overrides them (``config.py``).

``IncidentBook`` folds repeats: an incident stays open while its events keep coming
within ``gap_s`` of each other, so a flood of identical lines is one finding with a
count. Evidence keeps the first and last few records, as ``file:line`` pointers with
what they said.

Two clocks
    An event's time is wall clock (epoch seconds) or boot clock (seconds since its
    node booted, plain dmesg without an anchor); the two are never compared or mixed.
    A ``Span`` carries its clock. An incident's ``first_ts``/``last_ts`` are of one
    clock: wall once any wall-clock event joined it (an operator can place it on a
    calendar), boot before that. Boot-clock times of an incident on the wall clock
    are kept apart, in ``boot_first_ts``/``boot_last_ts``. Events of the other clock
    join the open incident of their key without a gap check: the gap between a
    boot-clock and a wall-clock time cannot be known.

Forgetting
    State has a lifetime: ``flush(now)`` closes and forgets every entry (an incident,
    a job, a GPU's counters) that has not changed for its keep time (an incident's
    gap, a config's ``forget_*_after_s``). Time here is the clock of the ``flush``
    calls, not the events' stamps: a changed entry is stamped ``seen = None``, and the
    next ``flush(now)`` stamps it ``now``; it is forgotten at the first ``flush(now)``
    with ``now - seen > keep``. Event stamps cannot do this job: a node's boot-clock
    stamps (plain dmesg) are seconds since boot, and a backlog read at start-up is
    hours old, while neither has ended. Replay's clock is event time (the latest
    event's time), so there an entry goes once ``last event + keep < now``, when no
    later event could fold into it: forgetting never changes a finding. ``flush(None)``
    (the input ended) closes windows and forgets nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from fleetwatch.detectors.state import register
from fleetwatch.events import (
    CLOCK_ID,
    FIELD_SHOWN,
    KIND_ID,
    KINDS,
    SHOWN_FLOAT,
    SHOWN_INT,
    SHOWN_STR,
    EventBatch,
)
from fleetwatch.findings import Action, Finding, Severity, finding_id

EVIDENCE_HEAD = 3
EVIDENCE_TAIL = 3


class Detector(Protocol):
    """What the engine needs of a detector."""

    name: ClassVar[str]
    description: ClassVar[str]  # one line, for ``fleetwatch detectors``
    kinds: ClassVar[frozenset[str]]
    config_type: ClassVar[type]  # the frozen dataclass of its thresholds

    def process(self, batch: EventBatch) -> list[Finding]:
        """Read one batch; return the findings it opened or changed."""
        ...

    def flush(self, now: float | None) -> list[Finding]:
        """Close and forget what ``now`` ends (None: the input ended, forget nothing).

        Returns the findings that closing changed. See "Forgetting" above.
        """
        ...

    def size(self) -> int:
        """How many entries its state holds (incidents, jobs, GPUs' series): what
        ``flush`` bounds."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to continue elsewhere, as JSON-able data."""
        ...

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from ``saved``."""
        ...


_EVIDENCE_FIELDS = ("code", "severity", "scope", "value", "rank", "seq", "pod", "reason")
# each evidence field, how its raw value is shown and its enum table (events.FIELD_SHOWN)
_EVIDENCE: Final = tuple((name, *FIELD_SHOWN[name]) for name in _EVIDENCE_FIELDS)
_KINDS_SHOWN: Final = FIELD_SHOWN["kind"][1]


def describe(batch: EventBatch, row: int) -> str:
    """One evidence line for an event: where it was read and what it said.

    What ``EventBatch.value`` reads of each field, read here from the columns: evidence
    lines are the detectors' most frequent Python (two function calls a field saved).
    """
    # one string grown piece by piece: a list of parts and its join cost more, as most
    # events have two or three fields
    columns, strings = batch.columns, batch.strings
    file, line = columns["file"].item(row), columns["line"].item(row)
    kind = columns["kind"].item(row)
    text = (
        f"{(strings[file] if file >= 0 else None) or '?'}:{line if line > 0 else '?'}"
        f" {_KINDS_SHOWN[kind] if kind >= 0 else None}"
    )
    for name, shown, table in _EVIDENCE:
        raw = columns[name].item(row)
        if shown == SHOWN_FLOAT:
            if raw == raw:  # NaN is absent
                text = f"{text} {name}={raw}"
        elif raw >= 0:
            found = (
                strings[raw] if shown == SHOWN_STR else raw if shown == SHOWN_INT else table[raw]
            )
            if found is not None:
                text = f"{text} {name}={found}"
    detail = columns["detail"].item(row)
    return f"{text} {strings[detail]}" if detail >= 0 and strings[detail] else text


def kind_table(*kinds: str) -> npt.NDArray[np.bool_]:
    """A lookup table of event kinds: ``table[batch["kind"]]`` marks the rows of ``kinds``.

    One indexing, where ``np.isin`` sorts (some eighty allocations a call). An absent
    kind (-1) reads the table's extra last entry, which is False.
    """
    table = np.zeros(len(KINDS) + 1, dtype=bool)
    table[[KIND_ID[kind] for kind in kinds]] = True
    return table


def pack(*columns: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """One int64 key per row from non-negative integer columns (ids, ranks, codes), in
    the order of the columns; -1 (absent) packs as all ones, after every value.

    ``np.unique`` on one 1-D key costs far less than on stacked columns with ``axis=1``.
    Bits per column (63 in all, so that keys are never negative): one column 63; two
    31 and 32 (any string ids); three 25, 26 and 12 (string ids below 33 million, then
    a small number: a counter's kind, scope and source).
    """
    fields = _FIELDS.get(len(columns))
    if fields is None:
        raise ValueError("pack takes one to three columns")
    # in place, with NumPy scalars: a Python int operand and each new array cost allocations
    key = columns[0].astype(np.int64)
    key &= fields[0][1]
    for i in _LATER[len(columns)]:  # a range, a zip or a slice would be allocations
        shift, bits = fields[i]
        part = columns[i].astype(np.int64)
        part &= bits
        key <<= shift
        key |= part
    return key


def _field(width: int) -> tuple[np.int64, np.int64]:
    return np.int64(width), np.int64((1 << width) - 1)


# columns packed -> each column's (width, mask)
_FIELDS: Final = {
    1: (_field(63),),
    2: (_field(31), _field(32)),
    3: (_field(25), _field(26), _field(12)),
}
_LATER: Final = {1: (), 2: (1,), 3: (1, 2)}  # the columns shifted in after the first
PACKED_IDS_APART: Final = 1 << 25
"""String ids below this never pack alike, whatever ``pack`` packs them with."""


@register
@dataclass
class Incident:
    """One open or closed incident of one entity."""

    key: tuple[Any, ...]
    first_ts: float | None
    last_ts: float | None
    count: int = 0
    clock: str | None = None  # of first_ts/last_ts: "wall", "boot", None (no time yet)
    boot_first_ts: float | None = None  # boot-clock times of an incident on the wall clock
    boot_last_ts: float | None = None
    head: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=EVIDENCE_TAIL))
    attrs: dict[str, Any] = field(default_factory=dict)
    opened_ts: float | None = None  # the id's time: earlier evidence folded in later keeps it
    seen: float | None = None  # the flush clock when it last changed; None: since the last flush
    finding_id: str | None = None  # its finding's id, made once (a hash of key and opened_ts)

    def __post_init__(self) -> None:
        if self.opened_ts is None:
            self.opened_ts = self.first_ts

    @property
    def when(self) -> Span:
        """The incident's times on its clock."""
        return Span(self.first_ts, self.last_ts, self.clock)

    def evidence(self) -> tuple[str, ...]:
        skipped = self.count - len(self.head) - len(self.tail)
        middle = [f"… {skipped:,} more"] if skipped > 0 else []
        return (*self.head, *middle, *self.tail)

    def add(self, when: Span, count: int, first: str | None, last: str | None) -> None:
        self._time(when)
        self.count += count
        for line in (first, last) if last is not None and last != first else (first,):
            if line is None:
                continue
            if len(self.head) < EVIDENCE_HEAD:
                self.head.append(line)
            else:
                self.tail.append(line)

    def add_lines(
        self,
        batch: EventBatch,
        firsts: Sequence[int],
        lasts: Sequence[int],
        line: Callable[[EventBatch, int], str] = describe,
    ) -> None:
        """Add each piece's first and last line (``line`` of its rows ``firsts[i]`` and
        ``lasts[i]``; one record is a piece whose first is its last), in order, as
        ``add`` does, describing only the lines it keeps: those that fill the head, and
        the last few of the tail. (Many pieces of one batch would each be described,
        only for the next ones to push them out of the tail.)"""
        # by index: an iterator, a reversed view and a copy are each an allocation
        head = 0  # the pieces whose lines fill the head
        while head < len(firsts) and len(self.head) < EVIDENCE_HEAD:
            first, last = firsts[head], lasts[head]
            self.add(UNTIMED, 0, line(batch, first), line(batch, last) if last != first else None)
            head += 1
        kept: list[str] = []  # the newest first
        room = self.tail.maxlen or 0
        at = len(firsts) - 1
        while at >= head and len(kept) < room:
            first, last = firsts[at], lasts[at]
            kept.append(newest := line(batch, last))
            if last != first and len(kept) < room and (older := line(batch, first)) != newest:
                kept.append(older)  # a first line equal to the last is added once
            at -= 1
        if kept:
            kept.reverse()
            self.tail.extend(kept)

    def _time(self, when: Span) -> None:
        """Fold ``when`` into the incident's times, never mixing two clocks."""
        if when.boot_first_ts is not None:
            self._time(Span(when.boot_first_ts, when.boot_last_ts, "boot"))
        if when.clock is None:
            return
        if self.clock == "wall" and when.clock == "boot":
            self.boot_first_ts = _earliest(self.boot_first_ts, when.first_ts)
            self.boot_last_ts = _latest(self.boot_last_ts, when.last_ts)
            return
        if self.clock == "boot" and when.clock == "wall":
            # the wall clock wins; what the incident had so far was on the boot clock
            self.boot_first_ts, self.boot_last_ts = self.first_ts, self.last_ts
            self.first_ts = self.last_ts = None
        self.clock = when.clock
        self.first_ts = _earliest(self.first_ts, when.first_ts)
        self.last_ts = _latest(self.last_ts, when.last_ts)

    def follows(self, when: Span, gap_s: float) -> bool:
        """Whether events at ``when`` fold into this incident: they come within ``gap_s``
        of its last, or their time cannot be compared with its times."""
        if when.first_ts is None or self.last_ts is None or when.clock != self.clock:
            return True
        return when.first_ts - self.last_ts <= gap_s


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@register
@dataclass
class IncidentBook:
    """Open incidents by key; one folds repeats that arrive within ``gap_s``."""

    gap_s: float
    open: dict[tuple[Any, ...], Incident] = field(default_factory=dict)

    def touch(
        self,
        key: tuple[Any, ...],
        when: Span,
        count: int,
        first: str | None = None,
        last: str | None = None,
    ) -> tuple[Incident, bool]:
        """Fold ``count`` events at ``when`` into ``key``'s incident; True when it is a
        new one."""
        found = self.open.get(key)
        new = found is None or not found.follows(when, self.gap_s)
        if new:
            found = self.open[key] = Incident(key, None, None, opened_ts=when.first_ts)
        assert found is not None
        found.add(when, count, first, last)
        found.seen = None
        return found, new

    def current(self, key: tuple[Any, ...], when: Span) -> Incident | None:
        """``key``'s incident if an event at ``when`` would fold into it, else None."""
        found = self.open.get(key)
        return found if found is not None and found.follows(when, self.gap_s) else None

    def close(
        self, now: float, lag_s: float = 0.0, busy: Container[tuple[Any, ...]] = ()
    ) -> list[Incident]:
        """Forget the incidents that did not change for ``gap_s + lag_s``; return them.

        ``lag_s``: how far before the clock a later event's time may be when it reaches
        the book (a window judged after it ends). ``busy``: keys still gathering events
        for the book, never forgotten.
        """
        for key, incident in self.open.items():
            if key in busy:
                incident.seen = None  # still gathering: as if it changed
        return [
            self.open.pop(key)
            for key in _sweep(
                self.open, lambda i: i.seen, _restamp_incident, now, self.gap_s + lag_s
            )
        ]


K = TypeVar("K")
V = TypeVar("V")


def _sweep(
    table: dict[K, V],
    stamp_of: Callable[[V], float | None],
    restamp: Callable[[V, float], V],
    now: float,
    keep: float,
) -> list[K]:
    """The one rule of forgetting: an entry changed since the last flush (no stamp) is
    stamped ``now``; the keys of those unchanged for longer than ``keep`` are returned
    (the caller removes them)."""
    stale = []
    for key, value in table.items():
        stamp = stamp_of(value)
        if stamp is None:
            table[key] = restamp(value, now)
        elif now - stamp > keep:
            stale.append(key)
    return stale


def _restamp_incident(incident: Incident, now: float) -> Incident:
    incident.seen = now
    return incident


def expire(seen: dict[K, float | None], now: float, keep: float) -> list[K]:
    """Stamp the entries changed since the last flush (None) with ``now``; remove and
    return those unchanged for longer than ``keep``."""
    stale = _sweep(seen, lambda stamp: stamp, lambda _, at: at, now, keep)
    for key in stale:
        del seen[key]
    return stale


def expire_stamped(table: dict[K, tuple[Any, ...]], width: int, now: float, keep: float) -> int:
    """``expire`` for a table whose values end with their stamp (``width`` items).

    A value one item short (saved before values had stamps) counts as changed.
    Returns how many entries it removed.
    """
    stale = _sweep(
        table,
        lambda value: value[-1] if len(value) == width else None,
        lambda value, at: (*value[: width - 1], at),
        now,
        keep,
    )
    for key in stale:
        del table[key]
    return len(stale)


@dataclass(frozen=True, slots=True)  # one allocation each: a NamedTuple takes two
class Span:
    """The earliest and latest time of some events, and the clock both are on
    ("wall", "boot"; None with no time); on the wall clock, the boot-clock times of
    those events that had only those."""

    first_ts: float | None
    last_ts: float | None
    clock: str | None
    boot_first_ts: float | None = None
    boot_last_ts: float | None = None


UNTIMED = Span(None, None, None)
_WALL = CLOCK_ID["wall"]
_BOOT = CLOCK_ID["boot"]
# the clock ids as the column's own type: a Python int operand costs a conversion per use
_WALL_ID: Final = np.int8(_WALL)
_BOOT_ID: Final = np.int8(_BOOT)


def span(batch: EventBatch, rows: npt.NDArray[np.intp]) -> Span:
    """The earliest and latest time of ``rows``: of their wall-clock events if any,
    else of their boot-clock ones (see "Two clocks"); events without a time do not
    count."""
    return _span_of_few(batch, rows) if rows.size <= _FEW else _span_of_many(batch, rows)


def _span_of_many(batch: EventBatch, rows: npt.NDArray[np.intp]) -> Span:
    """``span`` in array calls."""
    clocks = batch["clock"][rows]
    ts = batch["ts"][rows]
    wall = clocks == _WALL_ID
    walls = np.count_nonzero(wall)
    if walls == 0:
        return _extent(ts[clocks == _BOOT_ID], "boot")
    if walls == wall.size:
        return _extent(ts, "wall")
    boot = _extent(ts[clocks == _BOOT_ID], "boot")
    on_wall = _extent(ts[wall], "wall")
    return Span(on_wall.first_ts, on_wall.last_ts, "wall", boot.first_ts, boot.last_ts)


_FEW: Final = 8  # rows read one by one: fewer allocations than a dozen array calls


def _span_of_few(batch: EventBatch, rows: npt.NDArray[np.intp]) -> Span:
    """``span`` of a few rows, read one by one: the same Span, value for value."""
    ts, clocks = batch["ts"], batch["clock"]
    walls = 0  # rows on the wall clock, with a time or not
    wall_first = wall_last = boot_first = boot_last = None
    for i in range(rows.size):
        row = rows.item(i)
        clock, t = clocks.item(row), ts.item(row)
        if clock == _WALL:
            walls += 1
            if t == t:  # not NaN: it has a time
                wall_first = t if wall_first is None or t < wall_first else wall_first
                wall_last = t if wall_last is None or t > wall_last else wall_last
        elif clock == _BOOT and t == t:
            boot_first = t if boot_first is None or t < boot_first else boot_first
            boot_last = t if boot_last is None or t > boot_last else boot_last
    if walls == 0:
        return UNTIMED if boot_first is None else Span(boot_first, boot_last, "boot")
    if walls == rows.size:
        return UNTIMED if wall_first is None else Span(wall_first, wall_last, "wall")
    return Span(wall_first, wall_last, "wall", boot_first, boot_last)


def _extent(ts: npt.NDArray[np.float64], clock: str) -> Span:
    if ts.size == 0:
        return UNTIMED
    # fmin and fmax pass over NaN (no time); NaN only when every time is
    first = np.fmin.reduce(ts)
    if np.isnan(first):
        return UNTIMED
    return Span(float(first), float(np.fmax.reduce(ts)), clock)


SPANS_AT_ONCE: Final = 8  # groups of a batch from which ``spans`` costs fewer allocations


def spans(batch: EventBatch, rows: npt.NDArray[np.intp], bounds: Sequence[int]) -> list[Span]:
    """``span`` of each group of ``rows`` (``rows[bounds[i]:bounds[i + 1]]``, none
    empty), the same Spans in a dozen array calls for all of them, where ``span`` per
    group costs one or a dozen each: for a batch of many groups (``SPANS_AT_ONCE``)."""
    ts, clocks = batch["ts"][rows], batch["clock"][rows]
    starts = bounds[:-1]
    wall = clocks == _WALL_ID
    walls = np.add.reduceat(wall, starts).tolist()  # wall-clock rows, timed or not
    sizes = np.diff(bounds).tolist()
    ends = []  # (firsts, lasts) of each clock: fmin and fmax pass over NaN, no time
    for on in (wall, clocks == _BOOT_ID):
        times = np.where(on, ts, np.nan)
        ends.append(
            (np.fmin.reduceat(times, starts).tolist(), np.fmax.reduceat(times, starts).tolist())
        )
    (wall_first, wall_last), (boot_first, boot_last) = ends
    found: list[Span] = []
    for i, size in enumerate(sizes):
        wf, wl, bf, bl = wall_first[i], wall_last[i], boot_first[i], boot_last[i]
        if walls[i] == 0:
            found.append(UNTIMED if bf != bf else Span(bf, bl, "boot"))
        elif walls[i] == size:
            found.append(UNTIMED if wf != wf else Span(wf, wl, "wall"))
        else:
            timed = wf == wf
            found.append(
                Span(
                    wf if timed else None,
                    wl if timed else None,
                    "wall",
                    bf if bf == bf else None,
                    bl if bl == bl else None,
                )
            )
    return found


def at(batch: EventBatch, row: int) -> Span:
    """The time of one event as a ``Span``."""
    # item(row): the plain value, without a NumPy scalar made first
    ts = batch["ts"].item(row)
    clock = batch["clock"].item(row)
    if ts != ts or clock not in (_WALL, _BOOT):
        return UNTIMED
    return Span(ts, ts, "wall" if clock == _WALL else "boot")


def last_of_each(key: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Where each distinct key occurs last, in ascending key order (each entity's latest
    row when rows are in read order).

    A stable sort and one comparison: ``np.unique(key[::-1], return_index=True)`` gives
    the same at nearly twice the allocations.
    """
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    last = np.ones(key.size, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=last[:-1])
    return order[last]


def runs(key: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Where each run of equal keys starts and ends in a sorted key array (an empty one
    is one empty run)."""
    if key.size == 0:
        return np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp)
    # one array of run edges, both ends included, sliced twice: no concatenation
    edges = np.ones(key.size + 1, dtype=bool)
    np.not_equal(key[1:], key[:-1], out=edges[1:-1])
    at = np.flatnonzero(edges)
    return at[:-1], at[1:]


def shifted(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each row's predecessor (NaN for the first): the sample before, within one array."""
    before = np.empty_like(values)
    before[0] = np.nan
    before[1:] = values[:-1]
    return before


def segments(ts: npt.NDArray[np.float64], gap_s: float) -> list[tuple[int, int]]:
    """Split sorted times into runs whose neighbours are at most ``gap_s`` apart."""
    if ts.size == 0:
        return []
    breaks = (np.flatnonzero(ts[1:] - ts[:-1] > gap_s) + 1).tolist()
    return list(zip([0, *breaks], [*breaks, ts.size], strict=True))


def finding_id_of(detector: str, incident: Incident) -> str:
    """The id of the finding ``incident`` stands for (``make_finding``'s)."""
    made = incident.finding_id
    if made is None:  # the key and opened_ts never change: hash them once
        label = "|".join(str(part) for part in incident.key)
        made = incident.finding_id = finding_id(detector, label, incident.opened_ts)
    return made


def make_finding(
    detector: str,
    incident: Incident,
    severity: Severity,
    action: Action,
    summary: str,
    entity: dict[str, Any],
) -> Finding:
    """The finding an incident stands for, with the entity's names.

    Its id comes from the incident's key, not from the names shown, so an incident
    that grows (one GPU, then the whole job) stays one finding.
    """
    return Finding(
        id=finding_id_of(detector, incident),
        detector=detector,
        severity=severity,
        action=action,
        summary=summary,
        first_ts=incident.first_ts,
        last_ts=incident.last_ts,
        clock=incident.clock,
        boot_first_ts=incident.boot_first_ts,
        boot_last_ts=incident.boot_last_ts,
        count=incident.count,
        evidence=incident.evidence(),
        **entity,
    )

"""nvlink: NVLink links that corrupt, retransmit and retrain, and when a node must go.

Pattern
    Per GPU, one NVLink incident while evidence keeps coming within ``gap_s``. Each
    link's error counters (per GPU where only totals are known) are judged by how many
    errors they added in the last hour:

    * CRC errors (a flit or data word arrived corrupted; the link replays it)
      ``crc_per_hour`` or more -> warning, ``inspect_fabric``;
    * replays (retransmissions) ``replays_per_hour`` or more -> warning;
    * recoveries (the link retrained: traffic stalls while it does, worse than a
      replay) ``recoveries_per_hour`` or more -> warning;
    * escalation to ``drain_node`` (error): a link over its warning line without a
      break for ``sustained_s``; CRC errors arriving at ``crc_drain_per_s`` or faster
      (DCGM's health check fails a link there: "CRC errors only matter at rates of
      100+ per second"); or an Xid 74 (NVLink Error, ``owner = "nvlink"`` in
      ``catalog/xid.toml``) on the same GPU as counter evidence.

    An Xid 74 alone is evidence of the same incident, with the catalog's severity and
    action (error, ``inspect_fabric``). The finding's severity is the worst and its
    action the strongest of its evidence.

Defaults
    ``crc_per_hour`` 600, ``replays_per_hour`` 60, ``recoveries_per_hour`` 1,
    ``crc_drain_per_s`` 100, ``sustained_s`` 1800, ``gap_s`` 3600,
    ``forget_gpu_after_s`` 86400. DCGM's own health watch fails a link at any replay or
    recovery; on a fleet of long-running nodes that is too eager for a page, so these
    warn on a rate that a healthy link does not reach and drain only on a fault that
    persists or that the driver itself reports (Xid 74).

Counters
    Cumulative, from dcgm-exporter (``DCGM_FI_DEV_NVLINK_*_ERROR_COUNT_{L0..L17,TOTAL}``),
    NVML (``nvmlDeviceGetNvLinkErrorCounter``) and ``nvidia-smi nvlink -e``. Each series
    (GPU, counter, link, source; CRC flit and CRC data apart) is judged on its own
    differences. The first sample of a series is its baseline; a counter that goes down
    was reset (driver reload, reboot, ``nvidia-smi nvlink -re``): the new value is a new
    baseline, never a negative rate. A sample without a time (an undated snapshot) only
    moves the baseline. Errors are kept in one-minute buckets for the last hour.

GPU
    A GPU is its PCI address; ``nvidia-smi nvlink -e`` names none, so its UUID or index
    stands for it until a record of the same node pairs it with an address.

Lifetime
    A series is forgotten once it has had no sample for ``forget_gpu_after_s`` (24 h),
    a UUID's or index's address with it; an incident once it has not changed for
    ``gap_s``. Time is the ``flush`` clock (see ``base``: "Forgetting").

Evidence
    The samples that crossed a line and the Xid 74 records (``file:line``, kind, value,
    link), first and last few.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import attrgetter
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from fleetwatch.catalog import xid, xids_owned_by
from fleetwatch.detectors.base import (
    UNTIMED,
    Incident,
    IncidentBook,
    Span,
    at,
    describe,
    expire_stamped,
    kind_table,
    make_finding,
    shifted,
    span,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import KINDS, SOURCES, EventBatch
from fleetwatch.findings import Action, Finding, Severity, strongest

NVLINK_XIDS: Final = xids_owned_by("nvlink")  # catalog/xid.toml: owner
_COUNTERS: Final = ("nvlink_crc", "nvlink_replay", "nvlink_recovery")
_IS_COUNTER: Final = kind_table(*_COUNTERS)
_IS_XID: Final = kind_table("xid")
# the column's own type: a Python int operand costs a conversion per use
_NVLINK_CODES: Final = tuple(np.int64(code) for code in NVLINK_XIDS)
_ZERO: Final = np.int32(0)  # ids and indices are this or more; absent is -1
_ONE: Final = np.intp(1)
_NO_ERRORS: Final = np.float64(0.0)  # no errors
_NOUN: Final = {
    "nvlink_crc": "CRC errors",
    "nvlink_replay": "replays",
    "nvlink_recovery": "recoveries",
}
_ADVICE: Final = {
    Action.DRAIN_NODE: "drain the node, then inspect the link (NVSwitch, baseboard)",
    Action.INSPECT_FABRIC: "inspect the link (NVSwitch, baseboard)",
}
# a verdict's severity and action (reading an enum member off its class allocates)
_WARN: Final = (Severity.WARNING, Action.INSPECT_FABRIC)
_DRAIN: Final = (Severity.ERROR, Action.DRAIN_NODE)
_XID_LINK: Final = re.compile(r"\blink (\d{1,3})\b", re.IGNORECASE)
# what makes a series: the GPU as the record names it, the counter, link and source
_SERIES_COLUMNS: Final = ("node", "pci", "uuid", "gpu", "kind", "link", "source", "detail")
_GPU_COLUMNS: Final = _SERIES_COLUMNS[:4]  # the GPU as the record names it
_FIRST_ROW: Final = attrgetter("first")
_HOUR_S: Final = 3600.0
_BUCKET_S: Final = 60.0


@dataclass(frozen=True)
class Config:
    """Thresholds of nvlink."""

    gap_s: float = 3600.0
    """NVLink evidence of one GPU closer than this belongs to one incident."""
    crc_per_hour: float = 600.0
    """CRC errors on one link (or a GPU's total) within an hour that make a warning."""
    replays_per_hour: float = 60.0
    """Replays (retransmissions) on one link within an hour that make a warning."""
    recoveries_per_hour: float = 1.0
    """Recoveries (link retrains) on one link within an hour that make a warning."""
    crc_drain_per_s: float = 100.0
    """CRC errors per second, sample to sample, at which the node is drained (DCGM's line)."""
    sustained_s: float = 1800.0
    """A link over its warning line this long without a break: drain the node."""
    forget_gpu_after_s: float = 86400.0
    """A counter series without samples for this long is forgotten (its baseline)."""


class _Evidence(NamedTuple):
    """Rows of one batch that are evidence for one GPU's NVLink incident."""

    members: np.ndarray
    first: int  # its first and last row (the evidence lines)
    last: int
    when: Span
    node: str
    gpu: str
    severity: Severity
    action: Action
    topic: str  # what it is about: one line per link and counter, or the Xid
    what: str
    of: str  # "xid" or "counters"


class _Verdict(NamedTuple):
    """What one group of a series' samples said, when some of them crossed a line."""

    hits: int  # how many crossed
    severity: Severity
    action: Action
    topic: str
    what: str


def _count(buckets: list[list[float]], t: float, errors: float) -> float:
    """Count ``errors`` at ``t`` into one series' hour of one-minute buckets; return
    how many the hour held before them.

    Bucket starts only grow (a bucket opens a minute or more after the one before), so
    the buckets an hour old are the first ones.
    """
    stale = 0
    while stale < len(buckets) and not buckets[stale][0] > t - _HOUR_S:
        stale += 1
    if stale:
        del buckets[:stale]
    # adds in the order ``sum`` does; by index, as an iterator is an allocation per rise
    before, at = 0.0, 0
    while at < len(buckets):
        before += buckets[at][1]
        at += 1
    if buckets and t - buckets[-1][0] < _BUCKET_S:
        buckets[-1][1] += errors
    else:
        buckets.append([t, errors])
    return before


@lru_cache(maxsize=1024)  # a few words per link and counter: one string each
def _topic(kind: str, link: int, counter: str) -> tuple[str, str, str]:
    """Where (a link, or all), what is counted, and both: a series' verdict's words."""
    where = f"link {link}" if link >= 0 else "all links"
    noun = _NOUN[kind] if not counter else f"CRC errors ({counter})"
    return where, noun, f"{where} {noun}"


@lru_cache(maxsize=256)  # Xid 74 lines of a flapping link repeat word for word
def _xid_words(code: int, name: str, detail: str) -> str:
    """What an Xid record says: its code, name and link."""
    what = f"Xid {code} ({name})"
    if (m := _XID_LINK.search(detail)) is not None:
        what += f" on link {m[1]}"
    return what


@lru_cache(maxsize=1024)  # bounded: an index is whatever a record says
def _index_name(index: int | None) -> str:
    """A GPU known only by its index, as this detector names it (one string each)."""
    return f"GPU {index}"


def _runs_of(keys: np.ndarray, major: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the columns of ``keys`` go in lexical order of its rows (the last the most
    significant, as ``np.lexsort`` reads them), and where each run of equal values of
    the ``major`` rows (the last ones) starts and ends in that order.

    Array calls cost allocations each, whatever their size: the rows are sorted and
    compared as one matrix, not one by one.
    """
    order = np.lexsort(keys)
    ordered = keys[-major:].take(order, axis=1)
    change = np.empty(order.size + 1, dtype=bool)
    change[0] = change[-1] = True  # a run starts at 0, and one ends at the end
    np.logical_or.reduce(ordered[:, 1:] != ordered[:, :-1], axis=0, out=change[1:-1])
    bounds = change.nonzero()[0]
    return order, bounds[:-1], bounds[1:]


class _Groups(NamedTuple):
    """Rows grouped by key columns: sorted, where each group starts and ends, and each
    column's value at each group's first row."""

    rows: np.ndarray  # sorted by the key columns (stably: equal keys as they came)
    starts: np.ndarray
    ends: np.ndarray
    firsts: list[list[Any]]
    undated: Sequence[tuple[int, ...]] = ()  # the GPU ids of samples left out


def _grouped(
    batch: EventBatch,
    rows: np.ndarray,
    columns: tuple[str, ...],
    minor: np.ndarray | None = None,
    undated: Sequence[tuple[int, ...]] = (),
) -> _Groups:
    """``rows`` grouped by the batch's ``columns`` (then by ``minor``, a column)."""
    # one matrix, least significant row first: the minor column's ranks (equal values
    # in the order they came, as a stable sort keeps them), then the key columns from
    # the last to the first; every key column fits in int32. Whole columns are copied
    # in and the rows taken once: a copy costs fewer allocations than a gather.
    extra = 0 if minor is None else 1
    every = np.empty((len(columns) + extra, len(batch)), dtype=np.int32)
    at = len(every)
    for column in columns:
        at -= 1
        every[at] = batch[column]
    keys = every.take(rows, axis=1)
    if minor is not None:
        keys[0] = minor.take(rows).argsort(kind="stable").argsort()
    order, starts, ends = _runs_of(keys, len(columns))
    firsts: list[list[Any]] = keys[::-1][: len(columns)].take(order.take(starts), axis=1).tolist()
    return _Groups(rows.take(order), starts, ends, firsts, undated)


_NONE: Final = np.empty(0, dtype=np.intp)
_NO_GROUPS: Final = _Groups(_NONE, _NONE, _NONE, [[], [], [], [], [], [], [], []])


class Nvlink(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "nvlink"
    description: ClassVar[str] = (
        "NVLink CRC, replay and recovery error rates per link, and Xid 74, per GPU"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({*_COUNTERS, "xid"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.gap_s)  # (node, gpu)
        # (node, gpu, kind, link, source, counter) -> (last value, last time,
        # [[bucket start, errors], ...] of the last hour, over the line since,
        # flush clock then); the clock is None until the next flush
        self.series: dict[tuple[str, str, str, int, str, str], tuple[Any, ...]] = {}
        # (node, "GPU-uuid" or "GPU <index>") -> (PCI address, flush clock then)
        self.alias: dict[tuple[str, str], tuple[str, float | None]] = {}
        self._due: list[_Evidence] = []  # this batch's evidence, not yet folded
        self._limit = {
            "nvlink_crc": self.config.crc_per_hour,
            "nvlink_replay": self.config.replays_per_hour,
            "nvlink_recovery": self.config.recoveries_per_hour,
        }

    def process(self, batch: EventBatch) -> list[Finding]:
        kind = batch["kind"]
        counters = _IS_COUNTER[kind]
        xid_rows = _IS_XID[kind].nonzero()[0]
        if xid_rows.size:  # the codes are read only at the Xids
            codes = batch["code"].take(xid_rows)
            nvlink = codes == _NVLINK_CODES[0]
            for code in _NVLINK_CODES[1:]:
                nvlink |= codes == code
            xid_rows = xid_rows[nvlink]
        named = batch["pci"] >= _ZERO
        named |= batch["uuid"] >= _ZERO
        named |= batch["gpu"] >= _ZERO
        named &= counters  # a counter sample that names its GPU somehow
        rows = named.nonzero()[0]
        samples = self._samples(batch, rows) if rows.size else _NO_GROUPS
        records = _grouped(batch, xid_rows, _GPU_COLUMNS) if xid_rows.size else _NO_GROUPS
        # Every (node, address, UUID, index) the batch brings is the first row of a
        # group (or an undated sample's): learning reads those, not every row.
        pairs = {
            *zip(*samples.firsts[:4], strict=True),
            *zip(*records.firsts, strict=True),
            *samples.undated,
        }
        self._learn(batch.strings, pairs)
        if samples.starts.size:
            self._counters(batch, samples)
        if records.starts.size:
            self._xids(batch, records)
        if not self._due:
            return []
        # Evidence joins its incident in the order it was read, so the incident opens
        # at its first evidence whichever way the events were cut into batches; each
        # incident it changed is one finding, in the order they were first changed.
        self._due.sort(key=_FIRST_ROW)
        # (incident, its pieces' first rows, their last rows)
        changed: list[tuple[Incident, list[int], list[int]]] = []
        latest: dict[tuple[str, str], int] = {}  # each GPU's latest incident in changed
        for evidence in self._due:
            incident = self._fold(batch, evidence)
            at = latest.get(incident.key)
            # a GPU's evidence far apart in time opens a new incident: the old one is
            # still a finding of its own
            if at is None or changed[at][0] is not incident:
                latest[incident.key] = len(changed)
                changed.append((incident, [evidence.first], [evidence.last]))
            else:
                changed[at][1].append(evidence.first)
                changed[at][2].append(evidence.last)
        self._due.clear()
        for incident, firsts, lasts in changed:
            incident.add_lines(batch, firsts, lasts, self._line)
        return [self._finding(incident) for incident, _, _ in changed]

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        keep = self.config.forget_gpu_after_s
        self.book.close(now)
        expire_stamped(self.series, 5, now, keep)
        expire_stamped(self.alias, 2, now, keep)
        return []

    def size(self) -> int:
        return len(self.book.open) + len(self.series) + len(self.alias)

    # -- which GPU -------------------------------------------------------------------

    def _samples(self, batch: EventBatch, rows: np.ndarray) -> _Groups:
        """The counter samples ``rows`` grouped by series, each group in time order;
        ``undated``: the GPU names of those without a time or value (no rate)."""
        ts, value = batch["ts"], batch["value"]
        dated = ~np.isnan(ts[rows])
        dated &= ~np.isnan(value[rows])
        undated: list[tuple[int, ...]] = []
        if not dated.all():  # rare: nvidia-smi snapshots without a time
            left = rows[~dated]
            undated = [*zip(*(batch[c][left].tolist() for c in _GPU_COLUMNS), strict=True)]
            rows = rows[dated]
        return _grouped(batch, rows, _SERIES_COLUMNS, ts, undated)

    def _learn(self, strings: tuple[str, ...], pairs: Iterable[tuple[int, ...]]) -> None:
        """Note the PCI address of each UUID and index that ``pairs`` (node, PCI, UUID
        ids and index) pair with one, in the order of their ids."""
        for node_id, pci_id, uuid_id, index in sorted(pairs):
            if pci_id < 0:
                continue
            node, pci = strings[node_id], strings[pci_id]
            # the UUID, then the index (written out: a loop over the two is an iterator)
            if uuid_id >= 0:
                self._pair(node, strings[uuid_id], pci)
            if index >= 0:
                self._pair(node, _index_name(index), pci)

    def _pair(self, node: str, name: str, pci: str) -> None:
        """Note that ``name`` (a UUID or "GPU <index>") on ``node`` is ``pci``; a known
        pairing is left as it is unless a flush stamped it (it is seen again)."""
        known = self.alias.get((node, name))
        if known is None or known[1] is not None or known[0] != pci:
            self.alias[node, name] = (pci, None)

    def _gpu(self, node: str, pci: str | None, uuid: str | None, index: int | None) -> str:
        """The GPU's name in this detector: its PCI address where known."""
        if pci:
            return pci
        for name in (uuid, None if index is None else _index_name(index)):
            if name is not None and (found := self.alias.get((node, name))) is not None:
                return found[0]
        return uuid or _index_name(index)

    # -- evidence ----------------------------------------------------------------------

    def _counters(self, batch: EventBatch, samples: _Groups) -> None:
        """Every series' samples of this batch at once: baselines, rises, judgement.

        Differences are array work over the whole batch; Python runs once per series
        (its key and saved state) and once per rise, where the hour's buckets are
        counted in the order the samples came.
        """
        ts, value = batch["ts"], batch["value"]
        rows, starts, ends = samples.rows, samples.starts, samples.ends
        strings = batch.strings
        names = []  # each group's series key
        for node_id, pci_id, uuid_id, index, k, link, source, detail in zip(
            *samples.firsts, strict=True
        ):
            node = strings[node_id]
            gpu = self._gpu(
                node, batch.string(pci_id), batch.string(uuid_id), None if index < 0 else index
            )
            names.append((node, gpu, KINDS[k], link, SOURCES[source], batch.string(detail) or ""))
        number: dict[tuple[str, str, str, int, str, str], int] = {}  # series, as first seen
        for name in names:
            number.setdefault(name, len(number))
        if len(number) < len(names):
            # two groups name one GPU (by its address, and by a UUID that pairs with it):
            # one series, the later group's samples after the earlier's
            regroup = np.argsort([number[name] for name in names], kind="stable").tolist()
            rows = np.concatenate([rows[starts[g] : ends[g]] for g in regroup])
            sizes = (ends - starts)[regroup]
            ends = np.cumsum(sizes)
            starts = ends - sizes
            names = [names[g] for g in regroup]
        vals, times = value[rows], ts[rows]
        # the sample before each one; a series' first comes after its saved last sample
        before, then = shifted(vals), shifted(times)
        opens = [g for g, name in enumerate(names) if not g or name != names[g - 1]]
        saved = [self.series.get(names[g]) for g in opens]
        at_opens = starts[opens] if len(opens) < len(names) else starts
        before[at_opens] = [np.nan if p is None else p[0] for p in saved]
        then[at_opens] = [np.nan if p is None else p[1] for p in saved]
        # the first sample is a baseline; a counter that went down was reset: a new one
        rises = vals - before  # NaN after no sample: fmax takes 0 over NaN
        np.fmax(rises, _NO_ERRORS, out=rises)
        rising = (rises > _NO_ERRORS).nonzero()[0]
        bounds = [*np.searchsorted(rising, starts).tolist(), rising.size]
        # memoryviews, read as the loop goes: each float is freed before the next is made
        risen = (times[rising].data, rises[rising].data, (times - then)[rising].data)
        # each group's last sample, read as its entry is replaced (whose floats it reuses)
        lasts = ends - _ONE
        last_value, last_time = vals.take(lasts).data, times.take(lasts).data
        crossed: list[bool] = []  # for each rise, whether it crossed a line
        verdicts: list[tuple[tuple[str, str, str, int, str, str], _Verdict]] = []
        for g, name in enumerate(names):
            previous = self.series.get(name)  # the earlier group's, where one came before
            buckets: list[list[float]] = [] if previous is None else previous[2]
            over: float | None = None if previous is None else previous[3]
            begin, end = bounds[g], bounds[g + 1]
            if begin < end:
                over, verdict = self._judge(name, range(begin, end), risen, buckets, over, crossed)
                if verdict is not None:
                    verdicts.append((name, verdict))
            self.series[name] = (last_value[g], last_time[g], buckets, over, None)
        if verdicts:
            hit = rising[np.asarray(crossed)]
            self._evidence(rows[hit], times[hit], verdicts)

    def _evidence(
        self,
        rows: np.ndarray,
        times: np.ndarray,
        verdicts: list[tuple[tuple[str, str, str, int, str, str], _Verdict]],
    ) -> None:
        """One piece of evidence per group and batch: its rows that crossed a line (in
        ``rows``, each group's after the one before)."""
        begin = 0
        for name, (hits, severity, action, topic, what) in verdicts:
            end = begin + hits
            # counters come from nvidia-smi and DCGM, on the wall clock
            first_ts, last_ts = times.item(begin), times.item(end - 1)
            when = Span(first_ts, last_ts, "wall") if first_ts == first_ts else UNTIMED
            self._due.append(
                _Evidence(
                    rows[begin:end], rows.item(begin), rows.item(end - 1), when, name[0], name[1],
                    severity, action, topic, what, "counters",
                )
            )  # fmt: skip
            begin = end

    def _judge(
        self,
        key: tuple[str, str, str, int, str, str],
        which: range,
        rises: tuple[memoryview, memoryview, memoryview],
        buckets: list[list[float]],
        over: float | None,
        crossed: list[bool],
    ) -> tuple[float | None, _Verdict | None]:
        """Count one group's rises (``which`` of ``rises``: time, errors, seconds since
        the sample before) into its series' hour, in time order, and judge each against
        the lines; note in ``crossed`` whether each crossed one.

        Returns since when the series has been over its warning line (None: it is not),
        and the verdict when a rise crossed a line: the worst one says what.
        """
        config = self.config
        limit = self._limit[key[2]]
        crc = key[2] == "nvlink_crc"
        hits = 0
        worst_error = False
        worst = (0.0, 0.0, 0.0, 0.0, over)  # its time, errors, seconds, count, over since
        when, errors, elapsed = rises
        t: float
        r: float
        dt: float
        for i in which:
            t, r, dt = when[i], errors[i], elapsed[i]
            before = _count(buckets, t, r)
            count = before + r
            if before < limit:
                over = None  # it was under the line before this rise: a new run starts
            over = (t if over is None else over) if count >= limit else None
            burst = crc and dt > 0 and r / dt >= config.crc_drain_per_s
            crossed.append(over is not None or burst)
            if over is None and not burst:
                continue
            hits += 1
            error = burst or (over is not None and t - over >= config.sustained_s)
            if error or not worst_error:  # the worst verdict, the latest of equals
                worst_error, worst = error, (t, r, dt, count, over)
        if not hits:
            return over, None
        t, r, dt, count, since = worst
        where, noun, topic = _topic(key[2], key[3], key[5])
        what = f"{where}: {count:.0f} {noun} in the last hour (limit {limit:g})"
        severity, action = _WARN
        if crc and dt > 0 and r / dt >= config.crc_drain_per_s:
            what += f", {r / dt:.0f}/s"
            severity, action = _DRAIN
        if since is not None and t - since >= config.sustained_s:
            what += f", over it for {(t - since) / 60:.0f} min"
            severity, action = _DRAIN
        return over, _Verdict(hits, severity, action, topic, what)

    def _xids(self, batch: EventBatch, records: _Groups) -> None:
        """One piece of evidence per GPU and batch: its Xid 74 records."""
        rows, strings = records.rows, batch.strings
        bounds = zip(records.starts.tolist(), records.ends.tolist(), strict=True)
        gpus: dict[tuple[str, str], list[np.ndarray]] = {}  # (node, GPU) -> its runs' rows
        for (a, b), node_id, pci_id, uuid_id, index in zip(bounds, *records.firsts, strict=True):
            node = strings[node_id]
            gpu = self._gpu(
                node, batch.string(pci_id), batch.string(uuid_id), None if index < 0 else index
            )
            gpus.setdefault((node, gpu), []).append(rows[a:b])
        for (node, gpu), runs in gpus.items():
            # a run's rows are in the order they came (the sort is stable); a GPU named
            # two ways (address, UUID) has two runs to merge
            members = runs[0] if len(runs) == 1 else np.sort(np.concatenate(runs))
            last = members.item(-1)
            entry = xid(batch["code"].item(last))
            what = _xid_words(entry.code, entry.name, batch.value("detail", last) or "")
            first = members.item(0)
            # one record's time is ``at`` it: the same Span as ``span``, without its masks
            when = at(batch, first) if members.size == 1 else span(batch, members)
            self._due.append(
                _Evidence(
                    members, first, last, when, node, gpu,
                    entry.severity, entry.action, what, what, "xid",
                )
            )  # fmt: skip

    def _fold(self, batch: EventBatch, evidence: _Evidence) -> Incident:
        # by attribute: unpacking a NamedTuple goes through an iterator
        first, severity, action = evidence.first, evidence.severity, evidence.action
        key = (evidence.node, evidence.gpu)
        incident, _ = self.book.touch(key, evidence.when, evidence.members.size)
        attrs: dict[str, Any] = incident.attrs
        if (known := attrs.get("severity")) is None or severity > known:
            attrs["severity"] = severity  # the worst
        # the rest of the actions rank alike: the first evidence's stays unless outranked
        if (current := attrs.get("action", action)) is not action:
            action = strongest(current, action)
        attrs["action"] = action
        if (words := attrs.get("what")) is None:
            words = attrs["what"] = {}
        words[evidence.topic] = evidence.what  # the latest word on each link
        attrs[evidence.of] = True
        for name in ("gpu", "uuid", "serial"):
            value = batch.value(name, first)
            if value is not None:
                attrs[name] = value
        return incident

    @staticmethod
    def _line(batch: EventBatch, row: int) -> str:
        """The evidence line of a record, with its link."""
        line = describe(batch, row)
        link = batch.value("link", row)
        return line if link is None else f"{line} link={link}"

    def _finding(self, incident: Incident) -> Finding:
        node, gpu = incident.key
        attrs = incident.attrs
        severity, action = attrs["severity"], attrs["action"]
        if attrs.get("xid") and attrs.get("counters"):
            # the driver reported the link failing on a GPU whose counters were climbing
            severity, action = max(severity, Severity.ERROR), Action.DRAIN_NODE
        advice = _ADVICE.get(action) or str(action)
        summary = f"NVLink of GPU {gpu} on {node}: {'; '.join(attrs['what'].values())} -> {advice}"
        pci = gpu if not gpu.startswith("GPU") else None
        entity = {
            "node": node,
            "pci": pci,
            "gpu": attrs.get("gpu"),
            "uuid": attrs.get("uuid") or (gpu if gpu.startswith("GPU-") else None),
            "serial": attrs.get("serial"),
        }
        return make_finding(self.name, incident, severity, action, summary, entity)

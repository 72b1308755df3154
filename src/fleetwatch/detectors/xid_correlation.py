"""xid_correlation: what an Xid means, and what several Xids together mean.

Pattern
    Each Xid (kernel log or DCGM), fallen-off-the-bus record and SXid is classified by
    ``catalog/xid.toml`` (cause, severity, action) and folded into one incident per
    GPU and code while repeats keep coming within ``gap_s``. Then:

    * application Xids (cause ``application``: 13, 31, 43, 45) on two or more GPUs of
      one job within ``app_window_s`` are one finding about the job,
      ``fix_application``; they never flag a node or a GPU;
    * the same hardware Xid on ``node_min_gpus`` or more GPUs of one node within
      ``node_window_s`` points at the node (``drain_node``) or, for NVLink causes, the
      fabric (``inspect_fabric``);
    * ``rma_fatal_count`` incidents of fatal Xids on one GPU within ``rma_window_s``
      escalate to ``rma_gpu``;
    * Xid 45 "caused by previous Xid N" is evidence for N's incident on that GPU;
    * Xid 154 takes its action from the recovery action it names (Drain and Reset is
      ``reset_gpu``, drain the GPU's work first);
    * SXids fold per NVSwitch and code into ``inspect_fabric`` findings.

    Memory Xids (48, 63, 64, 92, 94, 95, 140, 156, 171: ``owner = "hbm_ecc"`` in
    ``catalog/xid.toml``) belong to ``hbm_ecc``, which reports them; here they only
    count toward the GPU's RMA escalation. Xids another detector owns (74: ``nvlink``;
    119, 120: ``gsp_fault``) have no per-GPU finding here, but count toward RMA and the
    node-wide pattern.

Job
    From dcgm-exporter's pod labels for the GPU (pods of one job share their name
    before the trailing ordinal); failing that, the process name the Xid names on
    that node.

Lifetime
    An incident is forgotten once it has not changed for its window (``gap_s``,
    ``app_window_s``, ``node_window_s``; an RMA incident for twice ``rma_window_s``,
    since a new fatal Xid extends it from the oldest one in its window). A GPU (its
    fatal history, job and names) is forgotten once it has had no event here for
    ``rma_window_s`` (default 24 h): its fatal Xids are then out of the RMA window.
    Xid 45 counts for the incident of the Xid it names only while that incident is
    open (within ``gap_s``). Time is the ``flush`` clock (see ``base``:
    "Forgetting").

Evidence
    The Xid records (``file:line``, code, text), first and last few.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np

from fleetwatch.catalog import XidEntry, xid, xid_catalog, xids_owned_by
from fleetwatch.detectors.base import (
    SPANS_AT_ONCE,
    Incident,
    IncidentBook,
    Span,
    at,
    describe,
    expire,
    finding_id_of,
    make_finding,
    span,
    spans,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import KIND_ID, KINDS, EventBatch
from fleetwatch.findings import Action, Finding, Severity

MEMORY_XIDS: Final = xids_owned_by("hbm_ecc")  # catalog/xid.toml: owner
# Xids another detector reports (74 is nvlink's): here they count toward the GPU's RMA
# escalation and the node-wide pattern, with no per-GPU finding of their own.
REPORTED_ELSEWHERE: Final = (
    frozenset(xid_catalog()) - xids_owned_by("xid_correlation") - MEMORY_XIDS
)
_CAUSED_BY: Final = re.compile(r"caused by previous Xid (\d+)")
_RECOVERY: Final = re.compile(r"to 0x[0-9a-fA-F]+ \(([^)]*)\)")
_RECOVERY_ACTIONS: Final = {
    "none": (Severity.INFO, Action.NONE, "no recovery action is needed"),
    "drain p2p": (Severity.WARNING, Action.DRAIN_NODE, "drain peer-to-peer traffic"),
    "drain and reset": (
        Severity.ERROR,
        Action.RESET_GPU,
        "drain the GPU's work first, then reset it",
    ),
    "gpu reset required": (Severity.ERROR, Action.RESET_GPU, "reset the GPU"),
    "node reboot required": (Severity.CRITICAL, Action.REBOOT_NODE, "reboot the node"),
}
_POD_ORDINAL: Final = re.compile(r"-(?:master|worker|launcher)?-?\d+$")
# each kind's part here: 1 an Xid's record, 2 an SXid, 0 the rest (the extra last
# entry answers kind -1); a lookup per row is cheaper than a comparison per kind
_XID, _SXID = 1, 2
_ROLE: Final = np.zeros(len(KINDS) + 1, dtype=np.int8)
_ROLE[[KIND_ID["xid"], KIND_ID["gpu_lost"]]] = _XID
_ROLE[KIND_ID["sxid"]] = _SXID


# a job's latest run: its incident, the run's GPU names, its code, entry and job names
_JobRun = tuple[Incident, dict[str, Any], int, XidEntry, dict[str, Any]]


class _JobsChanged:
    """The job incidents (application Xids) one batch changed. A job's flood of Xids
    comes as many runs (one per GPU and code), and each run made a finding that the
    next replaced: now each incident's lines are added once (described only where
    kept, ``Incident.add_lines``) and its finding is made once, from its latest run."""

    def __init__(self) -> None:
        self.pieces: dict[int, tuple[Incident, list[int], list[int]]] = {}  # by id(incident)
        self.last: dict[str, _JobRun] = {}  # finding id -> latest run

    def add(self, detector: str, incident: Incident, first: int, last: int, run: _JobRun) -> str:
        """Note a run of rows ``first`` .. ``last``; return its incident's finding id."""
        pieces = self.pieces.get(id(incident))
        if pieces is None:
            pieces = self.pieces[id(incident)] = (incident, [], [])
        pieces[1].append(first)
        pieces[2].append(last)
        made = finding_id_of(detector, incident)
        self.last[made] = run
        return made


@dataclass(frozen=True)
class Config:
    """Thresholds of xid_correlation."""

    gap_s: float = 180.0
    """Repeats closer than this fold into one incident."""
    node_window_s: float = 300.0
    """The same hardware Xid on several GPUs of a node within this window is the node's."""
    node_min_gpus: int = 2
    """How many GPUs of one node make a node-level finding."""
    app_window_s: float = 60.0
    """Application Xids of one job within this window are one finding about the job."""
    rma_window_s: float = 86400.0
    """The window for counting fatal Xid incidents on one GPU."""
    rma_fatal_count: int = 5
    """This many fatal Xid incidents on one GPU within the window: RMA it."""


class XidCorrelation(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "xid_correlation"
    description: ClassVar[str] = (
        "classify Xids, fold bursts, tell job bugs from node and fabric faults"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset(
        {
            "xid",
            "sxid",
            "gpu_lost",
            "temperature",
            "power",
            "clock_event",
        }
    )

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.gpu = IncidentBook(self.config.gap_s)  # (node, pci, code)
        self.app = IncidentBook(self.config.app_window_s)  # (job, code)
        self.node = IncidentBook(self.config.node_window_s)  # (node, code)
        self.switch = IncidentBook(self.config.gap_s)  # (node, pci, code)
        self.rma = IncidentBook(self.config.rma_window_s)  # (node, pci)
        self.memory = IncidentBook(self.config.gap_s)  # (node, pci, code): hbm_ecc's
        # (node, pci) -> clock -> its fatal incidents' times; each clock's apart: their
        # times cannot be compared
        self.fatal: dict[tuple[str, str], dict[str, list[float]]] = {}
        self.workload: dict[tuple[str, str], tuple[str | None, str | None]] = {}
        self.identity: dict[tuple[str, str], dict[str, Any]] = {}
        # (node, pci) -> the flush clock at its last event here; None: since the last flush
        self.seen: dict[tuple[str, str], float | None] = {}

    # -- reading ---------------------------------------------------------------------

    def process(self, batch: EventBatch) -> list[Finding]:
        self._learn_workloads(batch)
        role = _ROLE[batch["kind"]]
        if not role.any():  # most batches: the samples that carry pod labels, no Xid
            return []
        out: list[Finding] = []
        xid_rows = np.flatnonzero(role == _XID)
        if xid_rows.size:
            out += self._xids(batch, xid_rows)
        sxid_rows = np.flatnonzero(role == _SXID)
        if sxid_rows.size:
            out += self._sxids(batch, sxid_rows)
        return out

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        for book in (self.gpu, self.app, self.node, self.switch, self.memory):
            book.close(now)
        # an RMA incident is touched from its window's oldest fatal Xid, a window back
        self.rma.close(now, self.config.rma_window_s)
        for gpu in expire(self.seen, now, self.config.rma_window_s):
            self.fatal.pop(gpu, None)
            self.workload.pop(gpu, None)
            self.identity.pop(gpu, None)
        return []

    def size(self) -> int:
        return sum(len(book.open) for book in self._books()) + len(self.seen)

    def restore(self, saved: dict[str, Any]) -> None:
        super().restore(saved)
        for gpu, times in self.fatal.items():
            if isinstance(times, list):  # saved before the clocks were kept apart
                self.fatal[gpu] = {"wall": times}
        for gpu in (*self.fatal, *self.workload, *self.identity):
            self.seen.setdefault(gpu, None)  # saved before GPUs had stamps: from now on

    def _books(self) -> tuple[IncidentBook, ...]:
        return (self.gpu, self.app, self.node, self.switch, self.rma, self.memory)

    def _learn_workloads(self, batch: EventBatch) -> None:
        labelled = batch["pod"] >= 0
        labelled &= batch["pci"] >= 0
        rows = np.flatnonzero(labelled)
        if rows.size == 0:
            return
        # each distinct (node, GPU, pod, namespace) once, in the order of their ids: of
        # two pods of one GPU in a batch, the later in that order is the GPU's
        columns = [batch[name][rows] for name in ("node", "pci", "pod", "namespace")]
        order, starts = _groups(columns)
        firsts = order[starts[:-1]]
        for node, pci, pod, namespace in zip(
            *(column[firsts].tolist() for column in columns), strict=True
        ):
            gpu = (batch.strings[node], batch.strings[pci])
            self.workload[gpu] = (batch.string(pod), batch.string(namespace))
            self.seen[gpu] = None

    def _job(self, node: str, pci: str | None, process: str | None) -> tuple[str, dict[str, Any]]:
        """Who ran on the GPU: the job from pod labels, else the process on this node."""
        pod, namespace = self.workload.get((node, pci or ""), (None, None))
        if pod:
            job = _POD_ORDINAL.sub("", pod)
            name = f"{namespace}/{job}" if namespace else job
            return f"job {name}", {"job": name, "namespace": namespace}
        if process:
            return f"process {process} on {node}", {"node": node}
        return f"the jobs on {node}", {"node": node}

    def _xids(self, batch: EventBatch, rows: np.ndarray) -> list[Finding]:
        # gpu_lost has no code of its own: it is Xid 79's record.
        codes = np.where(batch["kind"][rows] == KIND_ID["gpu_lost"], 79, batch["code"][rows])
        columns = [batch["node"][rows], batch["pci"][rows], codes]
        ts = batch["ts"][rows]
        # runs of one GPU and code, split where its Xids are more than gap_s apart
        order, starts = _groups(columns, ts, self.config.gap_s)
        rows = rows[order]
        firsts = order[starts[:-1]]
        # each run's times: at once for many runs, else one run at a time in _xid_run
        whens = spans(batch, rows, starts) if firsts.size >= SPANS_AT_ONCE else None
        runs: list[tuple[int, str, str | None, int, np.ndarray, Span | None]] = []
        for i, (start, end, node_id, pci_id, code) in enumerate(
            zip(
                starts[:-1],
                starts[1:],
                *(column[firsts].tolist() for column in columns),
                strict=True,
            )
        ):
            part = rows[start:end]
            when = None if whens is None else whens[i]
            runs.append(
                (part.item(0), batch.strings[node_id], batch.string(pci_id), code, part, when)
            )
        # In time order (rows are), so an Xid 45 meets the incident it follows. Each
        # finding in the order first changed; a job's, by its id, made at the end.
        changed: dict[str, Finding | None] = {}
        jobs = _JobsChanged()
        for _, node, pci, code, part, when in sorted(runs, key=lambda run: run[0]):
            for made in self._xid_run(batch, part, node, pci, code, when, jobs):
                if isinstance(made, str):
                    changed[made] = None
                else:
                    changed[made.id] = made
        for incident, heads, tails in jobs.pieces.values():
            incident.add_lines(batch, heads, tails)
        return [
            self._application_finding(*jobs.last[id_]) if made is None else made
            for id_, made in changed.items()
        ]

    def _xid_run(
        self,
        batch: EventBatch,
        part: np.ndarray,
        node: str,
        pci: str | None,
        code: int,
        when: Span | None,
        jobs: _JobsChanged,
    ) -> Sequence[Finding | str]:
        """One run of one GPU's Xids of one code; ``when``: its times, if known. A job's
        finding (an application Xid's) is its id: ``jobs`` makes it at the batch's end."""
        first, last = part.item(0), part.item(-1)
        if when is None:
            # one record's time is ``at`` it: the same Span as ``span``, without its masks
            when = at(batch, first) if part.size == 1 else span(batch, part)
        identity = {
            "node": node,
            "pci": pci,
            "gpu": batch.value("gpu", first),
            "uuid": batch.value("uuid", first),
            "serial": batch.value("serial", first),
        }
        gpu = (node, pci or "")
        self.seen[gpu] = None
        known = self.identity.setdefault(gpu, {})
        known.update({k: v for k, v in identity.items() if v is not None})
        identity.update(known)
        entry = xid(code)
        detail = batch.value("detail", last) or ""
        if code == 45 and (m := _CAUSED_BY.search(detail)):
            cause_key = (node, pci, int(m[1]))
            cause_here = int(m[1]) not in REPORTED_ELSEWHERE
            if cause_here and self.gpu.current(cause_key, when) is not None:  # still open
                incident, _ = self.gpu.touch(
                    cause_key,
                    when,
                    part.size,
                    describe(batch, first),
                    describe(batch, last),
                )
                return [self._gpu_finding(incident, xid(int(m[1])), identity, None)]
        if code in MEMORY_XIDS:
            # hbm_ecc reports these; they still count toward this GPU's RMA escalation.
            incident, new = self.memory.touch(
                (node, pci, code), when, part.size, describe(batch, first)
            )
            if new and entry.fatal and pci is not None:
                return self._count_fatal(node, pci, when, identity, incident.evidence())
            return []
        if entry.cause == "application":
            return [self._application(batch, part, identity, code, entry, when, jobs)]
        incident, new = self.gpu.touch(
            (node, pci, code),
            when,
            part.size,
            describe(batch, first),
            describe(batch, last),
        )
        recovery = _RECOVERY.search(detail) if code == 154 else None
        out: list[Finding | str] = (
            []
            if code in REPORTED_ELSEWHERE
            else [self._gpu_finding(incident, entry, identity, recovery[1] if recovery else None)]
        )
        if new and entry.fatal and pci is not None:
            out += self._count_fatal(node, pci, when, identity, incident.evidence())
        if new and entry.cause != "application":
            out += self._node_wide(node, pci, code, entry, when, describe(batch, first))
        return out

    # -- findings --------------------------------------------------------------------

    def _gpu_finding(
        self, incident: Any, entry: XidEntry, identity: dict[str, Any], recovery: str | None
    ) -> Finding:
        severity, action = entry.severity, entry.action
        what = f"Xid {entry.code} ({entry.name})" if entry.known else entry.name + " (unknown)"
        summary = f"{what} on GPU {identity.get('pci') or '?'} of {identity['node']}"
        if recovery is not None:
            found = _RECOVERY_ACTIONS.get(recovery.strip().lower())
            if found is not None:
                severity, action, advice = found
                summary += f": recovery action {recovery}, {advice}"
        else:
            summary += f": {entry.cause} cause, {entry.action} advised"
        if incident.count > 1:
            summary += f" ({incident.count:,} records)"
        return make_finding(
            self.name, incident, severity, action, summary, {**identity, "code": entry.code}
        )

    def _application(
        self,
        batch: EventBatch,
        part: np.ndarray,
        identity: dict[str, Any],
        code: int,
        entry: XidEntry,
        when: Span,
        jobs: _JobsChanged,
    ) -> str:
        """Fold one run into its job's incident; return that incident's finding id."""
        node, pci = identity["node"], identity["pci"]
        first, last = part.item(0), part.item(-1)
        job, names = self._job(node, pci, batch.value("process", first))
        incident, _ = self.app.touch((job, code), when, part.size)
        incident.attrs.setdefault("gpus", set()).add((node, pci))
        return jobs.add(self.name, incident, first, last, (incident, identity, code, entry, names))

    def _application_finding(
        self,
        incident: Incident,
        identity: dict[str, Any],
        code: int,
        entry: XidEntry,
        names: dict[str, Any],
    ) -> Finding:
        """A job's application-Xid finding, as its latest run (``identity``) tells it."""
        node, pci = identity["node"], identity["pci"]
        gpus = incident.attrs["gpus"]
        nodes = {n for n, _ in gpus}
        if len(gpus) == 1:
            entity = {**identity, **{k: v for k, v in names.items() if k != "node"}}
            summary = (
                f"Xid {code} ({entry.name}) on GPU {pci or '?'} of {node}: "
                f"an application fault, the GPU is healthy"
            )
        else:
            entity = {k: v for k, v in names.items() if k != "node"}
            if len(nodes) == 1:
                entity["node"] = node
            else:  # the job's nodes: what links its NCCL errors to it (``incidents.py``)
                entity["nodes"] = tuple(sorted(nodes))
            where = f"{len(gpus)} GPUs" + (f" on {len(nodes)} nodes" if len(nodes) > 1 else "")
            job = incident.key[0]
            summary = (
                f"Xid {code} ({entry.name}) on {where} of {job} at once: "
                f"the application's bug, not hardware"
            )
        return make_finding(
            self.name,
            incident,
            Severity.WARNING,
            Action.FIX_APPLICATION,
            summary,
            {**entity, "code": code},
        )

    def _node_wide(
        self,
        node: str,
        pci: str | None,
        code: int,
        entry: XidEntry,
        when: Span,
        evidence: str,
    ) -> list[Finding]:
        incident, _ = self.node.touch((node, code), when, 1, evidence)
        gpus = incident.attrs.setdefault("gpus", set())
        gpus.add(pci)
        if len(gpus) < self.config.node_min_gpus:
            return []
        action = Action.INSPECT_FABRIC if entry.cause == "nvlink" else Action.DRAIN_NODE
        summary = (
            f"Xid {code} ({entry.name}) on {len(gpus)} GPUs of {node} within "
            f"{self.config.node_window_s:.0f} s: the node or its fabric, not one GPU"
        )
        severity = max(entry.severity, Severity.ERROR)
        return [
            make_finding(
                self.name, incident, severity, action, summary, {"node": node, "code": code}
            )
        ]

    def _count_fatal(
        self,
        node: str,
        pci: str,
        when: Span,
        identity: dict[str, Any],
        evidence: tuple[str, ...],
    ) -> list[Finding]:
        ts, clock = when.first_ts, when.clock or "none"
        times = self.fatal.setdefault((node, pci), {}).setdefault(clock, [])
        times.append(ts if ts is not None else 0.0)
        window = [t for t in times if ts is None or ts - t <= self.config.rma_window_s]
        times[:] = window
        if len(window) < self.config.rma_fatal_count:
            return []
        incident, _ = self.rma.touch((node, pci), Span(window[0], ts, when.clock), 0)
        incident.count = len(window)
        incident.head[:] = list(evidence[:3])
        summary = (
            f"GPU {pci} of {node} had {len(window)} fatal Xid incidents within "
            f"{self.config.rma_window_s / 3600:.0f} h: replace it"
        )
        return [
            make_finding(self.name, incident, Severity.CRITICAL, Action.RMA_GPU, summary, identity)
        ]

    def _sxids(self, batch: EventBatch, rows: np.ndarray) -> list[Finding]:
        columns = [batch["node"][rows], batch["pci"][rows], batch["code"][rows]]
        # runs of one switch and code, in time order, cut where gap_s apart
        order, starts = _groups(columns, batch["ts"][rows], self.config.gap_s)
        rows = rows[order]
        firsts = order[starts[:-1]]
        keys = list(zip(*(column[firsts].tolist() for column in columns), strict=True))
        # a switch and code with a fatal record in the batch: each of its runs is fatal
        fatal: dict[tuple[int, int, int], bool] = {}
        severe = np.logical_or.reduceat(batch["severity"][rows] == 3, starts[:-1]).tolist()
        for key, severe_run in zip(keys, severe, strict=True):
            fatal[key] = fatal.get(key, False) or severe_run
        whens = spans(batch, rows, starts) if len(keys) >= SPANS_AT_ONCE else None
        # each incident changed, in the order first changed: one finding each
        changed: dict[int, tuple[Incident, str, str | None, int]] = {}
        for i, key in enumerate(keys):
            node_id, pci_id, code = key
            part = rows[starts[i] : starts[i + 1]]
            node, pci = batch.strings[node_id], batch.string(pci_id)
            incident, _ = self.switch.touch(
                (node, pci, code),
                span(batch, part) if whens is None else whens[i],
                part.size,
                describe(batch, part.item(0)),
                describe(batch, part.item(-1)),
            )
            incident.attrs["fatal"] = incident.attrs.get("fatal", False) or fatal[key]
            changed.setdefault(id(incident), (incident, node, pci, code))
        return [self._switch_finding(*found) for found in changed.values()]

    def _switch_finding(self, incident: Incident, node: str, pci: str | None, code: int) -> Finding:
        fatal = incident.attrs["fatal"]
        summary = (
            f"SXid {code} on NVSwitch {pci} of {node}{' (fatal)' if fatal else ''}: "
            f"inspect the NVLink fabric ({incident.count:,} records)"
        )
        return make_finding(
            self.name,
            incident,
            Severity.ERROR if fatal else Severity.WARNING,
            Action.INSPECT_FABRIC,
            summary,
            {"node": node, "pci": pci, "code": code},
        )


def _groups(
    columns: list[np.ndarray], ts: np.ndarray | None = None, gap_s: float = 0.0
) -> tuple[np.ndarray, list[int]]:
    """The order that sorts rows by ``columns`` (the first most significant, as signed
    ids), then by ``ts`` (stable); and where each group of equal columns starts in it,
    with the end last. With ``ts``, a group is also split where its times are more
    than ``gap_s`` apart.

    One sort over the batch, where ``np.unique(..., axis=1)`` and a mask per group
    cost a few dozen allocations each.
    """
    keys = [*columns[::-1]] if ts is None else [ts, *columns[::-1]]
    order = np.lexsort(keys)
    if ts is None:
        cut = np.zeros(order.size - 1, dtype=bool)
    else:
        ordered = ts[order]
        cut = ordered[1:] - ordered[:-1] > gap_s
    for column in columns:
        ordered = column[order]
        cut |= ordered[1:] != ordered[:-1]
    return order, [0, *(np.flatnonzero(cut) + 1).tolist(), int(order.size)]

"""pod_evicted: pods pushed off a node, and whether the node is the reason.

Pattern
    Per node, evictions within ``window_s`` of each other are one incident:

    * ``min_evictions`` or more -> a node-level finding naming the reasons (memory,
      disk or PID pressure, taint manager, node controller, a node gone NotReady).
      A node the control plane gave up on (NotReady, node-controller or taint-manager
      evictions) is ``drain_node``; pressure alone is ``investigate``;
    * fewer -> info;
    * evictions within ``after_fault_s`` after a GPU fault on the same node (an Xid,
      SXid or fallen-off-the-bus record; the node's latest one at or before the first
      eviction, so a fault that repeats later in the same batch hides nothing) are that
      fault's impact: the finding says so, at info, and names the fault; it is not
      reported as a cause of its own.

Lifetime
    A node's last GPU fault is forgotten once it has not changed for ``after_fault_s``
    (no eviction after that is its impact); an incident once it has not changed for
    ``window_s``. Time is the ``flush`` clock (see ``base``: "Forgetting").

Evidence
    The eviction and NotReady events (``file:line``, pod, reason, detail).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np

from fleetwatch.detectors.base import (
    Incident,
    IncidentBook,
    describe,
    expire_stamped,
    kind_table,
    last_of_each,
    make_finding,
    pack,
    span,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import CLOCK_ID, KIND_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity

_IS_FAULT: Final = kind_table("xid", "sxid", "gpu_lost")
_IS_EVICTION: Final = kind_table("pod_evicted", "node_not_ready")
_XID: Final = KIND_ID["xid"]
_SXID: Final = KIND_ID["sxid"]
_POD_EVICTED: Final = np.int8(KIND_ID["pod_evicted"])
_WALL: Final = np.int8(CLOCK_ID["wall"])
_CONTROL_PLANE: Final = frozenset(
    {"TaintManagerEviction", "NodeControllerEviction", "NodeNotReady"}
)


@dataclass(frozen=True)
class Config:
    """Thresholds of pod_evicted."""

    window_s: float = 600.0
    """Evictions from one node closer than this are one incident."""
    min_evictions: int = 3
    """This many evictions in one incident make a node-level finding."""
    after_fault_s: float = 900.0
    """Evictions this soon after a GPU fault on the node are its impact."""


class PodEvicted(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "pod_evicted"
    description: ClassVar[str] = (
        "eviction storms on a node, and evictions that are a GPU fault's impact"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset(
        {"pod_evicted", "node_not_ready", "xid", "sxid", "gpu_lost"}
    )

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.window_s)
        # node -> (time, what, flush clock then) of its last fault; the clock is None until
        # the next flush
        self.faults: dict[str, tuple[float, str, float | None]] = {}
        # while a batch is read: what its faults replaced in ``faults``, by node
        self._before: dict[str, tuple[float, str, float | None] | None] = {}

    def process(self, batch: EventBatch) -> list[Finding]:
        self._before.clear()
        self._note_faults(batch)
        rows = np.flatnonzero(_IS_EVICTION[batch["kind"]])
        if rows.size == 0:
            return []
        # each node's evictions in read order, cut where window_s passes without one
        rows = rows[np.argsort(batch["node"][rows], kind="stable")]
        nodes, ts = batch["node"][rows], batch["ts"][rows]
        cuts = (
            np.flatnonzero((nodes[1:] != nodes[:-1]) | (ts[1:] - ts[:-1] > self.config.window_s))
            + 1
        ).tolist()
        starts, ends = [0, *cuts], [*cuts, rows.size]
        return [
            self._evictions(batch, batch.strings[node_id], rows[start:end])
            for node_id, start, end in zip(nodes[starts].tolist(), starts, ends, strict=True)
        ]

    def _note_faults(self, batch: EventBatch) -> None:
        """Remember each node's latest GPU fault: evictions soon after are its impact."""
        ts = batch["ts"]
        # a boot-clock fault (plain dmesg) cannot be placed next to an eviction's wall time
        faults = np.flatnonzero(
            _IS_FAULT[batch["kind"]] & (batch["clock"] == _WALL) & ~np.isnan(ts)
        )
        if faults.size == 0:
            return
        # only each node's latest fault matters
        latest = faults[last_of_each(batch["node"][faults])]
        for node_id, kind, code, when in zip(
            batch["node"][latest].tolist(),
            batch["kind"][latest].tolist(),
            batch["code"][latest].tolist(),
            ts[latest].tolist(),
            strict=True,
        ):
            node = batch.strings[node_id]
            self._before[node] = self.faults.get(node)
            self.faults[node] = (when, _fault_name(kind, code), None)

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        self.book.close(now)
        expire_stamped(self.faults, 3, now, self.config.after_fault_s)
        return []

    def size(self) -> int:
        return len(self.book.open) + len(self.faults)

    def _evictions(self, batch: EventBatch, node: str, members: np.ndarray) -> Finding:
        first, last = members.item(0), members.item(-1)
        when = span(batch, members)
        incident, _ = self.book.touch(
            (node,),
            when,
            int(members.size),
            describe(batch, first),
            describe(batch, last),
        )
        reasons: dict[str, int] = incident.attrs.setdefault("reasons", {})
        labels = pack(batch["reason"][members], batch["detail"][members])
        _, first_of, counts = np.unique(labels, return_index=True, return_counts=True)
        for row, n in zip(members[first_of].tolist(), counts.tolist(), strict=True):
            reason = batch.value("reason", row) or "Evicted"
            detail = batch.value("detail", row)
            label = f"{reason} ({detail})" if detail else reason
            reasons[label] = reasons.get(label, 0) + n
        evicted = int(np.count_nonzero(batch["kind"][members] == _POD_EVICTED))
        incident.attrs["evictions"] = incident.attrs.get("evictions", 0) + evicted
        first = when.first_ts
        if when.clock == "wall" and first is not None:
            fault = self._fault_before(batch, node, first)
            if fault is not None and 0 <= first - fault[0] <= self.config.after_fault_s:
                incident.attrs["after_fault"] = fault[1]
        return self._finding(node, incident)

    def _fault_before(
        self, batch: EventBatch, node: str, moment: float
    ) -> tuple[float, str, float | None] | None:
        """The node's latest GPU fault at or before ``moment``. Usually the latest one
        known; when that is later (it repeated further on in this batch), the latest of
        this batch before ``moment``, else the one known before the batch."""
        fault = self.faults.get(node)
        if fault is None or fault[0] <= moment:
            return fault
        ts = batch["ts"]
        rows = np.flatnonzero(
            _IS_FAULT[batch["kind"]]
            & (batch["clock"] == _WALL)
            & (ts <= moment)
            & (batch["node"] == batch.strings.index(node))
        )
        if rows.size == 0:
            return self._before.get(node)
        row = rows.item(int(np.argmax(ts[rows])))
        return (ts.item(row), _fault_name(batch["kind"].item(row), batch["code"].item(row)), None)

    def _finding(self, node: str, incident: Incident) -> Finding:
        evictions = incident.attrs.get("evictions", 0)
        reasons: dict[str, int] = incident.attrs["reasons"]
        named = ", ".join(f"{r} x{n}" if n > 1 else r for r, n in reasons.items())
        if "after_fault" in incident.attrs:
            fault = incident.attrs["after_fault"]
            summary = (
                f"{evictions} pod(s) evicted from {node} right after {fault} on it: "
                f"impact of that GPU fault, not a cause ({named})"
            )
            return make_finding(
                self.name, incident, Severity.INFO, Action.NONE, summary, {"node": node}
            )
        if evictions >= self.config.min_evictions or any(
            r.split(" ")[0] == "NodeNotReady" for r in reasons
        ):
            gave_up = any(r.split(" ")[0] in _CONTROL_PLANE for r in reasons)
            action = Action.DRAIN_NODE if gave_up else Action.INVESTIGATE
            summary = (
                f"{evictions} pod(s) evicted from {node} within "
                f"{self.config.window_s / 60:.0f} min: {named}"
            )
            return make_finding(
                self.name, incident, Severity.WARNING, action, summary, {"node": node}
            )
        summary = f"{evictions} pod(s) evicted from {node}: {named}"
        return make_finding(
            self.name, incident, Severity.INFO, Action.NONE, summary, {"node": node}
        )


def _fault_name(kind: int, code: int) -> str:
    """How a finding names a GPU fault of kind id ``kind`` and Xid/SXid ``code``."""
    shown = code if code >= 0 else None
    if kind == _XID:
        return f"Xid {shown}"
    if kind == _SXID:
        return f"SXid {shown}"
    return "Xid 79 (fallen off the bus)"

"""gsp_fault: a GPU whose firmware (GSP) or resource manager stopped answering.

Pattern
    A GSP or RM fault that carries no Xid (``gsp_timeout``, ``rm_error``: heartbeat
    and RPC timeouts, the ``GSP Timeout`` banner, sysmembar and other memory-subsystem
    errors, "reset required"; the phrases are ``catalog/rm_errors.toml``) and the GSP
    Xids (119 RPC timeout, 120 GSP error: ``owner = "gsp_fault"`` in
    ``catalog/xid.toml``) of the same GPU are one incident while they keep coming
    within ``gap_s``:

    * critical, ``reset_gpu`` (drain its work first): the GPU is dead to every job
      until it is reset;
    * ``reboot_node`` when the GPU has had ``reboot_incidents`` such incidents within
      ``window_s``, or when a new one follows a logged ``gpu_reset`` of that GPU: its
      firmware died again after the reset. (No reader emits ``gpu_reset`` from a kernel
      line yet: no real "GPU reset failed" line was found.)

    The GPU is the driver's ``GPU<n>`` where known (an Xid 119's text names it:
    "response from GPU6 GSP"), else its PCI address; an incident opened under one is
    found under the other once an event has shown both. A record that names no GPU
    joins the node's one open GSP incident, else is its own. The RMA escalation of the
    fatal Xids 119 and 120 stays ``xid_correlation``'s, which counts every Xid.

Defaults
    ``gap_s`` 180, ``reboot_incidents`` 3 within ``window_s`` 24 h.

Lifetime
    A GPU's fault history, reset time and index are forgotten once it has had no
    record for ``window_s``; an incident once it has not changed for ``gap_s``. Time
    is the ``flush`` clock (see ``base``: "Forgetting").

Evidence
    The fault records and the Xids (``file:line``, kind, text), first and last few.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar, Final

import numpy as np

from fleetwatch.catalog import XidEntry, xid, xids_owned_by
from fleetwatch.detectors.base import (
    Incident,
    IncidentBook,
    at,
    expire,
    make_finding,
    span,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import KIND_ID, KINDS, EventBatch
from fleetwatch.findings import Action, Finding, Severity

GSP_XIDS: Final = xids_owned_by("gsp_fault")  # catalog/xid.toml: owner
_RM_INDEX: Final = re.compile(r"from GPU(\d+) GSP")  # Xid 119: "response from GPU6 GSP!"
_WHAT_KEPT: Final = 8  # distinct fault names kept per incident for its summary


@dataclass(frozen=True)
class Config:
    """Thresholds of gsp_fault."""

    gap_s: float = 180.0
    """Faults of one GPU closer than this are one incident."""
    reboot_incidents: int = 3
    """This many incidents on one GPU within ``window_s``: a reset is not enough."""
    window_s: float = 86400.0
    """The window for counting a GPU's incidents (and how long its history is kept)."""


# the kinds read whatever their code; the extra last entry answers kind -1
_ALWAYS: Final = np.isin(
    np.arange(len(KINDS) + 1), [KIND_ID[k] for k in ("gsp_timeout", "rm_error", "gpu_reset")]
)
# a run of identical records (a flood of one line) is touched once: these say identical
_RECORD_FIELDS: Final = ("kind", "node", "pci", "gpu", "code", "detail")


def _rows_of_mine(batch: EventBatch) -> np.ndarray:
    """The rows this detector reads: its kinds, and of the Xids only the GSP ones.

    A lookup per row and in-place masks: most batches hold none of these rows, and
    ``np.isin`` over every code cost more than the rest of such a batch.
    """
    kind = batch["kind"]
    wanted = _ALWAYS[kind]
    xids = kind == KIND_ID["xid"]
    if xids.any():
        code = batch["code"]
        gsp = np.zeros(len(batch), dtype=bool)
        for gsp_xid in GSP_XIDS:
            gsp |= code == gsp_xid
        xids &= gsp
        wanted |= xids
    return np.flatnonzero(wanted)


def _runs(batch: EventBatch, rows: np.ndarray, gap_s: float) -> list[int]:
    """Where each run of identical records starts in ``rows`` (time order), and the end.

    A record more than ``gap_s`` after the one before starts a run: a later incident
    of the same record.
    """
    ts = batch["ts"][rows]
    cut = ts[1:] - ts[:-1] > gap_s
    differs = np.empty_like(cut)  # one buffer for every column's comparison
    for name in _RECORD_FIELDS:
        column = batch[name][rows]
        cut |= np.not_equal(column[1:], column[:-1], out=differs)
    return [0, *(np.flatnonzero(cut) + 1).tolist(), int(rows.size)]


class GspFault(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "gsp_fault"
    description: ClassVar[str] = (
        "GSP firmware and RM faults without an Xid, with Xid 119/120: reset, then reboot"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({"gsp_timeout", "rm_error", "gpu_reset", "xid"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.gap_s)  # (node, "GPU<n>" or pci)
        self.opened: dict[tuple[str, str], list[float]] = {}  # -> incident times
        self.reset: dict[tuple[str, str], float] = {}  # -> last gpu_reset time
        self.index: dict[tuple[str, str], int] = {}  # (node, pci) -> driver's GPU<n>
        # (node, slot or pci) -> the flush clock at its last record; None: since then
        self.seen: dict[tuple[str, str], float | None] = {}

    def process(self, batch: EventBatch) -> list[Finding]:
        rows = _rows_of_mine(batch)
        if rows.size == 0:
            return []
        rows = rows[np.argsort(batch["ts"][rows], kind="stable")]
        bounds = _runs(batch, rows, self.config.gap_s)
        # each incident the batch changed, in the order first changed, with its runs'
        # first and last rows: its lines are added (and described) once, at the end,
        # and it is one finding however many runs it took in
        changed: dict[int, tuple[Incident, list[int], list[int]]] = {}
        for start, end in pairwise(bounds):
            part = rows[start:end]
            incident = self._record(batch, part)
            if incident is not None:
                if (known := changed.get(id(incident))) is None:
                    known = changed[id(incident)] = (incident, [], [])
                known[1].append(part.item(0))
                known[2].append(part.item(-1))
        for incident, firsts, lasts in changed.values():
            incident.add_lines(batch, firsts, lasts)
        return [self._finding(incident) for incident, _, _ in changed.values()]

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        self.book.close(now)
        for gpu in expire(self.seen, now, self.config.window_s):
            self.opened.pop(gpu, None)
            self.reset.pop(gpu, None)
            self.index.pop(gpu, None)
        return []

    def size(self) -> int:
        return len(self.book.open) + len(self.seen)

    def _record(self, batch: EventBatch, part: np.ndarray) -> Incident | None:
        """A run of records of one kind, GPU and code, in time order: the incident it
        changed (None: a reset, noted)."""
        row = part.item(0)
        node = batch.strings[batch["node"].item(row)]
        pci = batch.value("pci", row)
        index = batch.value("gpu", row)
        kind = batch.value("kind", row)
        if kind == "gpu_reset":
            ts = batch.value("ts", part.item(-1))
            slot = self._slot(node, pci, index)
            self.reset[node, slot] = ts if ts is not None else 0.0
            self.seen[node, slot] = None
            return None
        entry = None
        if kind == "xid":
            entry = xid(batch["code"].item(row))
            found = _RM_INDEX.search(batch.value("detail", row) or "")
            if found and len(found[1]) < 10:
                index = int(found[1])
        identity = {
            "pci": pci,
            "gpu": index,
            "uuid": batch.value("uuid", row),
            "serial": batch.value("serial", row),
        }
        return self._touch(batch, part, node, pci, index, identity, entry)

    def _slot(self, node: str, pci: str | None, index: int | None) -> str:
        """The GPU a record is about: ``GPU<n>`` where known, else its PCI address; an
        open incident under either name keeps its name."""
        if index is not None and pci is not None:
            self.index[node, pci] = index
            self.seen[node, pci] = None
        elif index is None and pci is not None:
            index = self.index.get((node, pci))
        names = [f"GPU{index}"] if index is not None else []
        if pci is not None:
            names.append(pci)
        for name in names:
            if (node, name) in self.book.open:
                return name
        if names:
            return names[0]
        # a record that names no GPU is the node's one open incident, if it has one
        open_here = [slot for (where, slot) in self.book.open if where == node]
        return open_here[0] if len(open_here) == 1 else "?"

    def _touch(
        self,
        batch: EventBatch,
        part: np.ndarray,
        node: str,
        pci: str | None,
        index: int | None,
        identity: dict[str, Any],
        entry: XidEntry | None,
    ) -> Incident:
        row = part.item(0)
        # one record's time is ``at`` it: the same Span as ``span``, without its masks
        when = at(batch, row) if part.size == 1 else span(batch, part)
        slot = self._slot(node, pci, index)
        incident, new = self.book.touch((node, slot), when, int(part.size))  # lines: process
        attrs = incident.attrs
        known = attrs.setdefault("identity", {})
        known.update({key: value for key, value in identity.items() if value is not None})
        what = attrs.setdefault("what", [])
        name = f"Xid {entry.code}" if entry is not None else batch.value("detail", row)
        if name and name not in what and len(what) < _WHAT_KEPT:
            what.append(name)
        if entry is not None:
            attrs["code"] = entry.code
        gpu = (node, slot)
        self.seen[gpu] = None
        if new:
            opened = self.opened.setdefault(gpu, [])
            reset = self.reset.get(gpu)
            window = self.config.window_s
            # the kernel log's own times, on one clock per node (see "Two clocks")
            since = when.first_ts if when.first_ts is not None else 0.0
            opened[:] = [t for t in opened if since - t <= window] + [since]
            if reset is not None and opened[:-1] and reset >= opened[-2]:
                attrs["escalated"] = "it came back after the GPU was reset"
            elif len(opened) >= self.config.reboot_incidents:
                attrs["escalated"] = (
                    f"{len(opened)} GSP/RM fault incidents within {window / 3600:.0f} h"
                )
        return incident

    def _finding(self, incident: Incident) -> Finding:
        node = incident.key[0]
        attrs = incident.attrs
        entity: dict[str, Any] = {**attrs.get("identity", {}), "node": node}
        if entity.get("pci"):
            where = f"GPU {entity['pci']}"
        elif "gpu" in entity:
            where = f"GPU index {entity['gpu']}"
        else:
            where = "a GPU (the log names none)"
        what = ", ".join(attrs.get("what", [])) or "GSP/RM fault"
        escalated = attrs.get("escalated")
        if escalated:
            action = Action.REBOOT_NODE
            advice = f"{escalated}: a reset is not enough, reboot the node"
        else:
            action = Action.RESET_GPU
            advice = "the GPU is unusable until it is reset (drain its work first)"
        summary = f"GSP/RM fault on {where} of {node} ({what}): {advice}"
        if incident.count > 1:
            summary += f" ({incident.count:,} records)"
        if "code" in attrs:
            entity["code"] = attrs["code"]
        return make_finding(self.name, incident, Severity.CRITICAL, action, summary, entity)

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
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from fleetwatch.catalog import xid, xids_owned_by
from fleetwatch.detectors.base import (
    Incident,
    IncidentBook,
    describe,
    expire_stamped,
    make_finding,
    shifted,
    span,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import KIND_ID, KINDS, SOURCES, EventBatch
from fleetwatch.findings import Action, Finding, Severity, strongest

NVLINK_XIDS: Final = xids_owned_by("nvlink")  # catalog/xid.toml: owner
_COUNTERS: Final = ("nvlink_crc", "nvlink_replay", "nvlink_recovery")
_COUNTER_IDS: Final = np.asarray([KIND_ID[k] for k in _COUNTERS], dtype=np.int8)
_NOUN: Final = {
    "nvlink_crc": "CRC errors",
    "nvlink_replay": "replays",
    "nvlink_recovery": "recoveries",
}
_XID_LINK: Final = re.compile(r"\blink (\d{1,3})\b", re.IGNORECASE)
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
    node: str
    gpu: str
    severity: Severity
    action: Action
    topic: str  # what it is about: one line per link and counter, or the Xid
    what: str


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
        self._due: list[tuple[int, _Evidence]] = []  # this batch's evidence, not yet folded

    def process(self, batch: EventBatch) -> list[Finding]:
        kind = batch["kind"]
        counters = np.isin(kind, _COUNTER_IDS)
        xids = (kind == KIND_ID["xid"]) & np.isin(batch["code"], list(NVLINK_XIDS))
        named = (batch["pci"] >= 0) & ((batch["uuid"] >= 0) | (batch["gpu"] >= 0))
        if (learn := np.flatnonzero((counters | xids) & named)).size:
            self._learn(batch, learn)
        rows = np.flatnonzero(
            counters & ((batch["pci"] >= 0) | (batch["uuid"] >= 0) | (batch["gpu"] >= 0))
        )
        if rows.size:
            self._counters(batch, rows)
        if (xid_rows := np.flatnonzero(xids)).size:
            self._xids(batch, xid_rows)
        if not self._due:
            return []
        # Evidence joins its incident in the order it was read, so the incident opens
        # at its first evidence whichever way the events were cut into batches.
        changed: dict[str, Finding] = {}
        for _, evidence in sorted(self._due, key=lambda due: due[0]):
            finding = self._fold(batch, evidence)
            changed[finding.id] = finding
        self._due.clear()
        return list(changed.values())

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

    def _learn(self, batch: EventBatch, rows: np.ndarray) -> None:
        """Note the PCI address of each UUID and index these rows pair with one."""
        keys = np.unique(
            np.stack(
                [batch["node"][rows], batch["pci"][rows], batch["uuid"][rows], batch["gpu"][rows]]
            ),
            axis=1,
        )
        for node_id, pci_id, uuid_id, index in keys.T.tolist():
            node, pci = batch.strings[node_id], batch.strings[pci_id]
            if uuid_id >= 0:
                self.alias[node, batch.strings[uuid_id]] = (pci, None)
            if index >= 0:
                self.alias[node, f"GPU {index}"] = (pci, None)

    def _gpu(self, node: str, pci: str | None, uuid: str | None, index: int | None) -> str:
        """The GPU's name in this detector: its PCI address where known."""
        if pci:
            return pci
        for name in (uuid, None if index is None else f"GPU {index}"):
            if name is not None and (found := self.alias.get((node, name))) is not None:
                return found[0]
        return uuid or f"GPU {index}"

    # -- evidence ----------------------------------------------------------------------

    def _counters(self, batch: EventBatch, rows: np.ndarray) -> None:
        columns = ("node", "pci", "uuid", "gpu", "kind", "link", "source", "detail")
        keys, inverse = np.unique(
            np.stack([batch[c][rows].astype(np.int64) for c in columns]),
            axis=1,
            return_inverse=True,
        )
        inverse = inverse.ravel()
        strings = batch.strings
        for g, (node_id, pci_id, uuid_id, index, k, link, source, detail) in enumerate(
            keys.T.tolist()
        ):
            members = rows[inverse == g]
            members = members[np.argsort(batch["ts"][members], kind="stable")]
            node = strings[node_id]
            gpu = self._gpu(
                node,
                batch.string(pci_id),
                batch.string(uuid_id),
                None if index < 0 else int(index),
            )
            key = (
                node,
                gpu,
                KINDS[k],
                int(link),
                SOURCES[source],
                batch.string(detail) or "",
            )
            self._series(batch, key, members)

    def _series(
        self, batch: EventBatch, key: tuple[str, str, str, int, str, str], rows: np.ndarray
    ) -> None:
        """One series' samples of this batch, in time order: baseline, rises, judgement."""
        vals, times = batch["value"][rows], batch["ts"][rows]
        dated = ~np.isnan(times) & ~np.isnan(vals)
        rows, vals, times = rows[dated], vals[dated], times[dated]
        if rows.size == 0:
            return
        previous = self.series.get(key)
        before, then = shifted(vals), shifted(times)
        if previous is not None:
            before[0], then[0] = previous[0], previous[1]
        # the first sample is a baseline; a counter that went down was reset: a new one
        rises = np.where(vals > before, vals - before, 0.0)
        buckets: list[list[float]] = [] if previous is None else [list(b) for b in previous[2]]
        over: float | None = None if previous is None else previous[3]
        hits: list[int] = []
        worst: tuple[Severity, Action, str] | None = None
        for i in np.flatnonzero(rises > 0).tolist():
            t = float(times[i])
            over, verdict = self._judge(key, t, float(rises[i]), t - float(then[i]), buckets, over)
            if verdict is not None:
                hits.append(int(rows[i]))
                if worst is None or verdict[0] >= worst[0]:
                    worst = verdict
        self.series[key] = (float(vals[-1]), float(times[-1]), buckets, over, None)
        if worst is not None:  # one piece of evidence per series and batch: its hits
            node, gpu, kind, link, _, counter = key
            where = f"link {link}" if link >= 0 else "all links"
            noun = _NOUN[kind] if not counter else f"CRC errors ({counter})"
            evidence = _Evidence(
                np.asarray(hits), node, gpu, *worst[:2], f"{where} {noun}", worst[2]
            )
            self._due.append((hits[0], evidence))

    def _judge(
        self,
        key: tuple[str, str, str, int, str, str],
        t: float,
        rise: float,
        dt: float,
        buckets: list[list[float]],
        over: float | None,
    ) -> tuple[float | None, tuple[Severity, Action, str] | None]:
        """Count one rise into its series' hour; judge it against the lines.

        Returns since when the series has been over its warning line (None: it is not),
        and the verdict when it crossed one.
        """
        config = self.config
        buckets[:] = [b for b in buckets if b[0] > t - _HOUR_S]
        before = sum(n for _, n in buckets)
        if buckets and t - buckets[-1][0] < _BUCKET_S:
            buckets[-1][1] += rise
        else:
            buckets.append([t, rise])
        count = before + rise
        _, _, kind, link, _, counter = key
        limit = {
            "nvlink_crc": config.crc_per_hour,
            "nvlink_replay": config.replays_per_hour,
            "nvlink_recovery": config.recoveries_per_hour,
        }[kind]
        if before < limit:
            over = None  # it was under the line before this rise: a new run starts
        over = (t if over is None else over) if count >= limit else None
        burst = kind == "nvlink_crc" and dt > 0 and rise / dt >= config.crc_drain_per_s
        if over is None and not burst:
            return over, None
        where = f"link {link}" if link >= 0 else "all links"
        noun = _NOUN[kind] if not counter else f"CRC errors ({counter})"
        what = f"{where}: {count:.0f} {noun} in the last hour (limit {limit:g})"
        severity, action = Severity.WARNING, Action.INSPECT_FABRIC
        if burst:
            what += f", {rise / dt:.0f}/s"
            severity, action = Severity.ERROR, Action.DRAIN_NODE
        if over is not None and t - over >= config.sustained_s:
            what += f", over it for {(t - over) / 60:.0f} min"
            severity, action = Severity.ERROR, Action.DRAIN_NODE
        return over, (severity, action, what)

    def _xids(self, batch: EventBatch, rows: np.ndarray) -> None:
        """One piece of evidence per GPU and batch: its Xid 74 records."""
        strings = batch.strings
        by_gpu: dict[tuple[str, str], list[int]] = {}
        for row in rows.tolist():
            node = strings[batch["node"][row]]
            gpu = self._gpu(
                node, batch.value("pci", row), batch.value("uuid", row), batch.value("gpu", row)
            )
            by_gpu.setdefault((node, gpu), []).append(row)
        for (node, gpu), members in by_gpu.items():
            last = members[-1]
            entry = xid(int(batch["code"][last]))
            what = f"Xid {entry.code} ({entry.name})"
            if (m := _XID_LINK.search(batch.value("detail", last) or "")) is not None:
                what += f" on link {m[1]}"
            evidence = _Evidence(
                np.asarray(members), node, gpu, entry.severity, entry.action, what, what
            )
            self._due.append((members[0], evidence))

    def _fold(self, batch: EventBatch, evidence: _Evidence) -> Finding:
        members, node, gpu, severity, action, topic, what = evidence
        first, last = int(members[0]), int(members[-1])
        incident, _ = self.book.touch(
            (node, gpu),
            *span(batch, members),
            int(members.size),
            self._line(batch, first),
            self._line(batch, last) if last != first else None,
        )
        attrs: dict[str, Any] = incident.attrs
        attrs["severity"] = max(attrs.get("severity", Severity.INFO), severity)
        # the rest of the actions rank alike: the first evidence's stays unless outranked
        attrs["action"] = strongest(attrs.get("action", action), action)
        attrs.setdefault("what", {})[topic] = what  # the latest word on each link
        attrs["xid" if batch["kind"][first] == KIND_ID["xid"] else "counters"] = True
        for name in ("gpu", "uuid", "serial"):
            value = batch.value(name, first)
            if value is not None:
                attrs[name] = value
        return self._finding(incident)

    @staticmethod
    def _line(batch: EventBatch, row: int) -> str:
        """The evidence line of a record, with its link."""
        line = describe(batch, row)
        link = int(batch["link"][row])
        return line if link < 0 else f"{line} link={link}"

    def _finding(self, incident: Incident) -> Finding:
        node, gpu = incident.key
        attrs = incident.attrs
        severity, action = attrs["severity"], attrs["action"]
        if attrs.get("xid") and attrs.get("counters"):
            # the driver reported the link failing on a GPU whose counters were climbing
            severity, action = max(severity, Severity.ERROR), Action.DRAIN_NODE
        advice = {
            Action.DRAIN_NODE: "drain the node, then inspect the link (NVSwitch, baseboard)",
            Action.INSPECT_FABRIC: "inspect the link (NVSwitch, baseboard)",
        }.get(action, str(action))
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

"""thermal_throttle: a GPU slowed down by heat, and whether it is that GPU's cooling.

Pattern
    Per GPU, clocks-event samples are judged in windows of ``window_s``. A sample is
    thermal when it has the HW thermal (0x40) or SW thermal (0x20) slowdown bit, or
    HW slowdown (0x8) while the GPU is at ``hot_c`` or more. A GPU thermal in at least
    ``min_fraction`` of at least ``min_samples`` samples of a window is throttling:

    * a warning, ``check_cooling``;
    * when its node peers (GPUs of the same node sampled in the same window) are not
      throttling, the finding says the cooling fault is that GPU's (its fan, heat sink
      or the air to it); when they all are, it is the node's.

    Idle (0x1) and SW power cap (0x4) are how a GPU rests and how it runs at full
    load: never findings.

Evidence
    The first and last thermal samples (``file:line``, reason bitmask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np

from fleetwatch.detectors.base import Incident, IncidentBook, describe, make_finding
from fleetwatch.detectors.state import Stateful, register
from fleetwatch.events import KIND_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity

_THERMAL_BITS: Final = 0x40 | 0x20
_HW_SLOWDOWN: Final = 0x8


@dataclass(frozen=True)
class Config:
    """Thresholds of thermal_throttle."""

    window_s: float = 300.0
    """Samples are judged in windows this long."""
    min_fraction: float = 0.5
    """Share of a window's samples that must be thermal."""
    min_samples: int = 5
    """Fewer samples in a window say nothing."""
    hot_c: float = 85.0
    """HW slowdown at or above this temperature counts as thermal."""


@register
@dataclass
class _Window:
    start: float
    samples: int = 0
    thermal: int = 0
    first: str | None = None
    last: str | None = None
    last_ts: float = 0.0


class ThermalThrottle(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "thermal_throttle"
    kinds: ClassVar[frozenset[str]] = frozenset({"clock_event", "temperature"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.window_s * 2)
        self.temperature: dict[tuple[str, str], float] = {}
        self.windows: dict[tuple[str, str], _Window] = {}
        # node -> window start -> gpu -> (its window, its incident when throttling)
        self.verdicts: dict[str, dict[float, dict[str, tuple[_Window, Incident | None]]]] = {}
        self.identity: dict[tuple[str, str], dict[str, object]] = {}

    def process(self, batch: EventBatch) -> list[Finding]:
        kind = batch["kind"]
        temps = np.flatnonzero((kind == KIND_ID["temperature"]) & (batch["pci"] >= 0))
        for row in temps.tolist():
            self.temperature[
                batch.strings[batch["node"][row]], batch.strings[batch["pci"][row]]
            ] = float(batch["value"][row])
        rows = np.flatnonzero(
            (kind == KIND_ID["clock_event"]) & (batch["pci"] >= 0) & ~np.isnan(batch["ts"])
        )
        if rows.size == 0:
            return []
        out: dict[str, Finding] = {}
        keys, inverse = np.unique(
            np.stack([batch["node"][rows], batch["pci"][rows]]), axis=1, return_inverse=True
        )
        reasons = batch["value"][rows].astype(np.int64)
        for g, (node_id, pci_id) in enumerate(keys.T.tolist()):
            key = (batch.strings[node_id], batch.strings[pci_id])
            members = rows[inverse.ravel() == g]
            bits = reasons[inverse.ravel() == g]
            hot = self.temperature.get(key, 0.0) >= self.config.hot_c
            thermal = ((bits & _THERMAL_BITS) != 0) | (hot & ((bits & _HW_SLOWDOWN) != 0))
            self.identity.setdefault(
                key,
                {
                    "gpu": batch.value("gpu", int(members[0])),
                    "uuid": batch.value("uuid", int(members[0])),
                },
            )
            for row, is_thermal in zip(members.tolist(), thermal.tolist(), strict=True):
                for finding in self._sample(batch, key, row, bool(is_thermal)):
                    out[finding.id] = finding
        return list(out.values())

    def flush(self, now: float | None) -> list[Finding]:
        out: dict[str, Finding] = {}
        for key in list(self.windows):
            for finding in self._close(key):
                out[finding.id] = finding
        return list(out.values())

    def _sample(
        self, batch: EventBatch, key: tuple[str, str], row: int, thermal: bool
    ) -> list[Finding]:
        ts = float(batch["ts"][row])
        window = self.windows.get(key)
        findings: list[Finding] = []
        if window is not None and ts - window.start >= self.config.window_s:
            findings = self._close(key)
            window = None
        if window is None:
            window = self.windows[key] = _Window(start=ts - ts % self.config.window_s)
        window.samples += 1
        window.last_ts = ts
        if thermal:
            window.thermal += 1
            text = describe(batch, row)
            window.first = window.first or text
            window.last = text
        return findings

    def _close(self, key: tuple[str, str]) -> list[Finding]:
        """Judge a GPU's window; re-judge its node's throttling GPUs of that window."""
        window = self.windows.pop(key)
        node, pci = key
        if window.samples < self.config.min_samples:
            return []
        throttling = window.thermal >= self.config.min_fraction * window.samples
        incident = None
        if throttling:
            incident, _ = self.book.touch(
                key, window.start, window.last_ts, window.thermal, window.first, window.last
            )
        by_start = self.verdicts.setdefault(node, {})
        for old in [t for t in by_start if t < window.start - 2 * self.config.window_s]:
            del by_start[old]  # state stays bounded by GPUs, not by time
        judged = by_start.setdefault(window.start, {})
        judged[pci] = (window, incident)
        return [
            self._finding(node, gpu, judged) for gpu, (_, inc) in judged.items() if inc is not None
        ]

    def _finding(
        self, node: str, pci: str, judged: dict[str, tuple[_Window, Incident | None]]
    ) -> Finding:
        window, incident = judged[pci]
        assert incident is not None
        others = [inc is not None for gpu, (_, inc) in judged.items() if gpu != pci]
        if others and not any(others):
            where = (
                f"its {len(others)} node peer(s) are not: a cooling fault on this GPU "
                f"(fan, heat sink, airflow)"
            )
        elif others:
            where = "its node peers throttle too: check the node's cooling"
        else:
            where = "no node peers sampled to compare"
        share = window.thermal / window.samples
        summary = (
            f"GPU {pci} of {node} in thermal slowdown {share:.0%} of "
            f"{window.samples} samples over {self.config.window_s:.0f} s; {where}"
        )
        identity = self.identity.get((node, pci), {})
        return make_finding(
            self.name,
            incident,
            Severity.WARNING,
            Action.CHECK_COOLING,
            summary,
            {"node": node, "pci": pci, "gpu": identity.get("gpu"), "uuid": identity.get("uuid")},
        )

"""A finding's life in watch mode: open, updated, resolved; and who hears of it.

Detectors report a finding each time its incident grows. Watch mode turns that stream
into **transitions**, and only transitions reach the sinks that notify people:

* ``new``: a finding seen for the first time (or again after it was resolved);
* ``escalated``: its severity or its action grew since it was last announced;
* ``resolved``: its entity has been healthy (no new evidence) for ``resolve_after_s``.

A repeat that changes neither severity nor action only updates the finding's count
and ``last_ts`` in the store. An entity (detector, node, GPU, job, rank) that opens
``flap_threshold`` times within ``flap_window_s`` is **flapping**: its transitions are
still recorded, but not announced again until it stays quiet for a whole window.
A **silence** (node, GPU, detector, until when) does the same for what it matches.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Any

from fleetwatch.findings import Finding

LIFECYCLE_KEY = "$lifecycle"
"""The store's checkpoint row of the lifecycle's state, beside the detectors'."""


@dataclass(frozen=True)
class LifecycleConfig:
    """When a finding resolves, and when an entity is flapping."""

    resolve_after_s: float = 600.0
    """Seconds without new evidence after which a finding is resolved."""
    flap_window_s: float = 3600.0
    """The window in which repeated openings of one entity count as flapping."""
    flap_threshold: int = 3
    """Openings of one entity within the window that make it flapping."""


@dataclass(frozen=True)
class Silence:
    """Findings to record but not announce: every given field must match."""

    node: str | None = None
    gpu: int | None = None
    detector: str | None = None
    until: float | None = None  # epoch seconds; None: until the silence is removed

    def matches(self, finding: Finding, now: float) -> bool:
        if self.until is not None and now >= self.until:
            return False
        return (
            (self.node is None or finding.node == self.node)
            and (self.gpu is None or finding.gpu == self.gpu)
            and (self.detector is None or finding.detector == self.detector)
        )


@dataclass(frozen=True)
class Transition:
    """One change worth telling: ``kind`` is new, escalated or resolved."""

    kind: str
    finding: Finding
    announce: bool  # False: silenced or flapping (recorded, not announced)
    why_quiet: str | None = None  # "silenced" or "flapping"

    def to_json(self) -> dict[str, Any]:
        data = self.finding.to_json()
        data["transition"] = self.kind
        if self.why_quiet is not None:
            data["quiet"] = self.why_quiet
        return data


def entity(finding: Finding) -> str:
    """What a finding is about, without its incident's time: flapping is per entity."""
    parts = (finding.node, finding.pci, finding.gpu, finding.job, finding.rank, finding.code)
    return finding.detector + "|" + "|".join("" if p is None else str(p) for p in parts)


@dataclass
class _Tracked:
    finding: Finding
    seen: float  # wall time of the latest evidence
    announced_severity: int
    announced_action: int


class Lifecycle:
    """Open findings, their announced level, and each entity's recent openings."""

    def __init__(self, config: LifecycleConfig, silences: list[Silence] | None = None) -> None:
        self.config = config
        self.silences = list(silences or [])
        self.open: dict[str, _Tracked] = {}
        self.openings: dict[str, deque[float]] = {}

    def update(self, findings: list[Finding], now: float) -> list[Transition]:
        """The transitions of the findings a batch opened or changed."""
        out: list[Transition] = []
        for finding in findings:
            tracked = self.open.get(finding.id)
            severity, action = int(finding.severity), finding.action.strength
            if tracked is None:
                self.open[finding.id] = _Tracked(finding, now, severity, action)
                out.append(self._transition("new", finding, now, opening=True))
                continue
            tracked.finding, tracked.seen = finding, now
            if severity > tracked.announced_severity or action > tracked.announced_action:
                tracked.announced_severity = max(severity, tracked.announced_severity)
                tracked.announced_action = max(action, tracked.announced_action)
                out.append(self._transition("escalated", finding, now))
        return out

    def tick(self, now: float) -> list[Transition]:
        """Resolve what has been quiet long enough."""
        out = []
        for key in [k for k, t in self.open.items() if now - t.seen >= self.config.resolve_after_s]:
            tracked = self.open.pop(key)
            resolved = dataclasses.replace(tracked.finding, status="resolved")
            out.append(self._transition("resolved", resolved, now))
        window = self.config.flap_window_s
        for key in [k for k, times in self.openings.items() if now - times[-1] > window]:
            del self.openings[key]  # quiet for a whole window: forgotten
        return out

    def _transition(
        self, kind: str, finding: Finding, now: float, opening: bool = False
    ) -> Transition:
        key = entity(finding)
        times = self.openings.setdefault(key, deque())
        while times and now - times[0] > self.config.flap_window_s:
            times.popleft()
        if opening:
            times.append(now)
        if not times:
            del self.openings[key]
        if any(s.matches(finding, now) for s in self.silences):
            return Transition(kind, finding, False, "silenced")
        if len(times) >= self.config.flap_threshold:
            return Transition(kind, finding, False, "flapping")
        return Transition(kind, finding, True)

    # -- saved with the detectors' checkpoints -----------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "open": [
                [t.finding.to_json(), t.seen, t.announced_severity, t.announced_action]
                for t in self.open.values()
            ],
            "openings": {k: list(v) for k, v in self.openings.items()},
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.open = {}
        for data, seen, severity, action in saved.get("open", []):
            finding = Finding.from_json(data)
            self.open[finding.id] = _Tracked(finding, seen, severity, action)
        self.openings = {k: deque(v) for k, v in saved.get("openings", {}).items()}

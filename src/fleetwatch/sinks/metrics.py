"""Prometheus ``/metrics`` for watch mode (prometheus-client), on 127.0.0.1 by default.

=====================================================  =================================
metric                                                  what
=====================================================  =================================
``fleetwatch_findings_open{detector,severity}``         open findings now
``fleetwatch_events_total{source,kind}``                events read
``fleetwatch_unreadable_records_total{reader,reason}``  records that could not be read
``fleetwatch_detector_seconds_total{detector}``         time spent in each detector
``fleetwatch_source_failures_total{source}``            a source failed and was restarted
``fleetwatch_announcements_total{transition}``          transitions announced
=====================================================  =================================
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client import Counter as PromCounter

from fleetwatch.events import KINDS, SOURCES, EventBatch
from fleetwatch.findings import Finding


class Metrics:
    """The watch's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.findings_open = Gauge(
            "fleetwatch_findings_open",
            "Open findings by detector and severity.",
            ["detector", "severity"],
            registry=self.registry,
        )
        self.events = PromCounter(
            "fleetwatch_events",
            "Events read, by source and kind.",
            ["source", "kind"],
            registry=self.registry,
        )
        self.unreadable = PromCounter(
            "fleetwatch_unreadable_records",
            "Records that could not be read, by reader and reason.",
            ["reader", "reason"],
            registry=self.registry,
        )
        self.detector_seconds = PromCounter(
            "fleetwatch_detector_seconds",
            "Seconds spent processing events, by detector.",
            ["detector"],
            registry=self.registry,
        )
        self.source_failures = PromCounter(
            "fleetwatch_source_failures",
            "Times a source failed and was restarted with backoff.",
            ["source"],
            registry=self.registry,
        )
        self.announcements = PromCounter(
            "fleetwatch_announcements",
            "Transitions announced (new, escalated, resolved).",
            ["transition"],
            registry=self.registry,
        )
        self._unreadable_seen: Counter[tuple[str, str]] = Counter()

    def serve(self, address: str, port: int) -> int:
        """Serve ``/metrics``; return the port (``port`` 0 picks a free one)."""
        server, _ = start_http_server(port, addr=address, registry=self.registry)
        return int(server.server_port)

    def count_events(self, batch: EventBatch) -> None:
        pairs = np.stack([batch["source"], batch["kind"]]).T
        found, counts = np.unique(pairs, axis=0, return_counts=True)
        for (source, kind), n in zip(found.tolist(), counts.tolist(), strict=True):
            self.events.labels(SOURCES[source], KINDS[kind]).inc(n)

    def count_unreadable(self, totals: Counter[tuple[str, str]]) -> None:
        """Bring the counter up to ``totals`` (cumulative counts from ReadStats)."""
        for key, total in totals.items():
            grown = total - self._unreadable_seen[key]
            if grown > 0:
                self.unreadable.labels(*key).inc(grown)
                self._unreadable_seen[key] = total

    def set_open(self, findings: Iterable[Finding]) -> None:
        tally = Counter((f.detector, str(f.severity)) for f in findings)
        self.findings_open.clear()
        for (detector, severity), n in tally.items():
            self.findings_open.labels(detector, severity).set(n)

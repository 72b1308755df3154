"""Prometheus ``/metrics`` for watch mode (prometheus-client), on 127.0.0.1 by default.

=============================================================  ==========================
metric                                                          what
=============================================================  ==========================
``fleetwatch_findings_open{detector,severity}``                 open findings now
``fleetwatch_finding{node,gpu,pci,detector,severity,action}``   1 per open finding
``fleetwatch_finding_series_dropped``                           open findings past the cap
``fleetwatch_events_total{source,kind}``                        events read
``fleetwatch_unreadable_records_total{reader,reason}``          records that could not be read
``fleetwatch_detector_seconds_total{detector}``                 time spent in each detector
``fleetwatch_source_failures_total{source}``                    a source failed and was restarted
``fleetwatch_announcements_total{transition}``                  transitions announced
=============================================================  ==========================

(``actions/actor.py`` adds ``fleetwatch_actions_total{outcome}`` and
``fleetwatch_breaker_open`` to the same registry.)

``fleetwatch_finding`` is the series an alert rule matches (``deploy/prometheus/
rules.yml``): it appears when a finding opens and is gone once it resolves. Its value
is the number of open findings with those labels: 1, unless findings share every label
(two jobs' hangs name no node). Its labels come from logs, so it is kept bounded: the
six label names are fixed; detector, severity and action come from fleetwatch's own
vocabulary; node, GPU index and PCI address are bounded by the fleet, and a value is
written on one line (``one_line``: a lone surrogate from an undecodable folder name
would otherwise break the whole page) and cut at ``MAX_LABEL_CHARS``; and at most
``max_finding_series`` series are exported, the most severe first
(``findings.report_order``), the rest counted in ``fleetwatch_finding_series_dropped``.

The open findings are exported by a collector that reads one snapshot, replaced whole
by ``set_open``: a scrape never sees a half-written set (a series missing for one
scrape would restart an alert's ``for:``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Final

import numpy as np
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client import Counter as PromCounter
from prometheus_client.core import GaugeMetricFamily, Metric

from fleetwatch.events import KINDS, SOURCES, EventBatch
from fleetwatch.findings import Finding, report_order
from fleetwatch.sinks.one_line import one_line

FINDING_LABELS: Final = ("node", "gpu", "pci", "detector", "severity", "action")
MAX_LABEL_CHARS: Final = 128
"""A label value from input longer than this is cut (and ends in ``…``)."""
MAX_FINDING_SERIES: Final = 1000
"""The default cap on ``fleetwatch_finding`` series."""


def label(value: object) -> str:
    """A label value from input: on one line, valid UTF-8, at most ``MAX_LABEL_CHARS``."""
    text = one_line("" if value is None else str(value))
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def finding_labels(finding: Finding) -> tuple[str, ...]:
    """The values of ``FINDING_LABELS`` for ``finding`` (empty where it names none)."""
    return (
        label(finding.node),
        label(finding.gpu),
        label(finding.pci),
        label(finding.detector),
        str(finding.severity),
        str(finding.action),
    )


class _OpenFindings:
    """A collector: the open findings as of the last ``set_open``, read when scraped."""

    def __init__(self, max_series: int) -> None:
        self.max_series = max_series
        self._snapshot: tuple[Counter[tuple[str, str]], Counter[tuple[str, ...]], int] = (
            Counter(),
            Counter(),
            0,
        )

    def set(self, findings: Iterable[Finding]) -> None:
        ordered = sorted(findings, key=report_order)
        by_detector = Counter((label(f.detector), str(f.severity)) for f in ordered)
        per_finding = Counter(finding_labels(f) for f in ordered[: self.max_series])
        self._snapshot = (by_detector, per_finding, max(0, len(ordered) - self.max_series))

    def collect(self) -> Iterator[Metric]:
        by_detector, per_finding, dropped = self._snapshot  # one read: one consistent set
        open_ = GaugeMetricFamily(
            "fleetwatch_findings_open",
            "Open findings by detector and severity.",
            labels=["detector", "severity"],
        )
        for pair, n in sorted(by_detector.items()):
            open_.add_metric(list(pair), n)
        yield open_
        each = GaugeMetricFamily(
            "fleetwatch_finding",
            "1 while a finding is open (more where open findings share every label).",
            labels=list(FINDING_LABELS),
        )
        for labels, n in sorted(per_finding.items()):
            each.add_metric(list(labels), n)
        yield each
        yield GaugeMetricFamily(
            "fleetwatch_finding_series_dropped",
            "Open findings left out of fleetwatch_finding (past its max_finding_series).",
            value=dropped,
        )


class Metrics:
    """The watch's metrics, in a registry of their own."""

    def __init__(self, max_finding_series: int = MAX_FINDING_SERIES) -> None:
        self.registry = CollectorRegistry()
        self._open = _OpenFindings(max_finding_series)
        self.registry.register(self._open)
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
        """The open findings now: both findings gauges show exactly these."""
        self._open.set(findings)

"""The series names a watch's ``/metrics`` can hold, read off its real registry."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.actions.actor import Actor
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.sinks.metrics import Metrics
from fleetwatch.store import Store

SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})
"""What Prometheus adds to every target."""


def exported(folder: Path) -> set[str]:
    """Every series name of the watch's registry (``Watch`` builds the same two parts)."""
    metrics = Metrics()
    store = Store(folder / "exported.db")
    try:
        Actor(store, BreakerConfig(), registry=metrics.registry)
    finally:
        store.close()
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names

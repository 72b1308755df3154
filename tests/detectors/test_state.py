"""A detector stopped halfway, saved as JSON and restored elsewhere, finds the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetwatch.config import build, load
from fleetwatch.detectors.state import StateError, dump
from fleetwatch.detectors.state import load as load_state
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE, EventBatch, concat
from fleetwatch.findings import Finding, Severity
from fleetwatch.replay import Window, anchor, select
from fleetwatch.simulate import SCENARIOS, simulate
from fleetwatch.sources import ReadStats, read_paths

pytestmark = pytest.mark.slow


def events_of(folder: Path) -> EventBatch:
    stats = ReadStats()
    events = concat(list(read_paths([str(folder)], stats=stats)))
    anchor(events, stats.boot_anchors)
    return select(events, Window())


def batches(events: EventBatch, start: int, end: int) -> list[EventBatch]:
    return [events.take(slice(i, min(i + BATCH_SIZE, end))) for i in range(start, end, BATCH_SIZE)]


def summary(findings: list[Finding]) -> list[tuple[object, ...]]:
    return sorted((f.id, f.count, f.severity, f.action, f.first_ts, f.last_ts) for f in findings)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_restart_halfway_loses_no_window_and_repeats_no_finding(
    tmp_path: Path, scenario: str
) -> None:
    simulate(scenario, tmp_path, seed=3, nodes=3, lines_per_node=300)
    events = events_of(tmp_path)
    whole = Engine(build(load(None))).run(batches(events, 0, len(events)))

    half = (len(events) // 2 // BATCH_SIZE) * BATCH_SIZE or len(events) // 2
    first = Engine(build(load(None)))
    for batch in batches(events, 0, half):
        first.process(batch)
    saved = json.dumps([d.state() for d in first.detectors])  # what a checkpoint writes
    second = Engine(build(load(None)))
    for detector, state in zip(second.detectors, json.loads(saved), strict=True):
        detector.restore(state)
    second.findings = dict(first.findings)  # the store keeps what was already reported
    resumed = second.run(batches(events, half, len(events)))
    assert summary(resumed) == summary(whole)
    assert [f for f in whole if f.severity > Severity.INFO] or scenario == "healthy"


def test_state_round_trips_the_types_detectors_keep() -> None:
    from collections import deque

    from fleetwatch.detectors.base import Incident, IncidentBook, Span
    from fleetwatch.findings import Action

    book = IncidentBook(60.0)
    incident, _ = book.touch(("gpu-1", "0000:3b:00.0", 79), Span(1.0, 2.0, "boot"), 3, "a", "b")
    book.touch(("gpu-1", "0000:3b:00.0", 79), Span(1.7e9, 1.7e9, "wall"), 1)
    incident.attrs.update(gpus={("gpu-1", None)}, severity=Severity.ERROR, action=Action.RMA_GPU)
    value = {"book": book, "deque": deque([1, 2], maxlen=3), ("k", 1): [None, 2.5]}
    again = load_state(json.loads(json.dumps(dump(value))))
    assert again == value
    assert isinstance(again["book"].open[("gpu-1", "0000:3b:00.0", 79)], Incident)


def test_unknown_state_is_refused() -> None:
    with pytest.raises(StateError):
        load_state({"$type": "os.system", "fields": {}})
    with pytest.raises(StateError):
        dump(object())

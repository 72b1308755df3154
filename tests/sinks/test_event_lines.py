"""``parse``'s JSON lines, made column by column, are ``json_line`` of each record."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch.events import SOURCES, BatchBuilder, empty_batch
from fleetwatch.sinks.event_lines import event_lines
from fleetwatch.sinks.json_line import json_line
from fleetwatch.sources import ReadOptions, read_paths
from tests.conftest import DATA, EVENT, UTC


@settings(max_examples=300)
@given(st.lists(EVENT, max_size=12))
def test_the_lines_are_json_line_of_each_record(events: list[dict[str, Any]]) -> None:
    builder = BatchBuilder()
    for event in events:
        builder.add(event)
    batch = builder.seal()
    assert event_lines(batch) == "".join(map(json_line, batch.records()))


def test_the_test_data_of_every_reader_writes_the_same_lines() -> None:
    batches = list(read_paths([str(DATA)], ReadOptions(zone=UTC)))
    # the readers whose files tests/data holds (nvml is the live poller)
    assert {SOURCES[s] for b in batches for s in set(b["source"].tolist())} >= {
        "kmsg",
        "dcgm",
        "smi",
        "k8s",
        "nccl",
    }
    for batch in batches:
        assert event_lines(batch) == "".join(map(json_line, batch.records()))


def test_no_events_is_no_lines() -> None:
    assert event_lines(empty_batch()) == ""

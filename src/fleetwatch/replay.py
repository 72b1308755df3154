"""Replay: every input merged in time order, through the pattern library.

All events of all inputs are read into one columnar set (``events.concat``), filtered
(``--since``, ``--until``, ``--node``), sorted by time (events without a time keep
their file order, last) and fed to the engine in batches of ``BATCH_SIZE``, exactly
as a live stream would feed it.

Boot-clock stamps (plain dmesg) are seconds since that node booted. Where any line of
the node carries both stamps (syslog or journal kernel lines with ``[ 1843.30]``
inside), the node's offset anchors its boot-clock events to wall time. Without an
anchor they keep their order among themselves and sort before wall-clock events. The
anchor is the node's latest; events from an earlier boot of the same node would need
that boot's own anchor, which a boot-clock stamp cannot name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fleetwatch.config import build
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE, CLOCK_ID, EventBatch, concat
from fleetwatch.findings import Finding
from fleetwatch.sources import ReadOptions, ReadStats, read_paths


@dataclass(frozen=True)
class Window:
    """Which events to replay: a time range (epoch seconds) and a node."""

    since: float | None = None
    until: float | None = None
    node: str | None = None


def anchor(events: EventBatch, anchors: dict[str, float]) -> None:
    """Turn boot-clock times into wall times for the nodes with an anchor (in place)."""
    boot = events["clock"] == CLOCK_ID["boot"]
    for node, offset in anchors.items():
        ids = [i for i, s in enumerate(events.strings) if s == node]
        rows = boot & np.isin(events["node"], ids)
        events["ts"][rows] += offset
        events["clock"][rows] = CLOCK_ID["wall"]


def select(events: EventBatch, window: Window) -> EventBatch:
    """The events inside ``window``, in time order."""
    keep = np.ones(len(events), dtype=bool)
    ts = events["ts"]
    wall = events["clock"] == CLOCK_ID["wall"]
    if window.since is not None:
        keep &= ~wall | (ts >= window.since)
    if window.until is not None:
        keep &= ~wall | (ts <= window.until)
    if window.node is not None:
        ids = [i for i, s in enumerate(events.strings) if s == window.node]
        keep &= np.isin(events["node"], ids)
    rows = np.flatnonzero(keep)
    # boot-clock first, then wall clock, each by time; no time: last, in file order
    clock_rank = np.where(wall[rows], 1, np.where(np.isnan(ts[rows]), 2, 0))
    order = np.lexsort((np.nan_to_num(ts[rows], nan=np.inf), clock_rank))
    return events.take(rows[order])


def replay(
    paths: Sequence[str],
    configs: dict[str, Any],
    options: ReadOptions | None = None,
    window: Window | None = None,
    stats: ReadStats | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Finding]:
    """The findings of ``paths``, most severe first."""
    stats = stats if stats is not None else ReadStats()
    batches = []
    for batch in read_paths(list(paths), options, stats):
        batches.append(batch)
        if progress is not None:
            progress(len(batch))
    events = concat(batches)
    anchor(events, stats.boot_anchors)
    events = select(events, window or Window())
    engine = Engine(build(configs))
    for start in range(0, len(events), BATCH_SIZE):
        engine.process(events.take(slice(start, start + BATCH_SIZE)))
    return engine.finish()

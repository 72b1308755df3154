"""A node agent: read inputs, publish their events to the shards that own them.

Two ways to run one:

* **live** (``live_plan``): a watch (``watch/``: its sources, store, lifecycle and
  sinks) that runs the node family's detectors (``shards.ROUTES``) itself, so the raw
  dcgm samples stay on the node, and sends the fleet only what the fleet-wide
  detectors read, plus its own transitions, through its store (``uplink``);
* **from files** (``publish_paths``), below: every family's events of finished
  files, for a replay spread over correlators and for tests.

The file agent reads files and folders through replay's own pipeline
(``replay_batches``: formats from content, boot-clock stamps anchored, a streaming
merge in time order, in bounded memory), splits each batch replay would feed its
engine by family and shard (``entries``: ``shards.split``, with the label samples
thinned: ``thin``) and publishes each part as one entry, pipelined. Then it exits.

Why windows first: a detector folds a batch entity by entity, so a batch that spans
the whole input (one shard's share of it) can order evidence and fold ties otherwise
than replay's short batches; an entry cut from one short window keeps the findings
equal to replay's, evidence and summaries included (``tests/fleet``).

``publish_end`` appends ``{"type": "end"}`` to every shard: the input of the whole
fleet ended, and correlators close every window (replay's end of files). It is for
finite inputs (tests, a replay spread over correlators); a live fleet never ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from fleetwatch.events import EventBatch
from fleetwatch.fleet.codec import encode
from fleetwatch.fleet.shards import families, split
from fleetwatch.fleet.thin import LabelFilter
from fleetwatch.fleet.transport import Transport
from fleetwatch.fleet.uplink import Uplink
from fleetwatch.replay import Window, replay_batches
from fleetwatch.sources import ReadOptions, ReadStats
from fleetwatch.watch import WatchPlan

NODE_FAMILY = "node"
"""The family whose detectors a live agent runs itself."""

PIPELINE: int = 64
"""Entries sent to Redis per round trip."""


@dataclass
class Published:
    """What an agent sent: events, entries, and the read statistics."""

    events: int
    entries: int
    stats: ReadStats


def entries(
    windows: Iterable[EventBatch],
    shards: int,
    agent: str,
    cluster: str = "cluster",
    only: Collection[str] | None = None,
) -> Iterator[tuple[int, dict[str, bytes]]]:
    """The stream entries of ``windows`` (replay's batches): each window split by
    family and shard, label samples thinned, one entry per part (``only``: of these
    families)."""
    labels = LabelFilter()
    name = agent.encode()
    for window in windows:
        for family, shard, part in split(window, shards, cluster, labels, only):
            yield shard, {"family": family.encode(), "agent": name, "batch": encode(part)}


def publish_paths(
    transport: Transport,
    paths: Sequence[str],
    shards: int,
    agent: str,
    cluster: str = "cluster",
    options: ReadOptions | None = None,
) -> Published:
    """Read ``paths`` as ``replay`` does and publish their events; return what was sent."""
    stats = ReadStats()
    events = 0

    def counted(batches: Iterable[EventBatch]) -> Iterator[EventBatch]:
        nonlocal events
        for batch in batches:
            events += len(batch)
            yield batch

    pending: list[tuple[int, dict[str, bytes]]] = []
    sent = 0
    windows = counted(replay_batches(paths, options, Window(), stats))
    for item in entries(windows, shards, agent, cluster):
        pending.append(item)
        sent += 1
        if len(pending) >= PIPELINE:
            transport.publish(pending)
            pending = []
    if pending:
        transport.publish(pending)
    return Published(events, sent, stats)


def publish_end(transport: Transport, shards: int) -> None:
    """Tell every shard that the fleet's input ended (close every window)."""
    transport.publish([(shard, {"type": b"end"}) for shard in range(shards)])


def live_plan(plan: WatchPlan, uplink: Uplink) -> WatchPlan:
    """``plan`` as a live agent: the node family's detectors here, the rest by ``uplink``."""
    mine = families()[NODE_FAMILY]
    detectors = {name: c for name, c in plan.detectors.items() if name in mine}
    return dataclasses.replace(plan, detectors=detectors, relay=uplink)

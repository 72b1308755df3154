"""A node agent: read inputs, publish their events to the shards that own them.

Two ways to run one:

* **live** (``live_plan``): a watch (``watch/``: its sources, store, lifecycle and
  sinks) that runs the node family's detectors (``shards.ROUTES``) itself, so the raw
  dcgm samples stay on the node, and sends the fleet only what the fleet-wide
  detectors read, plus its own transitions, through its store (``uplink``);
* **from files** (``publish_paths``), below: every family's events of finished
  files, for a replay spread over correlators and for tests.

The file agent reads files and folders as ``replay`` does (``read_paths``: formats
from content, boot-clock stamps anchored, events in time order), cuts them into
windows of ``BATCH_SIZE`` events as replay feeds its engine, splits each window by
family and shard (``shards.split``, with the label samples thinned: ``thin``) and
publishes each part as one entry, pipelined.
Then it exits.

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
from collections.abc import Sequence
from dataclasses import dataclass

from fleetwatch.events import BATCH_SIZE, concat
from fleetwatch.fleet.codec import encode
from fleetwatch.fleet.shards import families, split
from fleetwatch.fleet.thin import LabelFilter
from fleetwatch.fleet.transport import Transport
from fleetwatch.fleet.uplink import Uplink
from fleetwatch.replay import Window, anchor, select
from fleetwatch.sources import ReadOptions, ReadStats, read_paths
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


def publish_paths(
    transport: Transport,
    paths: Sequence[str],
    shards: int,
    agent: str,
    cluster: str = "cluster",
    options: ReadOptions | None = None,
) -> Published:
    """Read ``paths`` and publish their events; return what was sent."""
    stats = ReadStats()
    events = concat(list(read_paths(list(paths), options, stats)))
    anchor(events, stats.boot_anchors)
    events = select(events, Window())
    pending: list[tuple[int, dict[str, bytes]]] = []
    entries = 0
    labels = LabelFilter()
    for start in range(0, len(events), BATCH_SIZE):
        window = events.take(slice(start, start + BATCH_SIZE))
        for family, shard, part in split(window, shards, cluster, labels):
            fields = {"family": family.encode(), "agent": agent.encode(), "batch": encode(part)}
            pending.append((shard, fields))
            entries += 1
            if len(pending) >= PIPELINE:
                transport.publish(pending)
                pending = []
    if pending:
        transport.publish(pending)
    return Published(len(events), entries, stats)


def publish_end(transport: Transport, shards: int) -> None:
    """Tell every shard that the fleet's input ended (close every window)."""
    transport.publish([(shard, {"type": b"end"}) for shard in range(shards)])


def live_plan(plan: WatchPlan, uplink: Uplink) -> WatchPlan:
    """``plan`` as a live agent: the node family's detectors here, the rest by ``uplink``."""
    mine = families()[NODE_FAMILY]
    detectors = {name: c for name, c in plan.detectors.items() if name in mine}
    return dataclasses.replace(plan, detectors=detectors, relay=uplink)

"""Which shard an event goes to: the routing table, and a stable hash.

A detector keeps state per entity (a GPU, a node, a job, a cluster). Fleet mode is
exact only if every event of one entity reaches one shard, in its time order, so each
detector belongs to one **family**, and the family says which field of an event is
its shard key. ``ROUTES`` is that rule, one row per detector, with its reason.

An event goes to each family that has a detector reading its kind (an Xid goes to the
node family for ``hbm_ecc`` / ``nvlink`` / ``gsp_fault`` and to the cluster family for
``xid_correlation`` / ``pod_evicted``): the families run apart (a correlator keeps one
engine per family of a shard), so a copy never counts twice.

``shard = blake2b(family + ":" + key) mod S``: the same on every machine and every run
(Python's ``hash`` is salted per process).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from hashlib import blake2b
from typing import Final

import numpy as np
import numpy.typing as npt

from fleetwatch.detectors import REGISTRY
from fleetwatch.events import KIND_ID, EventBatch
from fleetwatch.fleet.thin import LabelFilter


@dataclass(frozen=True)
class Route:
    """A detector's family, and why its entities live there."""

    family: str
    why: str


FAMILY_KEY: Final[dict[str, str]] = {
    "node": "node",  # the event's node
    "job": "job",  # the event's job (NCCL records carry the folder of their logs)
    "cluster": "",  # one key per cluster: the agent's --cluster name
}
"""Family -> the event field that keys it ("" for the cluster name)."""

ROUTES: Final[dict[str, Route]] = {
    "hbm_ecc": Route("node", "per GPU: a GPU's counters and memory Xids are its node's"),
    "nvlink": Route("node", "per GPU and link, on one node"),
    "gsp_fault": Route("node", "per GPU; the node's one open GSP incident"),
    "pcie_aer": Route("node", "per device (node, PCI address); bursts within one node"),
    "thermal_throttle": Route("node", "per GPU, judged against the peers of its node"),
    "nccl_hang": Route("job", "per job: every rank's records, across all its nodes"),
    "xid_correlation": Route(
        "cluster",
        "its job pattern spans nodes (application Xids on every GPU of a job, the job "
        "learned from pod labels of each node's samples); the node and GPU patterns "
        "are inside that",
    ),
    "pod_evicted": Route(
        "cluster",
        "Kubernetes events come from one cluster watcher, and an eviction is matched "
        "to the GPU faults of its node",
    ),
}


def families() -> dict[str, frozenset[str]]:
    """Family -> the names of its detectors."""
    out: dict[str, set[str]] = {}
    for name, route in ROUTES.items():
        out.setdefault(route.family, set()).add(name)
    return {family: frozenset(names) for family, names in out.items()}


def family_kinds() -> dict[str, frozenset[str]]:
    """Family -> the event kinds its detectors read."""
    out: dict[str, set[str]] = {}
    for name, route in ROUTES.items():
        out.setdefault(route.family, set()).update(REGISTRY[name].kinds)
    return {family: frozenset(kinds) for family, kinds in out.items()}


def shard_of(family: str, key: str, shards: int) -> int:
    """The shard of one entity key of ``family``."""
    digest = blake2b(f"{family}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


def split(
    batch: EventBatch,
    shards: int,
    cluster: str,
    labels: LabelFilter | None = None,
    only: Collection[str] | None = None,
) -> Iterator[tuple[str, int, EventBatch]]:
    """(family, shard, its events) for every part of ``batch``, each in batch order;
    ``only``: of these families (a live agent keeps the node family to itself).

    An event whose key field is absent (a counter with no node) goes by the key ""
    of its family: one shard, so it is still seen, and never by two engines. With
    ``labels``, samples a family reads only for their labels go when they change
    (``thin``).
    """
    for family, kinds in sorted(family_kinds().items()):
        if only is not None and family not in only:
            continue
        wanted = np.isin(batch["kind"], [KIND_ID[k] for k in kinds])
        if labels is not None:
            wanted &= labels.keep(batch, family)
        if not wanted.any():
            continue
        field = FAMILY_KEY[family]
        if not field:
            yield family, shard_of(family, cluster, shards), batch.take(np.flatnonzero(wanted))
            continue
        ids = batch[field]
        target = np.full(len(batch), -1, dtype=np.int64)
        for string_id in np.unique(ids[wanted]).tolist():
            key = batch.string(string_id) or ""
            target[wanted & (ids == string_id)] = shard_of(family, key, shards)
        for shard in np.unique(target[target >= 0]).tolist():
            rows: npt.NDArray[np.intp] = np.flatnonzero(target == shard)
            yield family, int(shard), batch.take(rows)


def check_routes() -> None:
    """Every registered detector has a route (a new detector must choose its family)."""
    missing = sorted(set(REGISTRY) - set(ROUTES))
    if missing:
        raise ValueError(f"detectors without a fleet route: {', '.join(missing)}")

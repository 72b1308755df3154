"""The routing table: every detector has a family, and a shard is the same everywhere."""

from __future__ import annotations

from fleetwatch.detectors import REGISTRY
from fleetwatch.events import BatchBuilder
from fleetwatch.fleet.shards import ROUTES, check_routes, shard_of, split


def test_every_detector_has_a_route() -> None:
    check_routes()
    assert set(ROUTES) == set(REGISTRY)


def test_a_shard_is_stable_and_in_range() -> None:
    assert shard_of("node", "gpu-node-001", 16) == shard_of("node", "gpu-node-001", 16)
    assert {shard_of("node", f"n{i}", 16) for i in range(200)} == set(range(16))


def test_an_xid_goes_to_its_node_and_to_the_cluster_an_nccl_record_to_its_job() -> None:
    builder = BatchBuilder()
    builder.add({"kind": "xid", "node": "n1", "code": 79, "ts": 1.0})
    builder.add({"kind": "nccl_timeout", "node": "n1", "job": "j1", "rank": 0, "ts": 2.0})
    parts = {(family, len(part)) for family, _, part in split(builder.seal(), 8, "c")}
    assert parts == {("node", 1), ("cluster", 1), ("job", 1)}

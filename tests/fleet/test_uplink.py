"""A live agent's uplink on a real redis-server: Redis down costs nothing, a repeat is
applied once.

(a) rows committed while Redis is down (killed) wait in the agent's store and go, in
order, once Redis (with its append-only file) is back; (b) a correlator applies every
event the agent took exactly once, and drops an entry the agent sent twice; (c) an
agent's own transitions land in the findings hash with their status and on the output
stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from fleetwatch import config
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.fleet.codec import decode
from fleetwatch.fleet.correlate import Correlator, Settings
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import NoRedisServer, free_port, start_redis, wait_for
from fleetwatch.fleet.shards import split
from fleetwatch.fleet.thin import LabelFilter
from fleetwatch.fleet.transport import RedisStreams, client_for
from fleetwatch.fleet.uplink import Uplink
from fleetwatch.lifecycle import Transition
from fleetwatch.simulate import simulate
from fleetwatch.sources import read_paths
from fleetwatch.store import Commit, Store

SHARDS = 2


def test_rows_wait_for_redis_and_each_event_is_applied_once(tmp_path: Path) -> None:
    simulate("app-xid-job", tmp_path / "sim", nodes=2, lines_per_node=20)
    batches = list(read_paths([str(tmp_path / "sim")]))
    (tmp_path / "redis").mkdir()
    port = free_port()
    try:
        server = start_redis(str(tmp_path / "redis"), port, persistent=True)
    except NoRedisServer as exc:
        pytest.skip(str(exc))
    client: Any = client_for(f"redis://127.0.0.1:{port}/0", timeout_s=1)  # replies: Any
    transport, ledger = RedisStreams(client), Ledger(client)
    store = Store(tmp_path / "agent.db")
    uplink = Uplink(transport, ledger, SHARDS, "n1", {"job", "cluster"})
    registry = CollectorRegistry()
    uplink.register(registry)
    uplink.start(store.path)

    def commit(part: list) -> None:  # type: ignore[type-arg]
        for batch in part:
            uplink.take(batch)
        store.commit(Commit([], {}, {}, [], {}, uplink=uplink.rows([])))
        uplink.committed()

    try:
        half = len(batches) // 2
        commit(batches[:half])
        wait_for(lambda: uplink.pending(store.path) == 0, what="the first rows sent")
        server.kill()
        server.wait()
        commit(batches[half:])
        wait_for(lambda: uplink.failures >= 1, what="a send to find Redis down")
        assert uplink.pending(store.path) > 0  # kept, not dropped
        wait_for(lambda: (registry.get_sample_value("fleetwatch_uplink_pending_rows") or 0) > 0)
        assert (registry.get_sample_value("fleetwatch_uplink_failures_total") or 0) >= 1
        server = start_redis(str(tmp_path / "redis"), port, persistent=True)
        wait_for(lambda: uplink.pending(store.path) == 0, what="the kept rows sent")
        assert registry.get_sample_value("fleetwatch_uplink_sent_rows_total") == uplink.sent
    finally:
        uplink.stop()
        store.close()

    try:
        # what the streams hold is every fleet-family event the agent took, once
        entries = [e for s in range(SHARDS) for e in client.xrange(f"fleetwatch:in:{s}")]
        sent = sum(len(decode(fields[b"batch"])) for _, fields in entries)
        labels = LabelFilter()
        taken = [split(b, SHARDS, "cluster", labels, {"job", "cluster"}) for b in batches]
        assert sent == sum(len(part) for parts in taken for _, _, part in parts) > 0
        seqs = [int(fields[b"seq"]) for _, fields in entries]
        assert len(seqs) == len(set(seqs))
        # the first entry sent again (the agent killed before it forgot it): dropped
        first_id, first = entries[0]
        shard = next(
            s for s in range(SHARDS) if client.xrange(f"fleetwatch:in:{s}", first_id, first_id)
        )
        transport.publish([(shard, {k.decode(): v for k, v in first.items()})])
        worker = Correlator("c1", transport, ledger, config.load(None), Settings(SHARDS))
        for _ in range(100):
            if worker.step() == 0 and all(
                client.xlen(f"fleetwatch:in:{s}") == 0 for s in range(SHARDS)
            ):
                break
        assert worker.repeated == 1 and worker.bad == 0
        found = {f["detector"]: f for f in ledger.findings()}
        assert found["xid_correlation"]["count"] == 16  # every GPU of the job, once each
    finally:
        server.terminate()
        server.wait()


def test_an_agents_transitions_are_findings_with_their_status(
    redis_url: str, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(redis_url)
    ledger = Ledger(client)
    uplink = Uplink(RedisStreams(client), ledger, SHARDS, "n1", {"job", "cluster"})
    finding = Finding("hbm_ecc-1", "hbm_ecc", Severity.ERROR, Action.RESET_GPU, "s", 1.0, 2.0)
    store = Store(tmp_path / "agent.db")
    uplink.start(store.path)
    try:
        rows = uplink.rows(
            [Transition("new", finding, True), Transition("resolved", finding, True)]
        )
        store.commit(Commit([], {}, {}, [], {}, uplink=rows))
        uplink.committed()
        wait_for(lambda: uplink.pending(store.path) == 0, what="the transitions sent")
    finally:
        uplink.stop()
        store.close()
    assert [t["transition"] for t in ledger.transitions()] == ["new", "resolved"]
    assert [(f["id"], f["status"]) for f in ledger.findings()] == [("hbm_ecc-1", "resolved")]

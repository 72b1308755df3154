"""``--act kubernetes``: the actor, through the breaker, cordons and taints on the stand-in
API server (``tests/inputs/fake_kube_api.py``; no real API server runs here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fleetwatch.actions.actor import Actor
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.kube_nodes import KubeNodes, KubeNodeSettings
from fleetwatch.findings import Action
from fleetwatch.store import Store
from tests.actions.test_actor import NODES, T0, ask, fault
from tests.inputs.fake_kube_api import FakeApiServer
from tests.watch.live import wait_for

TAINT = "fleetwatch.io/gpu-fault"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    for node in NODES:
        server.nodes.add(node)
    yield server
    server.close()


class Acting:
    """A store, a started node writer on the fake server and an actor over both."""

    def __init__(self, api: FakeApiServer, tmp: Path, act: str = "kubernetes") -> None:
        self.said: list[str] = []
        settings = KubeNodeSettings(kubeconfig=str(api.kubeconfig(tmp)), conditions=False,
                                    backoff_s=0.01, backoff_max_s=0.05, tries=2)  # fmt: skip
        self.store = Store(tmp / "w.db")
        self.kube = KubeNodes(settings, "watcher-1", say=self.say)
        self.kube.start()
        self.actor = Actor(self.store, BreakerConfig(), act, registry=CollectorRegistry(),
                           say=self.say, kube=self.kube)  # fmt: skip

    def say(self, line: str, level: int) -> None:
        self.said.append(line)

    def outcomes(self) -> dict[str, str]:
        return {row.node: row.outcome for row in self.store.actions()}


@pytest.fixture
def acting(api: FakeApiServer, tmp_path: Path) -> Iterator[Acting]:
    a = Acting(api, tmp_path)
    yield a
    a.kube.stop()
    a.store.close()


def tainted(api: FakeApiServer) -> list[str]:
    return [n for n in NODES if any(t["key"] == TAINT for t in api.nodes.taints(n))]


def test_a_flood_over_50_nodes_takes_out_the_breakers_limit(
    api: FakeApiServer, acting: Acting
) -> None:
    ask(acting.store, [fault(n) for n in NODES])
    (breaker,) = acting.actor.run(T0, set())
    assert breaker.detector == "breaker" and breaker.count == 48
    wait_for(lambda: len(tainted(api)) == 2, what="two nodes taken out")
    acting.kube.stop()  # everything it was handed is written: nothing more will come
    assert tainted(api) == NODES[:2]
    assert all(api.nodes.node(n)["spec"].get("unschedulable") for n in NODES[:2])
    assert not any(api.nodes.node(n)["spec"].get("unschedulable") for n in NODES[2:])
    assert sorted(acting.outcomes().values()).count("held") == 48
    patched = {r.path.rsplit("/", 1)[1] for r in api.nodes.sent("PATCH")}
    assert patched == set(NODES[:2])


def test_a_restart_takes_out_nothing_twice(api: FakeApiServer, tmp_path: Path) -> None:
    first = Acting(api, tmp_path)
    ask(first.store, [fault(NODES[0])])
    first.actor.run(T0, set())
    first.kube.stop()
    first.store.close()
    again = Acting(api, tmp_path)  # a new process: the store remembers
    try:
        ask(again.store, [fault(NODES[0])])  # the same finding, escalated: one request
        ask(again.store, [fault(n) for n in NODES[1:4]])
        again.actor.run(T0 + 10, set())
    finally:
        again.kube.stop()
        again.store.close()
    assert tainted(api) == NODES[:2]  # the first still counts in the window
    assert len(api.nodes.sent("PATCH", f"nodes/{NODES[0]}$")) == 1


def test_reset_gpu_taints_without_cordoning(api: FakeApiServer, acting: Acting) -> None:
    ask(acting.store, [fault(NODES[0], Action.RESET_GPU)])
    acting.actor.run(T0, set())
    wait_for(lambda: tainted(api) == NODES[:1], what="the taint")
    assert api.nodes.taints(NODES[0]) == [
        {"key": TAINT, "value": "xid_correlation", "effect": "NoSchedule"}
    ]
    assert "unschedulable" not in api.nodes.node(NODES[0])["spec"]


def test_a_host_name_that_is_no_node_name_is_refused_before_the_breaker(
    api: FakeApiServer, acting: Acting
) -> None:
    odd = ["GPU-NODE-1", "gpu_node_2", "gpu-node-3.", "-x"]
    ask(acting.store, [fault(n) for n in odd], nodes=NODES + odd)
    assert acting.actor.run(T0, set()) == []
    acting.kube.stop()
    assert acting.outcomes() == dict.fromkeys(odd, "refused")
    assert api.nodes.requests == []
    assert any("not a Kubernetes node name" in line for line in acting.said)


def test_a_take_out_the_writer_gives_up_is_recorded_failed(
    api: FakeApiServer, acting: Acting
) -> None:
    api.nodes.fail("PATCH", f"nodes/{NODES[0]}$", 503, times=10)
    ask(acting.store, [fault(NODES[0])])
    acting.actor.run(T0, set())
    assert acting.outcomes() == {NODES[0]: "acted"}  # handed over: written before it runs

    def settled() -> bool:
        acting.actor.settle(T0 + 1)
        return acting.outcomes()[NODES[0]] == "failed"

    wait_for(settled, what="the failure recorded")
    (row,) = acting.store.actions("failed")
    assert "gave up after 2 tries" in row.detail and "503" in row.detail


def test_a_dry_run_says_what_kubernetes_would_do_and_writes_nothing(
    api: FakeApiServer, tmp_path: Path
) -> None:
    dry = Acting(api, tmp_path, act="")
    try:
        ask(dry.store, [fault(NODES[0]), fault("Bad_Name")], nodes=[*NODES, "Bad_Name"])
        dry.actor.run(T0, set())
    finally:
        dry.kube.stop()
        dry.store.close()
    assert api.nodes.requests == []
    lines = sorted(line for line in dry.said if "--act kubernetes does" in line)
    assert lines == [
        f"dry run: would cordon and taint {NODES[0]} with {TAINT}=xid_correlation:NoSchedule"
        " (--act kubernetes does)",
        "dry run: would refuse 'Bad_Name': not a Kubernetes node name (--act kubernetes does)",
    ]
    (row,) = [r for r in Store(tmp_path / "w.db").actions("would_act") if r.node == NODES[0]]
    assert row.detail.endswith(f"; kubernetes: cordon and taint {NODES[0]} with "
                               f"{TAINT}=xid_correlation:NoSchedule")  # fmt: skip


def test_act_kubernetes_needs_a_writer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs a Kubernetes API"):
        Actor(Store(tmp_path / "w.db"), BreakerConfig(), "kubernetes")

"""The node writer against the loopback API server (a stand-in: no real one runs here).

The official client talks HTTP to ``tests/inputs/fake_kube_api.py``, which applies
strategic merge by ``type`` to ``status.conditions`` and answers errors as the real
server does; each test waits on what the server holds, never on a sleep.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from fleetwatch.actions.kube_api import KubeConfigError, NodeApi
from fleetwatch.actions.kube_nodes import KubeNodes, KubeNodeSettings
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Transition
from tests.inputs.fake_kube_api import FakeApiServer
from tests.inputs.fake_kube_nodes import STRATEGIC, is_subdomain
from tests.watch.live import wait_for

T0 = 1_800_000_000.0
FAST = {"backoff_s": 0.01, "backoff_max_s": 0.05, "tries": 3, "timeout_s": 5.0}


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


class Writer:
    """A started ``KubeNodes`` on the fake server, with what it said."""

    def __init__(self, api: FakeApiServer, tmp: Path, **settings: Any) -> None:
        self.said: list[str] = []
        self.registry = CollectorRegistry()
        config = KubeNodeSettings(kubeconfig=str(api.kubeconfig(tmp)), **{**FAST, **settings})
        self.nodes = KubeNodes(config, "watcher-1", self.registry,
                               lambda line, level: self.said.append(line))  # fmt: skip
        self.nodes.start()

    def count(self, write: str, outcome: str) -> float:
        labels = {"write": write, "outcome": outcome}
        value = self.registry.get_sample_value("fleetwatch_kubernetes_writes_total", labels)
        return value or 0.0


@pytest.fixture
def writer(api: FakeApiServer, tmp_path: Path) -> Iterator[Writer]:
    w = Writer(api, tmp_path)
    yield w
    w.nodes.stop()


def xid(node: str = "gpu-node-1", n: int = 0, action: Action = Action.REBOOT_NODE) -> Finding:
    return Finding(
        id=f"xid_correlation-{n:016x}",
        detector="xid_correlation",
        severity=Severity.CRITICAL,
        action=action,
        summary=f"Xid 79 (GPU has fallen off the bus) on GPU 0000:3b:00.0 of {node}",
        first_ts=T0,
        last_ts=T0,
        node=node,
        code=79,
    )


def status_of(api: FakeApiServer, node: str, kind: str = "GPUXidFault") -> str | None:
    condition = api.nodes.condition(node, kind)
    return None if condition is None else condition["status"]


def test_a_finding_opens_a_condition_and_an_event_and_resolving_clears_it(
    api: FakeApiServer, writer: Writer
) -> None:
    uid = api.nodes.add("gpu-node-1")
    f = xid()
    writer.nodes.report([Transition("new", f, True)])
    wait_for(lambda: status_of(api, "gpu-node-1") == "True", what="the condition True")
    wait_for(lambda: len(api.nodes.events) == 1, what="the opening Event")
    node = api.nodes.node("gpu-node-1")
    kinds = [c["type"] for c in node["status"]["conditions"]]
    assert kinds[0] == "Ready" and len(kinds) == 8  # Ready kept; all 7 of fleetwatch's
    xid_condition = api.nodes.condition("gpu-node-1", "GPUXidFault")
    assert xid_condition is not None and xid_condition["reason"] == "Xid79"
    assert xid_condition["message"].startswith(f"fleetwatch {f.id}: Xid 79")
    assert status_of(api, "gpu-node-1", "GPUPCIeFault") == "False"
    (opened,) = api.nodes.events
    assert opened["involvedObject"] == {"apiVersion": "v1", "kind": "Node",
                                        "name": "gpu-node-1", "uid": uid}  # fmt: skip
    assert (opened["type"], opened["reason"], opened["source"]["component"]) == (
        "Warning", "Xid79", "fleetwatch")  # fmt: skip
    assert opened["metadata"]["namespace"] == "default"
    patches = api.nodes.sent("PATCH", "/status$")
    assert patches and all(p.content_type == STRATEGIC for p in patches)

    writer.nodes.report([Transition("resolved", f, True)])
    wait_for(lambda: status_of(api, "gpu-node-1") == "False", what="the condition False")
    wait_for(lambda: writer.count("event", "done") == 2, what="the resolving Event")
    cleared = api.nodes.condition("gpu-node-1", "GPUXidFault")
    assert cleared is not None and cleared["reason"] == "NoGPUXidFault"
    assert (api.nodes.events[1]["type"], api.nodes.events[1]["reason"]) == (
        "Normal", "GPUXidFaultResolved")  # fmt: skip
    assert writer.count("conditions", "done") == 2
    assert not api.nodes.sent("PATCH", r"/nodes/[^/]+$")  # reporting never taints or cordons


def test_a_quiet_transition_changes_the_condition_without_an_event(
    api: FakeApiServer, writer: Writer
) -> None:
    api.nodes.add("gpu-node-1")
    writer.nodes.report([Transition("new", xid(), False, "silenced")])
    wait_for(lambda: status_of(api, "gpu-node-1") == "True", what="the condition")
    writer.nodes.stop()
    assert api.nodes.events == []


def test_hostile_node_names_never_reach_a_request(api: FakeApiServer, writer: Writer) -> None:
    api.nodes.add("gpu-node-1")
    hostile = ["../nodes/gpu-node-1", "gpu-node-1/status", "GPU-NODE-1", "a b", "x?watch=1",
               "gpu%2fnode", "gpu-node-1\n", "n" * 300, "-rf"]  # fmt: skip
    writer.nodes.report([Transition("new", xid(name, i), True) for i, name in enumerate(hostile)])
    for i, name in enumerate(hostile):
        writer.nodes.take_out(f"xid-{i}", name, "xid_correlation", Action.DRAIN_NODE)
    writer.nodes.report([Transition("new", xid("gpu-node-1", 99), True)])
    wait_for(lambda: len(api.nodes.events) == 1, what="the one good node's Event")
    writer.nodes.stop()
    paths = [r.path for r in api.nodes.requests]
    names = {m[1] for p in paths if (m := re.match(r"/api/v1/nodes/([^/?]+)", p))}
    assert names == {"gpu-node-1"} and all(is_subdomain(n) for n in names)
    assert writer.count("conditions", "refused") == len(hostile)
    assert writer.count("take_out", "refused") == len(hostile)
    assert len(writer.nodes.failures()) == len(hostile)  # handed back: the actor records them
    assert all("\n" not in line for line in writer.said)


def test_server_errors_and_dropped_connections_are_retried(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.nodes.add("gpu-node-1")
    api.nodes.fail("PATCH", "/status$", 500, times=2)
    api.nodes.fail("POST", "/events$", 0)  # the connection dropped without an answer
    api.nodes.fail("POST", "/events$", 503)
    writer = Writer(api, tmp_path, tries=5)  # each failed pass is a try of what waits in it
    try:
        writer.nodes.report([Transition("new", xid(), True)])
        wait_for(lambda: status_of(api, "gpu-node-1") == "True", what="the condition after 500s")
        wait_for(lambda: writer.count("event", "done") == 1, what="the Event after a drop, a 503")
    finally:
        writer.nodes.stop()
    assert len(api.nodes.events) == 1
    assert writer.count("conditions", "retried") == 2 and writer.count("event", "retried") == 4
    assert [r.status for r in api.nodes.sent("POST")] == [0, 503, 201]
    assert any("trying again" in line for line in writer.said)


def test_an_event_created_by_an_earlier_try_is_not_created_twice(
    api: FakeApiServer, writer: Writer
) -> None:
    api.nodes.add("gpu-node-1")
    f = xid()
    writer.nodes.report([Transition("new", f, True)])
    wait_for(lambda: len(api.nodes.events) == 1, what="the Event")
    writer.nodes.report([Transition("new", f, True)])  # the same transition told again
    wait_for(lambda: len(api.nodes.sent("POST", "/events$")) == 2, what="the second POST")
    wait_for(lambda: writer.count("event", "done") == 2, what="409 AlreadyExists taken as done")
    assert len(api.nodes.events) == 1
    assert api.nodes.sent("POST", "/events$")[1].status == 409


def test_refusals_are_counted_and_the_writer_goes_on(api: FakeApiServer, writer: Writer) -> None:
    api.nodes.add("gpu-node-1")
    api.nodes.add("gpu-node-2")
    api.nodes.fail("PATCH", "gpu-node-1/status$", 403)
    api.nodes.fail("POST", "/events$", 422)
    writer.nodes.report([Transition("new", xid("gpu-node-1"), True),
                         Transition("new", xid("no-such-node", 1), True),
                         Transition("new", xid("gpu-node-2", 2), True)])  # fmt: skip
    wait_for(lambda: status_of(api, "gpu-node-2") == "True", what="the next node written")
    wait_for(lambda: writer.count("event", "failed") == 2, what="the 422 and the missing node")
    assert status_of(api, "gpu-node-1") is None  # forbidden: not retried
    assert writer.count("conditions", "failed") == 2 and writer.count("conditions", "retried") == 0
    assert any("no node no-such-node in the cluster" in line for line in writer.said)


def test_a_take_out_taints_and_cordons_and_a_conflict_reads_the_node_again(
    api: FakeApiServer, writer: Writer
) -> None:
    gpu_taint = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    api.nodes.add("gpu-node-1", taints=[gpu_taint])
    api.nodes.add("gpu-node-2")
    api.nodes.fail("PATCH", r"nodes/gpu-node-1$", 409)  # changed between the read and the write
    writer.nodes.take_out("xid-1", "gpu-node-1", "xid_correlation", Action.REBOOT_NODE)
    writer.nodes.take_out("hbm-2", "gpu-node-2", "hbm_ecc", Action.RESET_GPU)
    mine = {"key": "fleetwatch.io/gpu-fault", "value": "xid_correlation", "effect": "NoSchedule"}
    wait_for(lambda: api.nodes.taints("gpu-node-1") == [gpu_taint, mine], what="the taint")
    wait_for(lambda: api.nodes.taints("gpu-node-2"), what="the second node's taint")
    assert api.nodes.node("gpu-node-1")["spec"]["unschedulable"] is True
    assert "unschedulable" not in api.nodes.node("gpu-node-2")["spec"]  # reset_gpu: taint only
    tries = api.nodes.sent("PATCH", r"nodes/gpu-node-1$")
    assert [r.status for r in tries] == [409, 200]
    assert all(r.body["metadata"]["resourceVersion"] for r in tries)  # a precondition each
    assert len(api.nodes.sent("GET", r"nodes/gpu-node-1$")) >= 2  # read again after the 409
    writer.nodes.take_out("xid-3", "gpu-node-1", "nvlink", Action.DRAIN_NODE)
    wait_for(lambda: writer.count("take_out", "done") == 3, what="the third take-out")
    assert len(api.nodes.sent("PATCH", r"nodes/gpu-node-1$")) == 2  # already out: no write
    assert writer.nodes.failures() == []


def test_a_take_out_that_keeps_failing_is_given_up_and_handed_back(
    api: FakeApiServer, writer: Writer
) -> None:
    api.nodes.add("gpu-node-1")
    api.nodes.fail("PATCH", r"nodes/gpu-node-1$", 500, times=100)
    writer.nodes.take_out("xid-1", "gpu-node-1", "xid_correlation", Action.DRAIN_NODE)
    (failed,) = wait_for(writer.nodes.failures, what="the take-out given up")
    assert failed[0] == "xid-1" and "gave up after 3 tries" in failed[1]
    assert writer.count("take_out", "failed") == 1
    assert api.nodes.taints("gpu-node-1") == []


def test_conditions_are_written_again_every_heartbeat(api: FakeApiServer, tmp_path: Path) -> None:
    api.nodes.add("gpu-node-1")
    w = Writer(api, tmp_path, heartbeat_s=0.1)
    try:
        w.nodes.report([Transition("new", xid(), True)])
        wait_for(lambda: len(api.nodes.sent("PATCH", "/status$")) >= 3, what="two heartbeats")
    finally:
        w.nodes.stop()
    assert status_of(api, "gpu-node-1") == "True"


def test_after_a_restart_open_findings_set_their_conditions(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.nodes.add("gpu-node-1")
    config = KubeNodeSettings(kubeconfig=str(api.kubeconfig(tmp_path)), **FAST)  # type: ignore[arg-type]
    nodes = KubeNodes(config, "watcher-1")
    nodes.start([xid()])
    try:
        wait_for(lambda: status_of(api, "gpu-node-1") == "True", what="the seeded condition")
    finally:
        nodes.stop()
    assert api.nodes.events == []  # told before the restart: not told again


def test_a_kubeconfig_that_does_not_load_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("not: [a kubeconfig")
    with pytest.raises(KubeConfigError, match="cannot load the kubeconfig"):
        NodeApi(str(tmp_path / "bad"))

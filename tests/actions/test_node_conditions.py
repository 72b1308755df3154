"""Node conditions, Events and taints computed from findings (no server: the data)."""

from __future__ import annotations

import re

import pytest

from fleetwatch.actions import kubernetes
from fleetwatch.actions.kube_api import is_node_name
from fleetwatch.actions.node_conditions import NodeConditions, event, event_name, node_map
from fleetwatch.detectors import REGISTRY
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Transition

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def fault(
    detector: str = "xid_correlation",
    action: Action = Action.REBOOT_NODE,
    code: int | None = 79,
    node: str = "gpu-node-17",
    n: int = 0,
    severity: Severity = Severity.CRITICAL,
) -> Finding:
    return Finding(
        id=f"{detector}-{n:016x}",
        detector=detector,
        severity=severity,
        action=action,
        summary=f"Xid {code} on GPU 0000:3b:00.0 of {node}: {action} advised",
        first_ts=T0,
        last_ts=T0,
        node=node,
        code=code,
    )


def test_the_map_names_a_condition_for_each_node_detector_and_every_action() -> None:
    m = node_map()
    assert set(m.conditions) == set(REGISTRY) - {"pod_evicted"}  # kubelet reports evictions
    assert m.conditions["xid_correlation"].type == "GPUXidFault"
    assert m.conditions["pcie_aer"].type == "GPUPCIeFault"
    assert set(m.actions) == set(Action)
    assert [a for a in Action if "cordon" in m.actions[a].take_out] == [
        Action.DRAIN_NODE, Action.REBOOT_NODE, Action.RMA_GPU
    ]  # fmt: skip
    assert kubernetes.steps(m, Action.RESET_GPU) == ("taint",)
    # what takes a node out on Kubernetes is what asks the actor to (Action.takes_out_of_service)
    assert {a for a in Action if m.actions[a].take_out} == {
        a for a in Action if a.takes_out_of_service
    }


def test_reasons_are_the_xid_code_or_the_action_word() -> None:
    m = node_map()
    assert m.reason(fault()) == "Xid79"
    assert m.reason(fault(code=None)) == "RebootNeeded"
    assert m.reason(fault("hbm_ecc", Action.RMA_GPU, code=None)) == "GPUReplacementNeeded"
    assert m.reason(fault("pcie_aer", Action.INSPECT_PCIE, code=5)) == "PCIeInspectionNeeded"


def test_a_condition_is_true_while_a_finding_is_open_and_every_type_is_written() -> None:
    node = NodeConditions(node_map())
    first = fault()
    assert node.apply(Transition("new", first, True))
    conditions = {c["type"]: c for c in node.conditions(T0)}
    assert len(conditions) == len(node_map().conditions)
    xid = conditions["GPUXidFault"]
    assert xid["status"] == "True" and xid["reason"] == "Xid79"
    assert xid["message"].startswith(f"fleetwatch {first.id}: Xid 79 on GPU")
    assert xid["lastTransitionTime"] == xid["lastHeartbeatTime"] == "2027-01-15T08:00:00Z"
    assert conditions["GPUPCIeFault"] == {
        "type": "GPUPCIeFault", "status": "False", "reason": "NoGPUPCIeFault",
        "message": "fleetwatch: no open pcie_aer finding",
        "lastHeartbeatTime": "2027-01-15T08:00:00Z",
        "lastTransitionTime": "2027-01-15T08:00:00Z",
    }  # fmt: skip

    second = fault(action=Action.RMA_GPU, n=1)  # a second GPU's: the stronger one leads
    assert node.apply(Transition("new", second, True))
    xid = next(c for c in node.conditions(T0 + 60) if c["type"] == "GPUXidFault")
    assert xid["message"].startswith(f"fleetwatch {second.id}:")
    assert xid["message"].endswith(f"(and {first.id})")
    assert xid["lastTransitionTime"] == "2027-01-15T08:00:00Z"  # still True: unmoved
    assert xid["lastHeartbeatTime"] == "2027-01-15T08:01:00Z"

    assert not node.apply(Transition("new", first, True))  # a repeat changes nothing
    assert node.apply(Transition("resolved", first, True))
    assert node.apply(Transition("resolved", second, True))
    xid = next(c for c in node.conditions(T0 + 120) if c["type"] == "GPUXidFault")
    assert (xid["status"], xid["reason"]) == ("False", "NoGPUXidFault")
    assert xid["lastTransitionTime"] == "2027-01-15T08:02:00Z"


def test_an_application_fault_sets_no_condition_but_gets_its_event() -> None:
    node = NodeConditions(node_map())
    app = fault(action=Action.FIX_APPLICATION, code=31, severity=Severity.WARNING)
    opened = Transition("new", app, True)
    assert not node.apply(opened)
    assert all(c["status"] == "False" for c in node.conditions(T0))
    body = event(node_map(), opened, None, "watcher-1", T0)
    assert body is not None and (body["type"], body["reason"]) == ("Warning", "Xid31")


def test_transition_times_already_on_the_node_are_kept() -> None:
    node = NodeConditions(node_map())
    node.adopt([{"type": "GPUXidFault", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}])  # fmt: skip
    written = {c["type"]: c for c in node.conditions(T0)}
    assert written["GPUXidFault"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert "Ready" not in written  # not fleetwatch's: never written


def test_events_name_the_node_and_say_opened_and_resolved() -> None:
    f = fault()
    opened = event(node_map(), Transition("new", f, True), "uid-1", "watcher-1", T0)
    assert opened == {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": event_name(f, "new"), "namespace": "default"},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Node",
            "name": "gpu-node-17",
            "uid": "uid-1",
        },
        "reason": "Xid79",
        "message": f"fleetwatch {f.id} new: {f.summary}",
        "type": "Warning",
        "source": {"component": "fleetwatch", "host": "gpu-node-17"},
        "reportingComponent": "fleetwatch",
        "reportingInstance": "watcher-1",
        "firstTimestamp": "2027-01-15T08:00:00Z",
        "lastTimestamp": "2027-01-15T08:00:00Z",
        "count": 1,
    }
    resolved = event(node_map(), Transition("resolved", f, True), None, "w", T0)
    assert resolved is not None
    assert (resolved["type"], resolved["reason"]) == ("Normal", "GPUXidFaultResolved")
    assert "uid" not in resolved["involvedObject"]
    assert event(node_map(), Transition("new", f, False, "silenced"), None, "w", T0) is None
    assert event(node_map(), Transition("new", fault("pod_evicted"), True), None, "w", T0) is None
    names = {event_name(f, kind) for kind in ("new", "escalated", "resolved")}
    assert len(names) == 3 and all(is_node_name(n) for n in names)
    assert event_name(f, "new") == event_name(f, "new")  # a retry creates the same one


def test_event_messages_stay_on_one_line_and_short() -> None:
    f = fault()
    hostile = Finding(**{**f.__dict__, "summary": "evil\nsecond line\x1b[2J" + "x" * 5000})
    body = event(node_map(), Transition("new", hostile, True), None, "w", T0)
    assert body is not None and "\n" not in body["message"] and len(body["message"]) == 1024


@pytest.mark.parametrize(
    "name",
    ["gpu-node-1", "a", "gpu-node-1.rack-3.example.com", "10.0.0.7", "x" * 253],
)
def test_node_names_that_kubernetes_accepts(name: str) -> None:
    assert is_node_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "GPU-NODE-1", "gpu_node_1", "-gpu", "gpu-", "a..b", ".a", "../nodes/x", "a/status",
     "gpu%2fnode", "node?watch=true", "a b", "gpu-node-1\n", "nøde", "x" * 254, "a.-b"],
)  # fmt: skip
def test_node_names_that_it_refuses(name: str) -> None:
    assert not is_node_name(name)


def test_a_taint_patch_keeps_the_taints_there_and_is_made_once() -> None:
    m = node_map()
    other = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    node = {"metadata": {"resourceVersion": "42"}, "spec": {"taints": [other]}}
    patch = kubernetes.take_out_patch(m, node, "xid_correlation", Action.DRAIN_NODE)
    assert patch == {
        "metadata": {"resourceVersion": "42"},
        "spec": {
            "unschedulable": True,
            "taints": [other, {"key": "fleetwatch.io/gpu-fault", "value": "xid_correlation",
                               "effect": "NoSchedule"}],
        },
    }  # fmt: skip
    done = {"metadata": {"resourceVersion": "43"}, "spec": patch["spec"]}
    assert kubernetes.take_out_patch(m, done, "hbm_ecc", Action.RMA_GPU) is None
    only_taint = kubernetes.take_out_patch(m, {"spec": {}}, "hbm_ecc", Action.RESET_GPU)
    assert only_taint is not None and "unschedulable" not in only_taint["spec"]
    assert kubernetes.take_out_patch(m, {"spec": {}}, "nvlink", Action.INSPECT_FABRIC) is None
    said = kubernetes.describe(m, "gpu-node-3", "xid_correlation", Action.REBOOT_NODE)
    assert said == (
        "cordon and taint gpu-node-3 with fleetwatch.io/gpu-fault=xid_correlation:NoSchedule"
    )
    label_value = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
    assert all(label_value.fullmatch(d) for d in REGISTRY)  # each is a valid taint value

"""Incidents: findings linked cause -> effect by the shipped rules (catalog/incident_rules.toml).

Findings are built here as detectors make them (their fields, ids and times); the
simulated scenarios (tests/test_simulate.py) check the same from real logs.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetwatch.catalog import CatalogError
from fleetwatch.findings import Action, Finding, Severity, finding_id
from fleetwatch.incidents import (
    APPLICATION,
    HARDWARE,
    SINGLE,
    UNKNOWN,
    Tracker,
    incident_id,
    link,
    rules_from,
    shipped_rules,
)

T0 = 1717495200.0  # 2024-06-04 10:00:00 UTC


def finding(
    detector: str,
    t: float,
    action: Action,
    severity: Severity = Severity.ERROR,
    clock: str = "wall",
    **entity: Any,
) -> Finding:
    key = "|".join(f"{k}={v}" for k, v in sorted(entity.items()))
    key += f"|{action}|{severity}|{clock}"  # one id, one finding
    return Finding(
        id=finding_id(detector, key, t),
        detector=detector,
        severity=severity,
        action=action,
        summary=f"{detector} on {entity.get('node')}",
        first_ts=t,
        last_ts=t + 5,
        clock=clock,
        **entity,
    )


PCI = "0000:5d:00.0"


def xid79(node: str = "gpu-node-3", pci: str = PCI, t: float = T0) -> Finding:
    return finding(
        "xid_correlation", t, Action.REBOOT_NODE, Severity.CRITICAL, node=node, pci=pci, code=79
    )


def hang(t: float, job: str = "train", **entity: Any) -> Finding:
    return finding("nccl_hang", t, Action.RESTART_JOB, job=job, **entity)


def evicted(node: str, t: float) -> Finding:
    return finding("pod_evicted", t, Action.NONE, Severity.INFO, node=node)


def by_root(incidents: list[Any]) -> dict[str, Any]:
    return {i.root.id: i for i in incidents}


def test_a_gpu_that_fell_off_the_bus_is_the_root_of_the_hang_and_the_evictions() -> None:
    root = xid79()
    stalled = hang(T0 + 600, node="gpu-node-3", pci="0000:5d:00.0", rank=21)
    pushed = evicted("gpu-node-3", T0 + 700)
    decoy = hang(T0 + 620, job="eval", node="gpu-node-9", rank=2)  # another job, other nodes
    incidents = by_root(link([pushed, decoy, stalled, root]))
    linked = incidents[root.id]
    assert linked.rule == "hardware_on_gpu" and linked.root_cause == HARDWARE
    assert linked.effects == (stalled, pushed)  # in time order
    assert linked.action is Action.REBOOT_NODE  # the strongest; never the job's restart
    assert linked.severity is Severity.CRITICAL
    assert linked.incident_id == incident_id(root) and linked.incident_id.startswith("inc-")
    assert linked.nodes == ("gpu-node-3",) and linked.gpus[0] == "gpu-node-3/0000:5d:00.0"
    assert (linked.first_ts, linked.last_ts) == (T0, T0 + 705)
    said = linked.summary
    assert said.startswith("First, Xid 79 (GPU has fallen off the bus) on GPU 0000:5d:00.0")
    assert "NCCL job train timed out, its rank 21" in said and "10 min later" in said
    assert "restarting job train onto gpu-node-3 would fail again" in said
    alone = incidents[decoy.id]
    assert alone.rule == SINGLE and alone.root_cause == UNKNOWN and alone.effects == ()
    assert alone.action is Action.RESTART_JOB and alone.summary == decoy.summary


def test_a_hang_of_a_job_with_a_rank_on_the_node_takes_the_node_out_not_the_job() -> None:
    """A warning-level cooling fault is the root of a hang of a job that ran a rank on
    that node (its ``nodes``): the action rises to drain_node, never restart_job."""
    hot = finding(
        "thermal_throttle",
        T0,
        Action.CHECK_COOLING,
        Severity.WARNING,
        node="gpu-node-3",
        pci="0000:18:00.0",
    )
    stalled = hang(T0 + 900, nodes=("gpu-node-2", "gpu-node-3"))
    (incident,) = link([hot, stalled])
    assert incident.root == hot and incident.effects == (stalled,)
    assert incident.action is Action.DRAIN_NODE
    assert incident.severity is Severity.ERROR  # the hang's: the most severe of them


def test_the_earliest_hardware_finding_of_a_gpu_is_the_root_and_the_rest_its_effects() -> None:
    aer = finding(
        "pcie_aer", T0, Action.INSPECT_PCIE, Severity.CRITICAL, node="gpu-node-3", pci=PCI
    )
    lost = xid79(t=T0)  # the same second: the rules' detector order breaks the tie
    later = finding("hbm_ecc", T0 + 60, Action.RESET_GPU, node="gpu-node-3", pci=PCI)
    elsewhere = xid79(node="gpu-node-4", t=T0 + 30)
    long_after = xid79(t=T0 + 5 + 1800 + 1)  # past the window after the root's last time
    incidents = by_root(link([later, aer, lost, elsewhere, long_after]))
    assert set(incidents) == {lost.id, elsewhere.id, long_after.id}
    assert incidents[lost.id].rule == "hardware_on_gpu"
    assert incidents[lost.id].effects == (aer, later)
    assert incidents[lost.id].action is Action.REBOOT_NODE
    said = incidents[lost.id].summary
    assert said.startswith("First, Xid 79") and "the hardware fault came first" in said
    assert incidents[elsewhere.id].effects == () and incidents[elsewhere.id].rule != SINGLE


def test_gpus_of_one_node_failing_together_are_the_nodes_incident_not_one_gpus() -> None:
    """Two GPUs off the bus 4 s apart, one with a fatal AER on its own address, and the
    node-wide finding xid_correlation makes of them: one incident of the node, told as
    such, with the node's action; no GPU is said to have caused the other's fault."""
    first = xid79(t=T0)
    aer = finding(
        "pcie_aer", T0 + 1, Action.INSPECT_PCIE, Severity.CRITICAL, node="gpu-node-3", pci=PCI
    )
    second = xid79(pci="0000:3b:00.0", t=T0 + 4)
    node_wide = finding("xid_correlation", T0, Action.DRAIN_NODE, node="gpu-node-3", code=79)
    stalled = hang(T0 + 600, node="gpu-node-3", pci="0000:3b:00.0", rank=5)
    (incident,) = link([stalled, second, node_wide, aer, first])
    assert incident.rule == "hardware_on_node" and incident.root_cause == HARDWARE
    assert incident.root == first  # the first GPU's: the id it had before the second came
    assert incident.effects == (node_wide, aer, second, stalled)
    assert incident.action is Action.REBOOT_NODE  # the Xid 79s'; never the job's restart
    assert incident.gpus == ("gpu-node-3/0000:5d:00.0", "gpu-node-3/0000:3b:00.0")
    assert incident.summary == (
        "2 GPUs of gpu-node-3 failed within 4 s: Xid 79 (GPU has fallen off the bus) on "
        "GPU 0000:5d:00.0 of gpu-node-3, at 2024-06-04 10:00:00 UTC, then PCIe errors on "
        "it, 1 s later; Xid 79 (GPU has fallen off the bus) on GPU 0000:3b:00.0 of "
        "gpu-node-3, 4 s later. Then NCCL job train timed out, its rank 5 on GPU "
        "0000:3b:00.0 of gpu-node-3, 10 min later. Do reboot_node on gpu-node-3: a "
        "node-level cause is likely (power, baseboard, PCIe switch, cooling or fabric), "
        "not one GPU, so restarting job train onto gpu-node-3 would fail again; restart "
        "it once gpu-node-3 is out of service."
    )
    assert "came first" not in incident.summary


def test_faults_of_several_gpus_take_the_node_out_whatever_each_asks() -> None:
    """GPU resets asked on two GPUs at once: the node is drained, not one GPU reset."""
    gsp = finding("gsp_fault", T0, Action.RESET_GPU, node="gpu-node-3", pci=PCI)
    ecc = finding("hbm_ecc", T0 + 90, Action.RESET_GPU, node="gpu-node-3", pci="0000:3b:00.0")
    (incident,) = link([gsp, ecc])
    assert incident.rule == "hardware_on_node" and incident.action is Action.DRAIN_NODE
    assert incident.summary.startswith("2 GPUs of gpu-node-3 failed within 90 s: ")


def test_faults_of_two_gpus_far_apart_are_two_incidents() -> None:
    """Past 5 min, two GPUs' faults are each its own: neither is the other's effect."""
    first = xid79(t=T0)
    aer = finding(
        "pcie_aer", T0 + 400, Action.INSPECT_PCIE, Severity.ERROR, node="gpu-node-3", pci=PCI
    )
    second = xid79(pci="0000:3b:00.0", t=T0 + 5 + 301)
    incidents = by_root(link([first, aer, second]))
    assert set(incidents) == {first.id, second.id}
    assert incidents[first.id].rule == incidents[second.id].rule == "hardware_on_gpu"
    assert incidents[first.id].effects == (aer,)  # its own GPU's, 400 s later
    assert incidents[second.id].effects == ()


def test_an_nvswitch_is_no_second_gpu() -> None:
    """An SXid on the node's NVSwitch beside one GPU's NVLink Xid is no node of two GPUs."""
    sxid = finding(
        "xid_correlation", T0, Action.INSPECT_FABRIC, node="gpu-node-3", pci="0000:05:00.0",
        code=12028,
    )  # fmt: skip
    nvlink = finding("nvlink", T0 + 2, Action.RESET_GPU, node="gpu-node-3", pci=PCI)
    incidents = link([sxid, nvlink])
    assert {i.rule for i in incidents} == {"hardware_on_gpu"} and len(incidents) == 2


def test_a_hang_linked_to_two_faults_goes_to_its_culprits_node() -> None:
    first = xid79(node="gpu-node-1", t=T0)
    culprit = xid79(node="gpu-node-2", t=T0 + 60)
    stalled = hang(T0 + 600, node="gpu-node-2", nodes=None, rank=9)
    spanning = hang(T0 + 610, job="other", nodes=("gpu-node-1", "gpu-node-2"))
    incidents = by_root(link([first, culprit, stalled, spanning]))
    assert incidents[culprit.id].effects == (stalled,)
    assert incidents[first.id].effects == (spanning,)  # equal links: the earliest root


def test_a_hang_whose_culprit_ran_on_another_node_is_not_linked_by_its_ranks() -> None:
    lost = xid79(node="gpu-node-1")
    elsewhere = hang(T0 + 600, node="gpu-node-2", rank=12, nodes=("gpu-node-1", "gpu-node-2"))
    incidents = by_root(link([lost, elsewhere]))
    assert incidents[lost.id].effects == () and incidents[elsewhere.id].rule == SINGLE


def test_an_application_xid_is_the_root_of_its_jobs_nccl_errors() -> None:
    app = finding(
        "xid_correlation",
        T0,
        Action.FIX_APPLICATION,
        Severity.WARNING,
        job="ml/llm-pretrain",
        namespace="ml",
        code=31,
        nodes=("gpu-node-1", "gpu-node-2"),
    )
    stalled = hang(T0 + 600, job="llm-pretrain", nodes=("gpu-node-1", "gpu-node-2"))
    decoy = hang(T0 + 630, job="eval", nodes=("gpu-node-3", "gpu-node-4"))
    incidents = by_root(link([app, stalled, decoy]))
    linked = incidents[app.id]
    assert linked.rule == "application_xid" and linked.root_cause == APPLICATION
    assert linked.effects == (stalled,) and linked.action is Action.FIX_APPLICATION
    assert linked.nodes == ("gpu-node-1", "gpu-node-2")
    assert "Xid 31 (GPU memory page fault) on gpu-node-1, gpu-node-2" in linked.summary
    assert incidents[decoy.id].rule == SINGLE


def test_an_application_xid_on_a_node_with_a_gpu_fault_is_no_hardware_root() -> None:
    app = finding("xid_correlation", T0, Action.FIX_APPLICATION, node="gpu-node-3", code=13)
    lost = xid79(t=T0 + 10)
    incidents = by_root(link([app, lost]))
    assert incidents[lost.id].effects == () and incidents[app.id].root_cause == APPLICATION


def test_boot_clock_times_link_only_on_their_own_node() -> None:
    lost = finding(
        "xid_correlation", 1843.0, Action.REBOOT_NODE, clock="boot", node="gpu-node-3", code=79
    )
    stalled = hang(T0 + 600, node="gpu-node-3", rank=1)  # wall clock: cannot be compared
    other = finding("pcie_aer", 1850.0, Action.INSPECT_PCIE, clock="boot", node="gpu-node-4")
    same = finding("pcie_aer", 1850.0, Action.INSPECT_PCIE, clock="boot", node="gpu-node-3")
    incidents = by_root(link([lost, stalled, other, same]))
    assert incidents[lost.id].effects == (same,)
    assert incidents[lost.id].clock == "boot"


def test_names_from_logs_stay_plain_text_on_one_line() -> None:
    node = "gpu-node-3\n\x1b[31m[bold]evil\u202e"
    lost = xid79(node=node)
    pushed = evicted(node, T0 + 60)
    (incident,) = link([lost, pushed])
    assert incident.summary.isprintable() and "\n" not in incident.summary
    assert "gpu-node-3\\n\\x1b[31m[bold]evil\\u202e" in incident.summary
    assert incident.nodes == (node,)  # the JSON names stay as read; JSON escapes them
    assert json.loads(json.dumps(incident.to_json()))["nodes"] == [node]


def test_the_json_form_round_trips_through_findings_read_back() -> None:
    """What a store or a fleet keeps (finding JSON) links as the findings did."""
    found = [xid79(), hang(T0 + 600, nodes=("gpu-node-3", "gpu-node-5")), evicted("gpu-node-3", T0)]
    again = [Finding.from_json(json.loads(json.dumps(f.to_json()))) for f in found]
    assert again == found
    assert [i.to_json() for i in link(again)] == [i.to_json() for i in link(found)]


actions = st.sampled_from(list(Action))
detectors = st.sampled_from(
    ["xid_correlation", "hbm_ecc", "pcie_aer", "thermal_throttle", "nccl_hang", "pod_evicted"]
)


@st.composite
def findings(draw: st.DrawFn) -> Finding:
    detector = draw(detectors)
    node = draw(st.sampled_from(["a", "b", "c", None]))
    nodes = draw(st.none() | st.lists(st.sampled_from(["a", "b", "c"]), min_size=2, unique=True))
    return finding(
        detector,
        T0 + draw(st.integers(0, 5000)),
        draw(actions),
        draw(st.sampled_from(list(Severity))),
        clock=draw(st.sampled_from(["wall", "wall", "boot"])),
        node=node,
        nodes=tuple(nodes) if nodes else None,
        job=draw(st.sampled_from([None, "ml/j", "j", "k"])),
        pci=draw(st.sampled_from([None, "0000:18:00.0", "0000:3b:00.0"])),
        gpu=draw(st.sampled_from([None, 0, 1])),
        code=draw(st.sampled_from([None, 13, 31, 48, 79, 119, 20034])),
        rank=draw(st.integers(0, 3)),
    )


@given(st.lists(findings(), max_size=12))
def test_every_finding_is_in_one_incident_and_a_hardware_root_never_restarts_the_job(
    found: list[Finding],
) -> None:
    incidents = link(found)
    ids = [f.id for i in incidents for f in i.findings]
    assert sorted(ids) == sorted({f.id for f in found})
    for incident in incidents:
        if incident.root_cause == HARDWARE and incident.rule != SINGLE:
            assert incident.action not in (Action.RESTART_JOB, Action.FIX_APPLICATION)
        assert incident.summary.isprintable()
    assert [i.to_json() for i in link(reversed(found))] == [i.to_json() for i in incidents]


def test_watch_tracks_linked_incidents_as_open_findings_come_and_go() -> None:
    tracker = Tracker()
    lost, stalled = xid79(), hang(T0 + 600, node="gpu-node-3", rank=4)
    pushed = evicted("gpu-node-3", T0 + 700)
    assert tracker.update([lost]) == []  # alone: announced as a finding already
    (new,) = tracker.update([lost, stalled])
    assert new.kind == "new" and new.incident.effects == (stalled,)
    (grew,) = tracker.update([lost, stalled, pushed])
    assert grew.kind == "grew" and len(grew.incident.findings) == 3
    assert tracker.update([lost, stalled, pushed]) == []  # nothing changed: nothing said
    (resolved,) = tracker.update([stalled, pushed])  # the root resolved
    assert resolved.kind == "resolved" and resolved.incident.incident_id == new.incident.incident_id


def test_a_gpus_incident_grows_into_its_nodes_under_the_same_id() -> None:
    tracker = Tracker()
    first, stalled = xid79(), hang(T0 + 600, node="gpu-node-3", rank=4)
    (new,) = tracker.update([first, stalled])
    assert new.incident.rule == "hardware_on_gpu"
    (grew,) = tracker.update([first, stalled, xid79(pci="0000:3b:00.0", t=T0 + 3)])
    assert grew.kind == "grew" and grew.incident.rule == "hardware_on_node"
    assert grew.incident.incident_id == new.incident.incident_id


def test_the_shipped_rules_load() -> None:
    rules = shipped_rules()
    assert [r.name for r in rules.rules] == [
        "hardware_on_node",
        "hardware_on_gpu",
        "application_xid",
    ]
    assert [r.min_gpus for r in rules.rules] == [2, 1, 1]
    assert rules.words["nccl_hang"][0].startswith("NCCL job {job}")


def shipped_data() -> dict[str, Any]:
    import tomllib
    from importlib import resources

    text = resources.files("fleetwatch.catalog").joinpath("incident_rules.toml").read_text()
    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda d: d["rule"][0].update(root_detectors=["nccl_hung"]), "unknown detector"),
        (lambda d: d["rule"][0]["effect"][1].update(link="rack"), "link must be one of"),
        (lambda d: d["rule"][0]["effect"][1].update(after_s=-1), "after_s must be seconds"),
        (
            lambda d: d["rule"][0]["effect"][1].update(action_at_least="restart_job"),
            "a hardware root never yields restart_job",
        ),
        (lambda d: d["rule"][1].update(advice="Do {action} on {rack}"), "blanks are"),
        (lambda d: d["rule"][1].update(root_cause="cosmic rays"), "root_cause must be"),
        (lambda d: d["words"].update(nvlink=["NVLink {where!r}"]), "blanks are"),
        (lambda d: d["rule"][1].update(name="hardware_on_node"), "two rules of one name"),
        (lambda d: d["rule"][0].update(min_gpus=0), "min_gpus must be a number of GPUs"),
        (
            lambda d: d["rule"][0].update(action_at_least="fix_application"),
            "a hardware root never yields fix_application",
        ),
        (lambda d: d["rule"][0]["effect"][0].update(link="slot"), "link must be one of"),
        (lambda d: d.update(sxid_codes_from="many"), "sxid_codes_from"),
    ],
)
def test_a_malformed_rules_file_is_refused_naming_the_entry(change: Any, says: str) -> None:
    data = shipped_data()
    change(data)
    with pytest.raises(CatalogError, match=says):
        rules_from(data, "rules.toml")

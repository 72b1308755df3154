"""scontrol is run as an argument list, after the node name is checked; the fleet's ledger.

Against the fake Slurm (``fake_scontrol.py``); the real one: ``test_slurm_real.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fleetwatch.actions.slurm import (
    NotASlurmNode,
    Slurm,
    SlurmConfig,
    SlurmError,
    read_fleet,
    reason,
    reason_time,
)
from fleetwatch.findings import Action, Finding, Severity
from tests.actions.fake_scontrol import FakeScontrol


def finding(node: str = "gpu-node-17") -> Finding:
    return Finding(
        id="xid_correlation-0123456789abcdef",
        detector="xid_correlation",
        severity=Severity.CRITICAL,
        action=Action.REBOOT_NODE,
        summary="GPU fell off the bus",
        first_ts=1.0,
        last_ts=2.0,
        node=node,
        gpu=3,
        pci="0000:41:00.0",
    )


def test_the_reason_names_the_finding_its_detector_and_gpu() -> None:
    assert reason(finding()) == (
        "fleetwatch xid_correlation-0123456789abcdef: xid_correlation reboot_node"
        " gpu 3 0000:41:00.0"
    )


def test_drain_runs_scontrol_with_an_argument_list(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path, ["gpu-node-17"])
    Slurm(SlurmConfig(scontrol=str(fake.path))).drain("gpu-node-17", reason(finding()))
    assert fake.calls() == [
        [
            "update",
            "nodename=gpu-node-17",
            "state=drain",
            "reason=fleetwatch xid_correlation-0123456789abcdef: xid_correlation reboot_node"
            " gpu 3 0000:41:00.0",
        ]
    ]


@pytest.mark.parametrize(
    "node",
    ["n1; touch pwned", "$(touch pwned)", "`id`", "gpu[1-8]", "a,b", "-h", "n 1", "n\n1", "",
     "ALL", "all", "All", "aLl"],
)  # fmt: skip
def test_a_name_that_is_not_a_slurm_node_name_is_refused_before_any_call(
    tmp_path: Path, node: str
) -> None:
    fake = FakeScontrol(tmp_path / "bin")
    slurm = Slurm(SlurmConfig(scontrol=str(fake.path)))
    with pytest.raises(NotASlurmNode):
        slurm.drain(node, "why")
    with pytest.raises(NotASlurmNode):
        slurm.check(node)
    assert fake.calls() == []
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_reason_with_shell_syntax_arrives_as_one_argument(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path, ["n1"])
    why = "x $(touch pwned); `id` 'q' \"d\""
    Slurm(SlurmConfig(scontrol=str(fake.path))).drain("n1", why)
    assert fake.calls()[0][-1] == f"reason={why}"
    assert not (tmp_path / "pwned").exists()


def test_scontrol_refusing_is_a_slurm_error_with_its_message(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path, ["n1"])
    fake.fail_with(1)
    with pytest.raises(SlurmError, match="exited 1: slurm_update error: Invalid node name"):
        Slurm(SlurmConfig(scontrol=str(fake.path))).drain("n1", "why")


def test_a_missing_scontrol_is_a_slurm_error(tmp_path: Path) -> None:
    with pytest.raises(SlurmError):
        Slurm(SlurmConfig(scontrol=str(tmp_path / "nowhere"))).drain("n1", "why")


def test_check_asks_slurm_that_the_name_is_exactly_one_node_it_knows(tmp_path: Path) -> None:
    # fwset is a NodeSet: `nodename=fwset` would drain both of its nodes, and `show node`
    # does not expand it (as the real slurmctld: test_slurm_real.py)
    fake = FakeScontrol(tmp_path, ["fw1", "fw2"], {"fwset": ["fw1", "fw2"]})
    slurm = Slurm(SlurmConfig(scontrol=str(fake.path)))
    slurm.check("fw1")
    for name in ("fwset", "nosuch", "FW1"):
        with pytest.raises(NotASlurmNode, match="Slurm knows no node"):
            slurm.check(name)
    assert fake.calls() == [["-o", "show", "node", n] for n in ("fw1", "fwset", "nosuch", "FW1")]
    assert fake.updates() == []


def test_check_refuses_a_name_slurm_shows_as_another_node_or_several(tmp_path: Path) -> None:
    scontrol = tmp_path / "scontrol"  # a Slurm that answers for a name with other nodes
    scontrol.write_text(
        f"#!{sys.executable}\nprint('NodeName=gpu1 State=IDLE')\nprint('NodeName=gpu2 State=IDLE')\n"
    )
    scontrol.chmod(0o755)
    with pytest.raises(NotASlurmNode, match=r"'gpu1' as 2 node\(s\) \(gpu1, gpu2\)"):
        Slurm(SlurmConfig(scontrol=str(scontrol))).check("gpu1")


def test_check_that_cannot_ask_slurm_is_a_slurm_error(tmp_path: Path) -> None:
    with pytest.raises(SlurmError):
        Slurm(SlurmConfig(scontrol=str(tmp_path / "nowhere"))).check("n1")


def test_the_sinfo_beside_scontrol_is_the_default() -> None:
    assert SlurmConfig(scontrol="/opt/slurm/bin/scontrol").sinfo_command() == "/opt/slurm/bin/sinfo"
    assert SlurmConfig().sinfo_command() == "sinfo"
    assert SlurmConfig(sinfo="/x/sinfo").sinfo_command() == "/x/sinfo"


T0 = 1_800_000_000.0


def test_the_fleet_is_every_node_and_fleetwatchs_drains_in_the_window(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path, [f"n{i}" for i in range(5)])
    fake.set_reason("n0", "fleetwatch xid_correlation-1: xid_correlation reboot_node", T0 - 60)
    fake.set_reason("n1", "fleetwatch xid_correlation: reboot_node 0000:41:00.0", T0 - 3599)
    fake.set_reason("n2", "fleetwatch xid_correlation-2: old", T0 - 3601)  # before the window
    fake.set_reason("n3", "hardware swap, #4711", T0 - 60)  # an operator's drain
    fleet = Slurm(SlurmConfig(scontrol=str(fake.path))).fleet(T0 - 3600)
    assert fleet.nodes == {"n0", "n1", "n2", "n3", "n4"}
    assert fleet.drained == {"n0", "n1"}
    assert fake.sinfo_calls() == [["-h", "-N", "-o", "%N|%H|%E"]]


def test_the_fleets_lines_are_read_whatever_the_reason_holds() -> None:
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 - 10))
    listing = (
        f"n1|{int(T0 - 10)}|fleetwatch a: b | c | d\n"  # | in a reason
        f"n1|{int(T0 - 10)}|fleetwatch a: b | c | d\n"  # the same node in a second partition
        f"n2|{local}|fleetwatch x\n"  # sinfo without SLURM_TIME_FORMAT: local time
        "n3|Unknown|fleetwatch x\n"  # a time not given: counted, to be safe
        "n4|Unknown|none\n"
        "a reason's second line\n"
        "|1|fleetwatch x\n"
        "n5|garbled|fleetwatch x\n"
    )
    fleet = read_fleet(listing, T0 - 3600)
    assert fleet.nodes == {"n1", "n2", "n3", "n4", "n5"}
    assert fleet.drained == {"n1", "n2", "n3", "n5"}
    assert reason_time(local) == T0 - 10
    assert reason_time("Unknown") is None and reason_time("") is None


def test_a_fleet_slurm_cannot_give_is_a_slurm_error(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "a", ["n1"])
    fake.sinfo_fails()
    with pytest.raises(SlurmError, match=r"sinfo exited 1: .*Unable to contact slurm controller"):
        Slurm(SlurmConfig(scontrol=str(fake.path))).fleet(T0)
    hangs = FakeScontrol(tmp_path / "b", ["n1"])
    hangs.sinfo_hangs()
    with pytest.raises(SlurmError, match="timed out"):
        Slurm(SlurmConfig(scontrol=str(hangs.path), timeout_s=0.3)).fleet(T0)
    empty = FakeScontrol(tmp_path / "c", [])
    with pytest.raises(SlurmError, match="sinfo listed no nodes"):
        Slurm(SlurmConfig(scontrol=str(empty.path))).fleet(T0)

"""scontrol is run as an argument list, after the node name is checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.actions.slurm import NotAHostName, Slurm, SlurmConfig, SlurmError, reason
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
    fake = FakeScontrol(tmp_path)
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
    ["n1; touch pwned", "$(touch pwned)", "`id`", "gpu[1-8]", "a,b", "-h", "n 1", "n\n1", ""],
)
def test_a_node_name_that_is_not_a_host_name_is_refused_before_any_call(
    tmp_path: Path, node: str
) -> None:
    fake = FakeScontrol(tmp_path / "bin")
    with pytest.raises(NotAHostName):
        Slurm(SlurmConfig(scontrol=str(fake.path))).drain(node, "why")
    assert fake.calls() == []
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_reason_with_shell_syntax_arrives_as_one_argument(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path)
    why = "x $(touch pwned); `id` 'q' \"d\""
    Slurm(SlurmConfig(scontrol=str(fake.path))).drain("n1", why)
    assert fake.calls()[0][-1] == f"reason={why}"
    assert not (tmp_path / "pwned").exists()


def test_scontrol_refusing_is_a_slurm_error_with_its_message(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path)
    fake.fail_with(1)
    with pytest.raises(SlurmError, match="exited 1: slurm_update error: Invalid node name"):
        Slurm(SlurmConfig(scontrol=str(fake.path))).drain("n1", "why")


def test_a_missing_scontrol_is_a_slurm_error(tmp_path: Path) -> None:
    with pytest.raises(SlurmError):
        Slurm(SlurmConfig(scontrol=str(tmp_path / "nowhere"))).drain("n1", "why")

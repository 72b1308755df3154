"""Every simulated scenario, several seeds: replay finds the injected fault, and only it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetwatch.config import load
from fleetwatch.findings import Finding, Severity
from fleetwatch.replay import replay
from fleetwatch.simulate import SCENARIOS, Expected, simulate

pytestmark = pytest.mark.slow

SEEDS = (1, 7, 42)


def matches(finding: Finding, expected: Expected) -> bool:
    return (
        finding.detector == expected.detector
        and str(finding.action) == expected.action
        and (expected.node is None or finding.node == expected.node)
        and (expected.pci is None or finding.pci == expected.pci)
        and (expected.rank is None or finding.rank == expected.rank)
        and (expected.job is None or finding.job == expected.job)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_replay_finds_the_injected_fault_and_nothing_on_clean_nodes(
    tmp_path: Path, scenario: str, seed: int
) -> None:
    answer = simulate(scenario, tmp_path, seed=seed, nodes=4, lines_per_node=400)
    found = replay([str(tmp_path)], load(None))
    for expected in answer.expected:
        assert any(matches(f, expected) for f in found), (expected, [f.summary for f in found])
    loud = [f for f in found if f.severity > Severity.INFO]
    assert not [f for f in loud if f.node in answer.clean_nodes], [f.summary for f in loud]
    if scenario == "healthy":
        assert loud == []
    if scenario == "app-xid-job":
        assert not [f for f in found if f.action.takes_out_of_service]  # flags no node


def test_simulation_is_deterministic_and_writes_its_answer(tmp_path: Path) -> None:
    first = simulate("nccl-straggler", tmp_path / "a", seed=5, nodes=3, lines_per_node=50)
    again = simulate("nccl-straggler", tmp_path / "b", seed=5, nodes=3, lines_per_node=50)
    assert first == again
    for name in (
        "gpu-node-001/kern.log",
        "gpu-node-002/dcgm.prom",
        "job/rank-3.log",
        "answer.json",
    ):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    written = json.loads((tmp_path / "a" / "answer.json").read_text())
    assert written["expected"][0]["detector"] == "nccl_hang"
    assert written["expected"][0]["rank"] == first.expected[0].rank

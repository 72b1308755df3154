"""Every simulated scenario, several seeds: replay finds the injected fault, and only it;
the combined scenarios' findings link into the incidents their answer names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.config import load
from fleetwatch.findings import Finding, Severity
from fleetwatch.incidents import HARDWARE, link
from fleetwatch.replay import replay
from fleetwatch.simulate import ALL_SCENARIOS, Answer, Expected, simulate

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
@pytest.mark.parametrize("scenario", sorted(ALL_SCENARIOS))
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
    incidents = link(found)
    assert sorted(f.id for i in incidents for f in i.findings) == sorted(f.id for f in found)
    assert not [
        i for i in incidents if i.root_cause == HARDWARE and i.action.value == "restart_job"
    ]
    assert_incidents(answer, [i.to_json() for i in incidents], {f.id: f for f in found})


def assert_incidents(
    answer: Answer, printed: list[dict[str, Any]], findings: dict[str, Finding]
) -> None:
    """The incidents (their JSON form) link root and effects as the answer says, and
    the findings it names alone stand alone."""
    for expected in answer.incidents:
        roots = [i for i in printed if matches(findings[i["root"]], expected.root)]
        assert len(roots) == 1, (expected, [i["summary"] for i in printed])
        incident = roots[0]
        assert incident["rule"] == expected.rule and incident["action"] == expected.action
        effects = [findings[e] for e in incident["effects"]]
        for effect in expected.effects:
            assert any(matches(f, effect) for f in effects), (effect, incident["summary"])
        assert len(effects) == len(expected.effects), incident["summary"]
        if incident["root_cause"] == HARDWARE:
            assert incident["action"] != "restart_job"
    for single in answer.alone:
        alone = [i for i in printed if matches(findings[i["root"]], single)]
        assert len(alone) == 1 and alone[0]["effects"] == [], (single, alone)
        assert not [i for i in printed if any(matches(findings[e], single) for e in i["effects"])]


def test_replay_output_incidents_names_root_and_effects_as_the_answer_does(
    tmp_path: Path,
) -> None:
    """The command itself; the test above checks every combined scenario's incidents in
    this same form (``Incident.to_json``) for several seeds."""
    answer = simulate("xid79-hangs-nccl-job", tmp_path, seed=3, nodes=4, lines_per_node=50)
    assert answer.incidents and answer.alone  # a linked incident, and a decoy beside it
    command = [sys.executable, "-m", "fleetwatch", "replay", str(tmp_path), "--output"]
    printed = subprocess.run([*command, "incidents"], capture_output=True, text=True, check=True)
    by_id = {f.id: f for f in replay([str(tmp_path)], load(None))}
    incidents = [json.loads(line) for line in printed.stdout.splitlines()]
    assert_incidents(answer, incidents, by_id)
    for incident in incidents:  # the agreed form (docs/incidents.md), in order
        assert list(incident)[:16] == list(FORM) and incident["incident_id"].startswith("inc-")
        assert incident["finding_ids"] == [incident["root"], *incident["effects"]]


FORM = (
    "incident_id",
    "rule",
    "root_cause",
    "root",
    "effects",
    "finding_ids",
    "action",
    "severity",
    "nodes",
    "gpus",
    "first_ts",
    "last_ts",
    "clock",
    "summary",
    "status",
    "detectors",
)


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

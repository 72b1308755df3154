"""A finding's id does not depend on how its events were cut into batches.

A live watch reads what arrived since its last poll; after a restart it reads the
whole backlog at once. Either way an incident is the same incident: the id (detector,
entity, the time of its first evidence) must not change with the batch boundaries.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetwatch.config import build, load
from fleetwatch.engine import Engine
from fleetwatch.events import EventBatch, concat
from fleetwatch.simulate import SCENARIOS, simulate
from fleetwatch.sources import ReadOptions, read_paths


def incidents(batches: list[EventBatch]) -> set[tuple[str, str]]:
    engine = Engine(build(load(None)))
    found = engine.run(batches) + engine.finish(None)
    return {(f.id, f.detector) for f in found}


def cut(events: EventBatch, size: int) -> list[EventBatch]:
    return [events.take(slice(at, at + size)) for at in range(0, len(events), size)]


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "healthy"])
def test_ids_are_the_same_in_one_batch_and_in_many(tmp_path: Path, scenario: str) -> None:
    simulate(scenario, tmp_path, seed=3, nodes=2, lines_per_node=120)
    events = concat(list(read_paths([str(tmp_path)], ReadOptions(year=2024))))
    order = events["ts"].argsort(kind="stable")  # as replay merges them: in time order
    events = events.take(order)
    whole = incidents([events])
    assert whole
    for size in (3, 64):
        assert incidents(cut(events, size)) == whole, f"batches of {size}"


def test_two_memory_xids_of_one_gpu_are_one_incident_however_they_arrive(
    tmp_path: Path,
) -> None:
    log = tmp_path / "gpu-node-9" / "kern.log"
    log.parent.mkdir()
    log.write_text(
        "2026-11-30T08:00:00+00:00 gpu-node-9 kernel: NVRM: Xid (PCI:0000:5e:00): 92, "
        "pid=1, name=python, High single-bit ECC error rate\n"
        "2026-11-30T08:00:40+00:00 gpu-node-9 kernel: NVRM: Xid (PCI:0000:5e:00): 63, "
        "pid=1, name=python, ECC page retirement or row remapping recording event\n"
    )
    events = concat(list(read_paths([str(tmp_path)])))
    hbm = {i for i, d in incidents([events]) if d == "hbm_ecc"}
    assert len(hbm) == 1
    assert {i for i, d in incidents(cut(events, 1)) if d == "hbm_ecc"} == hbm

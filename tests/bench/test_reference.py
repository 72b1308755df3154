"""The shipped detectors find exactly what their plain per-event versions find."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.reference import PlainPodEvicted, PlainThermalThrottle

from fleetwatch.detectors.pod_evicted import PodEvicted
from fleetwatch.detectors.thermal_throttle import ThermalThrottle
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE
from fleetwatch.simulate import simulate
from tests.detectors.test_state import events_of

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("shipped", "plain", "scenario"),
    [
        (PodEvicted, PlainPodEvicted, "eviction-storm"),
        (PodEvicted, PlainPodEvicted, "xid79-fallen-off-bus"),
        (ThermalThrottle, PlainThermalThrottle, "thermal-cooling-fault"),
        (ThermalThrottle, PlainThermalThrottle, "healthy"),
    ],
)
@pytest.mark.parametrize("window", [BATCH_SIZE, 16])
def test_vectorised_and_plain_agree(
    tmp_path: Path, shipped: type, plain: type, scenario: str, window: int
) -> None:
    simulate(scenario, tmp_path, seed=9, nodes=3, lines_per_node=200)
    events = events_of(tmp_path)

    def run(cls: type) -> list[tuple[object, ...]]:
        chunks = [events.take(slice(i, i + window)) for i in range(0, len(events), window)]
        found = Engine([cls()]).run(chunks)
        # evidence is a capped sample: the same first and last records, not every line
        return [
            (f.id, f.count, f.severity, f.action, f.summary, f.evidence[0], f.evidence[-1])
            for f in found
        ]

    assert run(shipped) == run(plain)

"""A real watch links the findings it holds open into incidents, and says so.

The example of a GPU that fell off the bus (examples/xid79-fallen-off-bus: the Xid 79,
a fatal AER on the same GPU, the node's pods evicted) is followed from its start: the
watch logs the incident when it opens and as it grows, and ``fleetwatch findings
--output incidents`` lists it from the store, one incident of three findings.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.watch.live import Watcher, wait_for

pytestmark = pytest.mark.slow
FLEETWATCH = [sys.executable, "-m", "fleetwatch"]
EXAMPLE = Path(__file__).parents[2] / "examples" / "xid79-fallen-off-bus"


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_watch_logs_an_incident_as_it_grows_and_findings_lists_it(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    shutil.copytree(EXAMPLE, logs)
    store = tmp_path / "w.db"
    w = Watcher("--follow", str(logs), "--from-start", "--store", str(store))
    try:
        said = wait_for(
            lambda: [ln for ln in w.lines if " incident inc-" in ln and "3 findings" in ln],
            what="the incident of all three findings",
        )
    finally:
        assert w.stop() == 0
    told = [ln for ln in w.lines if " incident inc-" in ln]
    assert " new (hardware_on_gpu, " in told[0]
    assert "First, Xid 79 (GPU has fallen off the bus)" in said[0]
    assert "reboot_node" in said[0] and said[0].count("\n") == 1
    listed = subprocess.run(
        [*FLEETWATCH, "findings", "--store", str(store), "--output", "incidents"],
        capture_output=True,
        text=True,
        check=True,
    )
    (incident,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert incident["rule"] == "hardware_on_gpu" and incident["action"] == "reboot_node"
    assert incident["detectors"] == ["xid_correlation", "pcie_aer", "pod_evicted"]
    assert incident["incident_id"] in said[0] and incident["status"] == "open"

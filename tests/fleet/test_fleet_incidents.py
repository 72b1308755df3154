"""Fleet mode: the findings the correlators commit link into incidents as replay's do.

A simulated GPU fault that hangs a training job (``xid79-hangs-nccl-job``: its Xid on a
node, the job's NCCL logs, the cluster's evictions) is published by an agent to a real
``redis-server`` and correlated; ``fleetwatch findings --redis … --output incidents``
then prints the incidents of replay's findings of the same files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fleetwatch import config
from fleetwatch.fleet.agent import publish_end, publish_paths
from fleetwatch.fleet.check import committed
from fleetwatch.fleet.correlate import Correlator, Settings
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.transport import RedisStreams, connect
from fleetwatch.incidents import link
from fleetwatch.replay import replay
from fleetwatch.simulate import simulate

pytestmark = pytest.mark.slow
FLEETWATCH = [sys.executable, "-m", "fleetwatch"]
SHARDS = 4


def test_findings_from_redis_link_into_the_incidents_replay_gives(
    redis_url: str, tmp_path: Path
) -> None:
    simulate("xid79-hangs-nccl-job", tmp_path, seed=2, nodes=4, lines_per_node=20)
    transport, ledger = RedisStreams(connect(redis_url)), Ledger(connect(redis_url))
    publish_paths(transport, [str(tmp_path)], SHARDS, "a")
    publish_end(transport, SHARDS)
    worker = Correlator("c1", transport, ledger, config.load(None), Settings(SHARDS))
    for _ in range(1_000):
        if worker.step() == 0 and committed(transport, ledger, SHARDS):
            break
    listed = subprocess.run(
        [*FLEETWATCH, "findings", "--redis", redis_url, "--output", "incidents"],
        capture_output=True,
        text=True,
        check=True,
    )
    printed = [json.loads(line) for line in listed.stdout.splitlines()]
    expected = [i.to_json() for i in link(replay([str(tmp_path)], config.load(None)))]
    assert printed == expected
    assert [len(i["finding_ids"]) for i in printed] == [3, 1]  # the fault's, the decoy's

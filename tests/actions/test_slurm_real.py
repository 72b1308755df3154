"""Against a real slurmctld + slurmd on loopback: ``sinfo`` shows the node drained, our reason."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.actions.slurm import Slurm, SlurmConfig
from tests.actions.slurm_cluster import NODE, Cluster, missing, running
from tests.watch.live import Watcher, wait_for
from tests.watch.test_watch_trust import xid79

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if missing():
        pytest.skip(f"not installed: {', '.join(missing())} (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("slurmctld and slurmd run as root here (SlurmUser=root)")
    with running(tmp_path / "slurm") as started:
        yield started


def test_drain_drains_the_node_with_our_reason(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
    scontrol = shutil.which("scontrol")
    assert scontrol is not None
    Slurm(SlurmConfig(scontrol=scontrol)).drain(NODE, "fleetwatch xid_correlation-0123: test")
    wait_for(lambda: cluster.sinfo("%T|%E") == "drained|fleetwatch xid_correlation-0123: test",
             what=f"{NODE} drained: {cluster.sinfo('%T|%E')}")  # fmt: skip


def test_watch_act_slurm_drains_the_node_of_an_xid_79(cluster: Cluster, tmp_path: Path) -> None:
    log = tmp_path / "kern.log"
    log.write_text("")
    config = tmp_path / "fw.toml"
    config.write_text(f"[watch.slurm]\nscontrol = {json.dumps(shutil.which('scontrol'))}\n")
    w = Watcher("--config", str(config), "--follow", str(log), "--store",
                str(tmp_path / "w.db"), "--act", "slurm",
                env={"SLURM_CONF": str(cluster.conf)})  # fmt: skip
    try:
        with log.open("a") as out:
            out.write(xid79(NODE, "0000:41:00.0"))
        wait_for(lambda: cluster.sinfo("%T").startswith("drain"), what="the node drained")
    finally:
        assert w.stop() == 0
    state, reason = cluster.sinfo("%T|%E").split("|", 1)
    assert state in ("drained", "draining")
    assert reason.startswith("fleetwatch xid_correlation-")
    assert reason.endswith(" 0000:41:00.0")  # the GPU

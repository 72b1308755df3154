"""Against a real slurmctld + slurmd on loopback: ``sinfo`` shows the node drained, our reason."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.actions.slurm import Slurm, SlurmConfig
from tests.actions.slurm_cluster import NODE, Cluster, missing, running
from tests.actions.test_slurm_health import NOISE
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


def scontrol(cluster: Cluster, *args: str) -> None:
    subprocess.run(["scontrol", *args], env=cluster.env, check=True, timeout=10)


def test_slurm_health_drains_its_node_once_and_leaves_a_healthy_node_idle(
    cluster: Cluster, tmp_path: Path
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(NOISE.format(host=NODE))

    def health() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fleetwatch", "slurm-health", "--follow", str(log),
             "--from-start", "--store", str(tmp_path / "h.db"), "--act", "slurm"],
            env={**cluster.env, "SLURMD_NODENAME": NODE},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    healthy = health()
    assert (healthy.returncode, healthy.stdout) == (0, f"{NODE}: healthy\n"), healthy.stderr
    assert cluster.sinfo("%T") == "idle"
    with log.open("a") as out:
        out.write(xid79(NODE, "0000:41:00.0"))
    sick = health()
    assert sick.returncode == 1, sick.stderr
    assert sick.stdout.startswith(f"{NODE}: unhealthy: xid_correlation-")
    assert sick.stdout.endswith(": drained\n")
    state, reason = cluster.sinfo("%T|%E").split("|", 1)
    assert state in ("drained", "draining")
    finding_id = sick.stdout.split()[2]
    assert reason == f"fleetwatch {finding_id}: xid_correlation reboot_node 0000:41:00.0"

    scontrol(cluster, "update", f"nodename={NODE}", "state=resume")  # the operator's call
    wait_for(lambda: cluster.sinfo("%T") == "idle", what="the node resumed")
    again = health()  # nothing new: not read again, not drained again
    assert again.returncode == 1 and again.stdout == sick.stdout  # the finding is still open
    assert "read 1 file(s), 0 lines, 0 events" in again.stderr
    assert cluster.sinfo("%T") == "idle"


def test_slurmd_runs_slurm_health_as_its_health_check_program(tmp_path: Path) -> None:
    # slurmd runs it itself: as root, no arguments, SLURMD_NODENAME and no PATH in its
    # environment (hence the wrapper, and scontrol found in /usr/bin without PATH)
    if missing() or os.geteuid() != 0:
        pytest.skip("needs slurmctld, slurmd and munge, as root (see the cluster fixture)")
    log = tmp_path / "kern.log"
    log.write_text("")
    wrapper = tmp_path / "fleetwatch-health"
    fleetwatch = Path(sys.executable).parent / "fleetwatch"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"export SLURM_CONF={tmp_path / 'slurm' / 'slurm.conf'}\n"  # the test cluster's
        f"exec {fleetwatch} slurm-health --follow {log} --store {tmp_path / 'h.db'} --act slurm\n"
    )
    wrapper.chmod(0o755)
    extra = f"HealthCheckProgram={wrapper}\nHealthCheckInterval=1\n"
    with running(tmp_path / "slurm", extra) as cluster:  # its first run found the node healthy
        host = socket.gethostname().split(".", 1)[0]  # the kernel log names the host
        with log.open("a") as out:
            out.write(xid79(host, "0000:41:00.0"))
        wait_for(lambda: cluster.sinfo("%T").startswith("drain"), what="slurmd's health check")
        reason = cluster.sinfo("%E")
    assert reason.startswith("fleetwatch xid_correlation-") and reason.endswith(" 0000:41:00.0")

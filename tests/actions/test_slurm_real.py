"""Against a real slurmctld + slurmd on loopback: ``sinfo`` shows the node drained, our reason;
``ALL``, a ``NodeSet`` or an unknown name drains nothing; the breaker counts the drains
fleetwatch made on other nodes, read from Slurm."""

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
from click.testing import CliRunner, Result

from fleetwatch.actions.actor import Actor
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.slurm import Slurm, SlurmConfig
from fleetwatch.cli import cli
from fleetwatch.store import Store
from tests.actions.slurm_cluster import NODE, Cluster, missing, running
from tests.actions.test_actor import T0, ask, fault
from tests.actions.test_slurm_health import NOISE
from tests.watch.live import Watcher, wait_for
from tests.watch.test_watch_trust import xid79

# a real slurmctld + slurmd started by the tests: make test-e2e (CI installs Slurm)
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


# Two more nodes, never started (`unknown` to Slurm, but drainable, with a reason), and a
# NodeSet of all three: `nodename=fwset` is all three nodes to scontrol update.
MORE_NODES = """\
NodeName=fwnode[2-3] NodeAddr=127.0.0.1 CPUs=1 RealMemory=1 State=UNKNOWN
PartitionName=more Nodes=fwnode[2-3] State=UP
NodeSet=fwset Nodes=fwnode[1-3]
"""


def skip_unless_installed() -> None:
    if missing():
        pytest.skip(f"not installed: {', '.join(missing())} (apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("slurmctld and slurmd run as root here (SlurmUser=root)")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    skip_unless_installed()
    with running(tmp_path / "slurm") as started:
        yield started


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Cluster]:
    """The cluster with ``MORE_NODES``: three nodes, one of them running."""
    skip_unless_installed()
    with running(tmp_path / "slurm", MORE_NODES) as started:
        yield started


def reasons(cluster: Cluster) -> dict[str, str]:
    done = subprocess.run(["sinfo", "-h", "-N", "-o", "%N|%T|%E"], env=cluster.env,
                          capture_output=True, text=True, timeout=10, check=True)  # fmt: skip
    return {n: f"{state}|{why}" for n, state, why in (line.split("|", 2) for line in
                                                      done.stdout.splitlines())}  # fmt: skip


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


def test_all_a_nodeset_or_an_unknown_name_drains_nothing_and_is_refused(
    fleet: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(fleet.conf))
    before = reasons(fleet)
    assert before == {"fwnode1": "idle|none", "fwnode2": "unknown|none", "fwnode3": "unknown|none"}
    store = Store(tmp_path / "w.db")
    names = ["ALL", "all", "All", "fwset", "nosuch"]
    ask(store, [fault(n) for n in names], nodes=["fwnode1", *names])
    executable = shutil.which("scontrol")
    assert executable is not None
    breaker = BreakerConfig(max_nodes=10, max_percent=100.0)
    actor = Actor(store, breaker, "slurm", SlurmConfig(scontrol=executable))
    assert actor.run(T0, set()) == []
    rows = {r.node: r for r in store.actions()}
    assert {n: r.outcome for n, r in rows.items()} == dict.fromkeys(names, "refused")
    assert rows["ALL"].detail.startswith("node name is not a Slurm node name (Slurm reads ALL")
    assert rows["fwset"].detail == "Slurm knows no node 'fwset': not drained"
    assert rows["nosuch"].detail == "Slurm knows no node 'nosuch': not drained"
    assert reasons(fleet) == before  # every node as it was: fwnode1 idle
    # the premise: to scontrol update, fwset is its three nodes
    scontrol(fleet, "update", "nodename=fwset", "state=drain", "reason=premise")
    assert {n: r.split("|")[1] for n, r in reasons(fleet).items()} == dict.fromkeys(
        before, "premise"
    )


def test_the_breaker_counts_fleetwatchs_drains_on_other_nodes_and_holds_the_third(
    fleet: Cluster, tmp_path: Path
) -> None:
    # fwnode2's own fleetwatch drained it within the hour, an operator drained fwnode3:
    # fwnode1's health check, breaker at 2, may drain one more node
    log = tmp_path / "kern.log"
    log.write_text(xid79(NODE, "0000:41:00.0"))
    config = tmp_path / "fw.toml"
    config.write_text("[watch.breaker]\nmax_nodes = 2\nmax_percent = 100.0\n")

    def health(store: str) -> Result:  # in this process; scontrol and sinfo are real
        return CliRunner().invoke(
            cli,
            ["slurm-health", "--follow", str(log), "--from-start", "--store",
             str(tmp_path / store), "--config", str(config), "--act", "slurm"],
            env={"SLURM_CONF": str(fleet.conf), "SLURMD_NODENAME": NODE},
        )  # fmt: skip

    fleetwatch = "reason=fleetwatch xid_correlation-0123: xid_correlation reboot_node"
    scontrol(fleet, "update", "nodename=fwnode2", "state=drain", fleetwatch)
    scontrol(fleet, "update", "nodename=fwnode3", "state=drain", "reason=operator: fan swap")
    drains = health("a.db")
    assert drains.exit_code == 1 and drains.stdout.endswith(": drained\n"), drains.stderr
    assert reasons(fleet)["fwnode1"].startswith("drained|fleetwatch xid_correlation-")

    scontrol(fleet, "update", f"nodename={NODE}", "state=resume")  # the operator's call
    wait_for(lambda: reasons(fleet)["fwnode1"] == "idle|none", what="fwnode1 resumed")
    scontrol(fleet, "update", "nodename=fwnode3", "state=drain", fleetwatch)  # now two
    held = health("b.db")  # a store that has seen nothing: the count is Slurm's
    assert held.exit_code == 1, held.stderr
    assert held.stdout.endswith(
        ": held back by the breaker"
        " (2 of 2 node(s) drained by fleetwatch in the last 3600 s (3 in Slurm))\n"
    ), held.stdout
    assert reasons(fleet)["fwnode1"] == "idle|none"

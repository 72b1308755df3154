"""``fleetwatch slurm-health``, run after run over one store, with a fake scontrol on disk.

Against a real slurmctld + slurmd, in real processes: ``test_slurm_real.py``.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from fleetwatch.cli import cli
from tests.actions.fake_scontrol import FakeScontrol
from tests.inputs.test_quiet_tail import FATAL_AER
from tests.watch.test_watch_trust import xid79

NOISE = "2024-06-04T10:29:40+00:00 {host} kernel: usb 1-1: new high-speed USB device\n"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def health(tmp_path: Path, *args: str, env: dict[str, str | None] | None = None) -> Ran:
    """One run over the same store, as slurmd makes them (in this process: the real
    processes run in ``test_slurm_real.py``, slurmd's own included)."""
    done = CliRunner().invoke(
        cli,
        ["slurm-health", "--store", str(tmp_path / "h.db"), "--config", str(tmp_path / "fw.toml"),
         *args],
        env={"SLURMD_NODENAME": None, **(env or {})},  # None: not set
    )  # fmt: skip
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return Ran(done.exit_code, done.stdout, done.stderr)


@pytest.fixture
def fake(tmp_path: Path) -> FakeScontrol:
    scontrol = FakeScontrol(tmp_path / "bin", ["gpu-node-7", "fwnode9", "gpu-node-8", "gpu-node-9"])
    (tmp_path / "fw.toml").write_text(
        f"[watch.slurm]\nscontrol = {json.dumps(str(scontrol.path))}\n"
    )
    return scontrol


def outcomes(tmp_path: Path) -> list[str]:
    with sqlite3.connect(tmp_path / "h.db") as db:
        return [outcome for (outcome,) in db.execute("SELECT outcome FROM actions")]


def test_a_dry_run_says_what_it_would_drain_and_the_first_run_that_acts_drains_once(
    tmp_path: Path, fake: FakeScontrol
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(NOISE.format(host="gpu-node-7") + xid79("gpu-node-7", "0000:41:00.0"))
    args = ("--follow", str(log), "--from-start", "--node", "gpu-node-7")
    dry = health(tmp_path, *args)
    assert dry.returncode == 1, dry.stderr
    (line,) = dry.stdout.splitlines()
    assert line.startswith("gpu-node-7: unhealthy: xid_correlation-")
    assert "(critical, reboot_node, gpu 0000:41:00.0)" in line
    assert line.endswith(": dry run: would drain (--act slurm drains)")
    assert fake.calls() == [] and outcomes(tmp_path) == ["would_act"]

    acted = health(tmp_path, *args, "--act", "slurm")  # the finding the dry run decided
    assert acted.returncode == 1, acted.stderr
    assert acted.stdout.endswith(": drained\n")
    (call,) = fake.updates()
    assert call[:3] == ["update", "nodename=gpu-node-7", "state=drain"]
    finding_id = line.split()[2]
    assert call[3] == f"reason=fleetwatch {finding_id}: xid_correlation reboot_node 0000:41:00.0"
    assert "read 1 file(s), 0 lines, 0 events" in acted.stderr  # its lines were read once

    again = health(tmp_path, *args, "--act", "slurm")
    assert again.returncode == 1 and again.stdout == acted.stdout  # still open: unhealthy
    assert len(fake.updates()) == 1 and outcomes(tmp_path) == ["acted"]  # never drained again


def test_healthy_exits_0_and_each_run_reads_only_what_came_after_the_last(
    tmp_path: Path, fake: FakeScontrol
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(xid79("gpu-node-7", "0000:41:00.0"))  # history before the first run
    args = ("--follow", str(log), "--node", "gpu-node-7", "--act", "slurm")
    first = health(tmp_path, *args)
    assert (first.returncode, first.stdout) == (0, "gpu-node-7: healthy\n"), first.stderr
    with log.open("a") as out:
        out.write(NOISE.format(host="gpu-node-7"))
        out.write(FATAL_AER.replace("[ ", "2024-06-04T10:30:00+00:00 gpu-node-7 kernel: [ "))
    noted = health(tmp_path, *args)  # a record held at the end is read in the same run
    assert noted.returncode == 0, noted.stderr
    assert "read 1 file(s), 5 lines, 1 events" in noted.stderr  # the new lines alone
    assert "gpu-node-7: open, not draining: pcie_aer-" in noted.stdout
    assert "(critical, inspect_pcie, gpu 10003:01:00.0)" in noted.stdout
    with log.open("a") as out:
        out.write(xid79("gpu-node-7", "0000:41:00.0"))
    sick = health(tmp_path, *args)
    assert sick.returncode == 1, sick.stderr
    assert "read 1 file(s), 1 lines, 1 events" in sick.stderr
    assert [c[1] for c in fake.updates()] == ["nodename=gpu-node-7"]


def test_slurmd_names_the_node_and_a_shared_log_drains_only_this_one(
    tmp_path: Path, fake: FakeScontrol
) -> None:
    # slurmd gives SLURMD_NODENAME; the kernel log names the host, which may differ
    host = socket.gethostname().split(".", 1)[0]
    log = tmp_path / "kern.log"
    log.write_text(xid79(host, "0000:41:00.0") + xid79("other-node", "0000:3b:00.0"))
    done = health(tmp_path, "--follow", str(log), "--from-start", "--act", "slurm",
                  env={"SLURMD_NODENAME": "fwnode9"})  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert [c[1] for c in fake.updates()] == ["nodename=fwnode9"]
    assert done.stdout.startswith("fwnode9: unhealthy: xid_correlation-")
    assert (
        "fleetwatch: 1 open finding(s) name other nodes, never drained from here: other-node"
        in (done.stderr)
    )


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        ((), {}, "slurm-health: nothing to read: give --kmsg and/or --follow PATH"),
        (("--kmsg", "--node", "gpu[1-8]"), {}, "node name 'gpu[1-8]' is not a Slurm node name"),
        (
            ("--kmsg",),
            {"SLURMD_NODENAME": "a;reboot"},
            "node name 'a;reboot' is not a Slurm node name",
        ),
        (("--kmsg", "--node", "ALL"), {}, "node name 'ALL' is not a Slurm node name"),
        (("--kmsg",), {"SLURMD_NODENAME": "all"}, "node name 'all' is not a Slurm node name"),
        (("--kmsg", "--config", "/no/such.toml"), {}, "cannot read /no/such.toml"),
    ],
)
def test_a_usage_or_config_error_is_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], said: str
) -> None:
    runner = CliRunner()
    done = runner.invoke(cli, ["slurm-health", "--store", str(tmp_path / "h.db"), *args], env=env)
    assert done.exit_code == 2
    assert done.stderr.startswith("fleetwatch: error: ") and said in done.stderr
    assert done.stderr.count("\n") == 1
    assert not (tmp_path / "h.db").exists()


def test_the_breaker_counts_the_drains_other_nodes_made_and_holds_this_one(
    tmp_path: Path, fake: FakeScontrol
) -> None:
    # every node's health check sees only itself; Slurm's reasons say that two other
    # nodes were drained by fleetwatch within the hour: with the breaker at 2, this
    # node's drain is held back (the exit is 1 all the same: the node is unhealthy)
    with (tmp_path / "fw.toml").open("a") as config:
        config.write("[watch.breaker]\nmax_nodes = 2\nmax_percent = 100.0\n")
    now = time.time()
    fake.set_reason("gpu-node-8", "fleetwatch xid_correlation-8: xid_correlation reboot_node", now)
    fake.set_reason("gpu-node-9", "fleetwatch xid_correlation-9: xid_correlation reboot_node", now)
    log = tmp_path / "kern.log"
    log.write_text(xid79("gpu-node-7", "0000:41:00.0"))
    args = ("--follow", str(log), "--from-start", "--node", "gpu-node-7", "--act", "slurm")
    held = health(tmp_path, *args)
    assert held.returncode == 1, held.stderr
    assert held.stdout.endswith(
        ": held back by the breaker"
        " (2 of 2 node(s) drained by fleetwatch in the last 3600 s (4 in Slurm))\n"
    )
    assert fake.updates() == [] and outcomes(tmp_path) == ["held"]
    assert "breaker: held back reboot_node of gpu-node-7" in held.stderr


def test_when_slurm_cannot_be_asked_the_drain_waits_for_the_next_run(
    tmp_path: Path, fake: FakeScontrol
) -> None:
    log = tmp_path / "kern.log"
    log.write_text(xid79("gpu-node-7", "0000:41:00.0"))
    args = ("--follow", str(log), "--from-start", "--node", "gpu-node-7", "--act", "slurm")
    fake.sinfo_fails()
    blind = health(tmp_path, *args)
    assert blind.returncode == 1, blind.stderr
    assert (
        ": held back by the breaker (Slurm could not be asked for the fleet's drains (sinfo "
        in (blind.stdout)
    )
    assert fake.updates() == [] and outcomes(tmp_path) == ["held"]
    (tmp_path / "bin" / "sinfo.exit").unlink()  # Slurm answers again
    again = health(tmp_path, *args)
    assert again.returncode == 1 and again.stdout.endswith(": drained\n"), again.stderr
    assert [c[1] for c in fake.updates()] == ["nodename=gpu-node-7"]

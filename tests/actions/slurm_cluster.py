"""A real one-node Slurm cluster on loopback: munged, slurmctld and slurmd in a folder.

Everything lives under the test's folder (key, sockets, state, logs) and listens on
127.0.0.1 ports picked free; ``SLURM_CONF`` points the client commands at it. A test
that needs it is skipped, with the reason, where the Debian packages (slurmctld,
slurmd, slurm-client, munge) are not installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "scontrol", "sinfo")
NODE = "fwnode1"


def missing() -> list[str]:
    """The programs this cluster needs that are not installed."""
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin") for name in DAEMONS}
    return [name for name, path in found.items() if path is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _conf(folder: Path, host: str) -> str:
    return f"""\
ClusterName=fleetwatch
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/sock
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/linear
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=1 RealMemory=1 State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""


class Cluster:
    """The running cluster: ``conf`` (the slurm.conf) and ``env`` (for client commands)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def sinfo(self, fmt: str) -> str:
        done = subprocess.run(
            ["sinfo", "-h", "-n", NODE, "-o", fmt],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.folder.glob("*.log"))
        )


def _wait(check: Callable[[], object], timeout: float, what: str, cluster: Cluster) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{cluster.logs()}")


@contextmanager
def running(folder: Path, extra: str = "") -> Iterator[Cluster]:
    """Start munged, slurmctld and slurmd in ``folder``; stop them on the way out.

    ``extra``: more slurm.conf lines (``HealthCheckProgram=...``)."""
    folder.mkdir(mode=0o755)  # munged wants its socket's folders searchable by all
    for sub in ("munge", "state", "spool"):
        (folder / sub).mkdir(mode=0o755)
    key = folder / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname().split(".")[0]
    cluster = Cluster(folder)
    cluster.conf.write_text(_conf(folder, host) + extra)
    sbin = "/usr/sbin"
    munge = folder / "munge"
    commands = [
        [
            shutil.which("munged", path=sbin) or "munged",
            "-F",
            "-f",  # force: pytest's folders above ours are not searchable by all
            f"--key-file={key}",
            f"--socket={munge}/sock",
            f"--pid-file={munge}/pid",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/seed",
        ],
        [shutil.which("slurmctld", path=sbin) or "slurmctld", "-D", "-i", "-f", str(cluster.conf)],
        [shutil.which("slurmd", path=sbin) or "slurmd", "-D", "-N", NODE, "-f", str(cluster.conf)],
    ]
    started: list[subprocess.Popen[bytes]] = []
    try:
        for i, argv in enumerate(commands):
            with (folder / f"{Path(argv[0]).name}.stderr.log").open("wb") as out:
                started.append(
                    subprocess.Popen(argv, env=cluster.env, stdout=out, stderr=subprocess.STDOUT)
                )
            if i == 0:
                _wait((munge / "sock").exists, 10, "munged's socket", cluster)
        _wait(lambda: cluster.sinfo("%T") == "idle", 30, "the node to be idle", cluster)
        yield cluster
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in reversed(started):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

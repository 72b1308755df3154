"""``make fleet-check``: fleet mode under failures equals a single-process replay.

On a throwaway loopback ``redis-server``: every simulated scenario on one fleet of 4
nodes, split between two agents; three correlators. While agent ``a`` publishes, one
correlator is killed (SIGKILL) and another paused (SIGSTOP) past its lease, then
resumed; a fourth joins before agent ``b`` publishes. When every shard is committed the
findings must equal ``replay`` of the same files in every field, and each (finding,
transition) must have been announced once. It prints::

    fleet-check: F findings, lost 0, doubled 0, refused stale commits C

and exits 1 when anything was lost, doubled or different.

The split: agent ``a`` holds nodes 001-002, the NCCL job and the cluster watcher's
Kubernetes events; ``b`` nodes 003-004. Each entity's events then come from one agent,
which fleet mode needs until correlators merge agents by event time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from fleetwatch import config
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import NoRedisServer, redis_server, wait_for
from fleetwatch.fleet.transport import BEGINNING, RedisStreams, connect
from fleetwatch.replay import replay
from fleetwatch.simulate import SCENARIOS, simulate

SHARDS = 8
LEASE_MS = 1000
_AGENT_A = frozenset({"gpu-node-001", "gpu-node-002", "job", "cluster"})


def simulated_fleet(root: Path, lines_per_node: int = 2000) -> dict[str, list[str]]:
    """Every scenario on one 4-node fleet under ``root``, as two agents' folders.

    The agents' folders hold links to the simulated files, so a replay of both reads
    the same files, by the same names, as the agents.
    """
    for scenario in SCENARIOS:
        simulate(scenario, root / "sim" / scenario, nodes=4, lines_per_node=lines_per_node)
        for sub in sorted((root / "sim" / scenario).iterdir()):
            if sub.is_dir():
                target = root / ("a" if sub.name in _AGENT_A else "b") / scenario / sub.name
                target.mkdir(parents=True)
                for file in sorted(sub.iterdir()):
                    os.symlink(file, target / file.name)
    return {"a": [str(root / "a")], "b": [str(root / "b")]}


def committed(transport: RedisStreams, ledger: Ledger, shards: int) -> bool:
    """Every shard committed up to its newest entry."""
    for shard in range(shards):
        saved = ledger.load(shard)
        if transport.last(shard) != (saved["offset"] if saved else BEGINNING):
            return False
    return True


def compare(
    got: list[dict[str, Any]], expected: list[dict[str, Any]], transitions: list[dict[str, Any]]
) -> tuple[int, int]:
    """(lost: replay's findings missing or different, doubled: repeated announcements)."""

    # the fleet's rows carry their lifecycle status (resolved when quiet); replay's are open
    def plain(f: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in f.items() if k != "status"}

    have = {f["id"]: plain(f) for f in got}
    lost = sum(have.get(f["id"]) != plain(f) for f in expected)
    lost += max(0, len(got) - len(expected))
    told = Counter((t["id"], t["transition"]) for t in transitions)
    return lost, sum(n - 1 for n in told.values())


def main() -> int:
    fleetwatch = [sys.executable, "-m", "fleetwatch"]
    with tempfile.TemporaryDirectory() as folder:
        fleet = simulated_fleet(Path(folder))
        expected = [f.to_json() for f in replay(fleet["a"] + fleet["b"], config.load(None))]
        try:
            with redis_server() as url:
                client = connect(url)
                transport, ledger = RedisStreams(client), Ledger(client)
                common = ["--redis", url, "--shards", str(SHARDS)]
                workers: dict[str, subprocess.Popen[bytes]] = {}

                def start(name: str) -> None:
                    command = [*fleetwatch, "correlate", *common, "--worker", name]
                    workers[name] = subprocess.Popen([*command, "--lease-ms", str(LEASE_MS)])

                def owns(name: str) -> int:
                    tokens = (ledger.owner(s) or "" for s in range(SHARDS))
                    return sum(t.startswith(name + "/") for t in tokens)

                try:
                    for name in ("c1", "c2", "c3"):
                        start(name)
                    wait_for(lambda: all(owns(n) for n in ("c1", "c2", "c3")), what="3 owners")
                    agent_a = subprocess.Popen([*fleetwatch, "agent", *common, *fleet["a"]])
                    wait_for(lambda: ledger.load(0) is not None or agent_a.poll() is not None)
                    workers["c1"].kill()  # SIGKILL while it works
                    os.kill(workers["c2"].pid, signal.SIGSTOP)
                    wait_for(lambda: owns("c2") == 0, what="c2's leases to pass")
                    wait_for(lambda: owns("c3") == SHARDS, what="c3 to take every shard")
                    os.kill(workers["c2"].pid, signal.SIGCONT)
                    start("c4")
                    if agent_a.wait() != 0:
                        raise RuntimeError("agent a failed")
                    subprocess.run([*fleetwatch, "agent", *common, *fleet["b"]], check=True)
                    subprocess.run([*fleetwatch, "agent", *common, "--end"], check=True)
                    wait_for(lambda: committed(transport, ledger, SHARDS), 120, "every commit")
                    got, told = ledger.findings(), ledger.transitions()
                    refused = ledger.counter("refused")
                finally:
                    for proc in workers.values():
                        proc.terminate()
                    for proc in workers.values():
                        proc.wait(10)
        except NoRedisServer as exc:
            print(f"fleet-check: {exc}")
            return 2
    lost, doubled = compare(got, expected, told)
    print(
        f"fleet-check: {len(got)} findings, lost {lost}, doubled {doubled}, "
        f"refused stale commits {refused}"
    )
    return 1 if lost or doubled else 0


if __name__ == "__main__":
    sys.exit(main())

"""``make fleet-demo``: a whole fleet on this machine, started and stopped in one go.

A throwaway ``redis-server`` on loopback (``local``), two correlators, two agents over
the bundled ``examples/`` (then ``--end``: the input is finite), the findings as a
table, and everything stopped, whatever happens.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fleetwatch.fleet.check import committed
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import NoRedisServer, redis_server, wait_for
from fleetwatch.fleet.transport import RedisStreams, connect

SHARDS = 4


def main(examples: Path = Path("examples")) -> int:
    incidents = sorted(str(p) for p in examples.iterdir() if p.is_dir())
    halves = [incidents[: len(incidents) // 2], incidents[len(incidents) // 2 :]]
    fleetwatch = [sys.executable, "-m", "fleetwatch"]
    try:
        with redis_server() as url:
            client = connect(url)
            transport, ledger = RedisStreams(client), Ledger(client)
            common = ["--redis", url, "--shards", str(SHARDS)]
            workers = [
                subprocess.Popen([*fleetwatch, "correlate", *common, "--worker", name])
                for name in ("c1", "c2")
            ]
            try:
                for n, paths in enumerate(halves, 1):
                    if paths:
                        agent = [*fleetwatch, "agent", *common, "--name", f"agent-{n}"]
                        subprocess.run([*agent, *paths], check=True)
                subprocess.run([*fleetwatch, "agent", *common, "--end"], check=True)
                wait_for(lambda: committed(transport, ledger, SHARDS), 60, "every commit")
                subprocess.run([*fleetwatch, "findings", "--redis", url, "--output", "table"])
                print(
                    f"fleet-demo: {len(ledger.findings())} findings, "
                    f"{len(ledger.transitions())} transitions, "
                    f"{ledger.counter('refused')} refused stale commits"
                )
            finally:  # the correlators first (they give their leases back), redis last
                for proc in workers:
                    proc.terminate()
                for proc in workers:
                    proc.wait(10)
    except NoRedisServer as exc:
        print(f"fleet-demo: {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

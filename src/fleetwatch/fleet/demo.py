"""``make fleet-demo``: a whole fleet on this machine, started and stopped in one go.

A ``redis-server`` on a free loopback port (no persistence, in a temporary folder),
two correlators, two agents over the bundled ``examples/`` (then ``--end``: the input
is finite), the findings as a table, and everything stopped, whatever happens. Every
wait is for a condition (PING answered, shards committed), never a fixed sleep.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SHARDS = 4
_NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _until(condition: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"fleet-demo: timed out waiting for {what}")
        time.sleep(0.05)


def main(examples: Path = Path("examples")) -> int:
    server = shutil.which("redis-server")
    if server is None:
        print("fleet-demo: redis-server is missing (apt-get install -y redis-server)")
        return 2
    from fleetwatch.fleet.ledger import Ledger
    from fleetwatch.fleet.transport import RedisStreams, connect

    incidents = sorted(str(p) for p in examples.iterdir() if p.is_dir())
    fleetwatch = [sys.executable, "-m", "fleetwatch"]
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        port = _port()
        url = f"redis://127.0.0.1:{port}/0"
        started.append(
            subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", *_NO_PERSISTENCE],
                cwd=folder,
                stdout=subprocess.DEVNULL,
            )
        )
        try:
            _until(lambda: _answers(url), "redis-server")
            client = connect(url)
            transport, ledger = RedisStreams(client), Ledger(client)
            for name in ("c1", "c2"):
                started.append(
                    subprocess.Popen(
                        [
                            *fleetwatch,
                            "correlate",
                            "--redis",
                            url,
                            "--shards",
                            str(SHARDS),
                            "--worker",
                            name,
                        ]
                    )
                )
            halves = (incidents[: len(incidents) // 2 or 1], incidents[len(incidents) // 2 :])
            for n, paths in enumerate(halves, 1):
                if paths:
                    agent = [*fleetwatch, "agent", "--redis", url, "--shards", str(SHARDS)]
                    subprocess.run([*agent, "--name", f"agent-{n}", *paths], check=True)
            subprocess.run(
                [*fleetwatch, "agent", "--redis", url, "--shards", str(SHARDS), "--end"],
                check=True,
            )

            def committed() -> bool:
                for shard in range(SHARDS):
                    saved = ledger.load(shard)
                    if transport.last(shard) != (saved["offset"] if saved else "0-0"):
                        return False
                return True

            _until(committed, "the correlators to commit every shard")
            subprocess.run([*fleetwatch, "findings", "--redis", url, "--output", "table"])
            print(
                f"fleet-demo: {len(ledger.findings())} findings, "
                f"{len(ledger.transitions())} transitions, "
                f"{ledger.counter('refused')} refused stale commits"
            )
        finally:  # the correlators first (they give their leases back), redis last
            for proc in reversed(started):
                proc.terminate()
                proc.wait(10)
    return 0


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.ConnectionError:
        return False


if __name__ == "__main__":
    sys.exit(main())

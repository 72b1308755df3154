"""``make fleet-demo``: a whole fleet on this machine, started and stopped in one go.

A throwaway ``redis-server`` on loopback (``local``), two correlators, an announcer
(``fleetwatch announce``: the fleet's transitions on this console and in a JSONL
file), and two live agents (``fleetwatch agent --follow``), each following half of
the bundled ``examples/`` from their start, as a node's agent follows its logs. When
each agent has committed every file to its end and sent everything, every shard is
committed and the announcer has told the whole output stream, it prints the findings
as a table and whether they are the findings ``replay`` gives on the same files (by
id: exit 1 if not), and everything is stopped, whatever happens.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import closing
from pathlib import Path
from typing import Any

from fleetwatch import config
from fleetwatch.fleet.check import committed
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import NoRedisServer, redis_server, wait_for
from fleetwatch.fleet.transport import RedisStreams, connect
from fleetwatch.replay import replay

SHARDS = 4


def read_to_end(store: Path, files: list[Path]) -> bool:
    """The agent's store committed every file to its end, and holds nothing for Redis."""
    if not store.exists():
        return False
    with closing(sqlite3.connect(store, timeout=30)) as db:
        try:
            rows = db.execute("SELECT position FROM positions").fetchall()
            kept = db.execute("SELECT count(*) FROM uplink").fetchone()[0]
        except sqlite3.OperationalError:  # the agent has not made its tables yet
            return False
    offsets: dict[str, int] = {}
    for (text,) in rows:
        for path, position in json.loads(text).items():
            offsets[path] = position.get("offset", -1)
    return kept == 0 and all(offsets.get(str(f)) == f.stat().st_size for f in files)


def told_all(client: Any, group: str) -> bool:
    """The announcers' group has read and acknowledged every transition."""
    stream = "fleetwatch:out"
    if not client.exists(stream):
        return False
    last = client.xinfo_stream(stream)["last-generated-id"]
    groups = {g["name"]: g for g in client.xinfo_groups(stream)}
    mine = groups.get(group.encode())
    return mine is not None and mine["last-delivered-id"] == last and mine["pending"] == 0


def main(examples: Path = Path("examples")) -> int:
    incidents = sorted(p.resolve() for p in examples.iterdir() if p.is_dir())
    halves = [incidents[: len(incidents) // 2], incidents[len(incidents) // 2 :]]
    fleetwatch = [sys.executable, "-m", "fleetwatch"]
    expected = {f.id for f in replay([str(p) for p in incidents], config.load(None))}
    try:
        with redis_server() as url, tempfile.TemporaryDirectory() as folder:
            client: Any = connect(url)  # replies as Any: see ``transport.RedisStreams``
            transport, ledger = RedisStreams(client), Ledger(client)
            common = ["--redis", url, "--shards", str(SHARDS)]
            jsonl = Path(folder) / "fleet.jsonl"
            started = [
                subprocess.Popen([*fleetwatch, "correlate", *common, "--worker", name])
                for name in ("c1", "c2")
            ]
            announce = [*fleetwatch, "announce", "--redis", url, "--jsonl", str(jsonl)]
            started.append(subprocess.Popen([*announce, "--consumer", "a1"]))
            agents: list[tuple[Path, list[Path]]] = []
            try:
                for n, paths in enumerate(halves, 1):
                    if not paths:
                        continue
                    store = Path(folder) / f"agent-{n}.db"
                    follow = [f"--follow={p}" for p in paths]
                    command = [*fleetwatch, "agent", *common, "--name", f"agent-{n}", *follow]
                    command += ["--from-start", "--store", str(store), "--quiet"]
                    started.append(subprocess.Popen(command))
                    files = sorted(f for p in paths for f in p.rglob("*") if f.is_file())
                    agents.append((store, files))
                wait_for(
                    lambda: all(read_to_end(store, files) for store, files in agents),
                    120,
                    "the agents to read and send every file",
                )
                wait_for(lambda: committed(transport, ledger, SHARDS), 60, "every commit")
                wait_for(lambda: told_all(client, "announce"), 60, "the announcer")
                subprocess.run([*fleetwatch, "findings", "--redis", url, "--output", "table"])
                told = len(jsonl.read_text().splitlines()) if jsonl.exists() else 0
                ids = {f["id"] for f in ledger.findings()}
                print(
                    f"fleet-demo: {len(ids)} findings ({'the same' if ids == expected else 'NOT'}"
                    f" as replay of the same files), {len(ledger.transitions())} transitions, "
                    f"{told} told by the announcer, "
                    f"{ledger.counter('refused')} refused stale commits"
                )
            finally:  # agents and correlators first (they give their leases back), redis last
                for proc in started:
                    proc.terminate()
                for proc in started:
                    proc.wait(10)
    except NoRedisServer as exc:
        print(f"fleet-demo: {exc}")
        return 2
    return 0 if ids == expected else 1


if __name__ == "__main__":
    sys.exit(main())

"""Live agents (``fleetwatch agent --follow``) and a correlator, as processes, on a real
redis-server that is down when the agents start and restarted mid-run; one agent is
killed with SIGKILL while Redis is down and started again.

The agents keep what they send in their stores and send it once Redis answers; the
correlator reconnects. The fleet then holds what one process finds: the job's
application Xid on all 16 GPUs once each (the cluster family, on the correlator), the
memory fault of gpu-node-002 (the node family, found by that node's agent), each
transition on the output stream once.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from fleetwatch import config
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import NoRedisServer, free_port, start_redis, wait_for
from fleetwatch.fleet.transport import connect
from fleetwatch.replay import replay
from fleetwatch.simulate import simulate

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
FLEETWATCH = [sys.executable, "-m", "fleetwatch"]
SHARDS = 4


def kept(store: Path) -> int:
    """Rows an agent's store holds for Redis."""
    if not store.exists():
        return 0
    with closing(sqlite3.connect(store, timeout=30)) as db:
        try:
            return int(db.execute("SELECT count(*) FROM uplink").fetchone()[0])
        except sqlite3.OperationalError:  # not created yet
            return 0


def test_live_agents_keep_what_they_send_while_redis_is_down(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    simulate("app-xid-job", tmp_path / "xid", nodes=2, lines_per_node=200)
    simulate("dbe-row-remap", tmp_path / "dbe", nodes=2, lines_per_node=200)
    expected = {f.detector: f for f in replay([str(tmp_path / "xid")], config.load(None))}
    (tmp_path / "redis").mkdir()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    try:
        server = start_redis(str(tmp_path / "redis"), port, persistent=True)
    except NoRedisServer as exc:
        pytest.skip(str(exc))
    common = ["--redis", url, "--shards", str(SHARDS)]
    try:
        processes.append(subprocess.Popen([*FLEETWATCH, "correlate", *common, "--worker", "c1"]))
        first = Ledger(connect(url))
        wait_for(lambda: first.owner(0) is not None, what="the correlator to take shards")
        server.kill()  # down before any agent sends
        server.wait()

        def agent(node: str) -> subprocess.Popen[bytes]:
            inputs = [f"--follow={tmp_path / s / node}" for s in ("xid", "dbe")]
            command = [*FLEETWATCH, "agent", *common, "--name", node, *inputs, "--from-start"]
            command += ["--store", str(tmp_path / f"{node}.db"), "--quiet"]
            return subprocess.Popen(command, stderr=subprocess.DEVNULL)

        processes += [agent("gpu-node-001"), agent("gpu-node-002")]
        stores = [tmp_path / "gpu-node-001.db", tmp_path / "gpu-node-002.db"]
        wait_for(lambda: all(kept(s) for s in stores), 60, "both agents to keep rows")
        processes[1].kill()  # kill -9 an agent holding unsent rows
        processes[1].wait()
        processes.append(agent("gpu-node-001"))
        server = start_redis(str(tmp_path / "redis"), port, persistent=True)
        ledger = Ledger(connect(url))

        def found() -> dict[str, dict[str, object]]:
            return {f["detector"]: f for f in ledger.findings()}

        wait_for(
            lambda: (
                not any(kept(s) for s in stores)
                and found().get("xid_correlation", {}).get("count") == 16
                and "hbm_ecc" in found()
            ),
            120,
            "the kept rows to arrive and be correlated",
        )
        xid = found()["xid_correlation"]
        assert (xid["job"], xid["code"], xid["nodes"]) == (
            expected["xid_correlation"].job,
            31,
            ["gpu-node-001", "gpu-node-002"],
        )
        assert found()["hbm_ecc"]["node"] == "gpu-node-002"
        told = Counter((t["id"], t["transition"]) for t in ledger.transitions())
        assert told and max(told.values()) == 1
        assert all(p.poll() is None for p in (processes[0], processes[2], processes[3]))
    finally:
        server.terminate()
        server.wait()

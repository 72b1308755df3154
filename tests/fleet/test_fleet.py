"""Fleet mode on a real redis-server: agents + correlators find what replay finds.

(a) two agents and two correlators equal a single-process replay (every field of
    every finding: id, severity, action, count, evidence, summary); (b) a correlator killed with SIGKILL mid-run: its shards move when
    its lease expires, nothing is lost or doubled; (c) a worker paused between reading
    and committing, past its lease: its commit is refused and counted, and the result
    is still exact; (d) Redis killed and restarted (with its append-only file): the
    correlator reconnects and nothing is lost.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetwatch import config
from fleetwatch.fleet.agent import publish_end, publish_paths
from fleetwatch.fleet.correlate import Correlator, Settings
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.local import free_port, start_redis
from fleetwatch.fleet.transport import Entry, RedisStreams, connect
from fleetwatch.replay import replay
from tests.fleet.conftest import wait_for

SHARDS = 8
# minutes of real processes against a real redis-server: make test-e2e (CI runs it);
# make test keeps the fleet's fast tests (codec, shards, the CLI, incidents)
pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def key(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings as replay prints them (id, severity, action, count, evidence, summary…),
    without the fleet's lifecycle status (replay has none)."""
    rows = [{k: v for k, v in f.items() if k != "status"} for f in findings]
    return sorted(rows, key=lambda f: str(f["id"]))


@pytest.fixture(scope="module")
def expected(fleet: dict[str, list[str]]) -> list[dict[str, Any]]:
    found = replay(fleet["a"] + fleet["b"], config.load(None))
    assert len(found) >= 10  # the scenarios' faults, not an empty fleet
    return key([f.to_json() for f in found])


def done(transport: RedisStreams, ledger: Ledger) -> bool:
    """Every shard committed up to its newest entry."""
    for shard in range(SHARDS):
        saved = ledger.load(shard)
        if transport.last(shard) != (saved["offset"] if saved else "0-0"):
            return False
    return True


def no_doubles(ledger: Ledger) -> None:
    told = Counter((t["id"], t["transition"]) for t in ledger.transitions())
    assert told and max(told.values()) == 1


def test_two_agents_two_correlators_equal_replay(
    redis_url: str, fleet: dict[str, list[str]], expected: list[dict[str, Any]]
) -> None:
    transport, ledger = RedisStreams(connect(redis_url)), Ledger(connect(redis_url))
    publish_paths(transport, fleet["a"], SHARDS, "a")
    publish_paths(transport, fleet["b"], SHARDS, "b")
    publish_end(transport, SHARDS)
    workers = [
        Correlator(n, transport, ledger, config.load(None), Settings(SHARDS)) for n in ("c1", "c2")
    ]
    for _ in range(10_000):
        if sum(w.step() for w in workers) == 0 and done(transport, ledger):
            break
    assert {len(w.owned) for w in workers} == {SHARDS // 2}  # a fair share each
    assert key(ledger.findings()) == expected
    no_doubles(ledger)
    # what is committed is trimmed: Redis keeps only what is not yet applied
    assert sum(transport.client.xlen(f"fleetwatch:in:{s}") for s in range(SHARDS)) == 0


def correlator(redis_url: str, name: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "fleetwatch", "correlate", "--redis", redis_url]
    command += ["--shards", str(SHARDS), "--worker", name, "--lease-ms", "600"]
    return subprocess.Popen(command, stderr=subprocess.DEVNULL)


def test_a_killed_correlator_loses_and_doubles_nothing(
    redis_url: str,
    fleet: dict[str, list[str]],
    expected: list[dict[str, Any]],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    transport, ledger = RedisStreams(connect(redis_url)), Ledger(connect(redis_url))
    processes += [correlator(redis_url, "c1"), correlator(redis_url, "c2")]

    def owns(name: str) -> list[int]:
        return [s for s in range(SHARDS) if (ledger.owner(s) or "").startswith(name)]

    wait_for(lambda: len(owns("c1")) == len(owns("c2")) == SHARDS // 2, what="a fair share each")
    publish_paths(transport, fleet["a"], SHARDS, "a")
    os.kill(processes[0].pid, signal.SIGKILL)  # while it works on agent a's entries
    publish_paths(transport, fleet["b"], SHARDS, "b")
    publish_end(transport, SHARDS)
    wait_for(lambda: len(owns("c2")) == SHARDS, what="c2 to take c1's shards")
    wait_for(lambda: done(transport, ledger), what="every shard committed")
    assert key(ledger.findings()) == expected
    no_doubles(ledger)


class Pausing(RedisStreams):
    """Reads, then runs ``during`` before the reader can commit: a paused worker."""

    during: Any = None

    def read(self, shards: Mapping[int, str], count: int, block_ms: int) -> dict[int, list[Entry]]:
        got = super().read(shards, count, block_ms)
        if got and self.during is not None:
            during, self.during = self.during, None
            during()
        return got


def test_a_paused_workers_late_commit_is_refused(
    redis_url: str, fleet: dict[str, list[str]], expected: list[dict[str, Any]]
) -> None:
    client = connect(redis_url)
    transport, ledger = RedisStreams(client), Ledger(client)
    publish_paths(transport, fleet["a"] + fleet["b"], SHARDS, "ab")
    publish_end(transport, SHARDS)
    configs = config.load(None)
    slow = Pausing(client)
    paused = Correlator("paused", slow, ledger, configs, Settings(SHARDS, lease_ms=300))
    other = Correlator("other", transport, ledger, configs, Settings(SHARDS, lease_ms=300))
    paused.balance()
    assert len(paused.owned) == SHARDS

    def pause_past_the_lease() -> None:
        wait_for(lambda: all(ledger.owner(s) is None for s in range(SHARDS)), what="expiry")
        other.step()  # takes the shards and commits its first reads

    slow.during = pause_past_the_lease
    paused.work()
    # (on a loaded machine ``other`` may also lose a 300 ms lease now and then)
    assert paused.refused >= 1 and ledger.counter("refused") >= paused.refused
    assert not paused.owned  # it dropped the shards whose commit was refused
    for _ in range(10_000):
        if other.step() == 0 and done(transport, ledger):
            break
    assert key(ledger.findings()) == expected
    no_doubles(ledger)


def test_a_correlator_rides_out_a_redis_restart(
    tmp_path: Path,
    fleet: dict[str, list[str]],
    expected: list[dict[str, Any]],
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Redis with an append-only file, killed and started again mid-run: the correlator
    reconnects, retakes its shards from their last commit, and nothing is lost."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(str(tmp_path), port, persistent=True)
    try:
        processes.append(correlator(url, "c1"))
        transport, ledger = RedisStreams(connect(url)), Ledger(connect(url))
        publish_paths(transport, fleet["a"], SHARDS, "a")
        server.kill()  # while the correlator works on agent a's entries
        server.wait()
        server = start_redis(str(tmp_path), port, persistent=True)
        transport, ledger = RedisStreams(connect(url)), Ledger(connect(url))
        publish_paths(transport, fleet["b"], SHARDS, "b")
        publish_end(transport, SHARDS)
        wait_for(lambda: done(transport, ledger), what="every shard committed")
        assert processes[0].poll() is None  # it did not die with Redis
        assert key(ledger.findings()) == expected
        no_doubles(ledger)
    finally:
        server.terminate()
        server.wait()


def test_a_shard_behind_commits_on_its_interval_and_one_caught_up_at_once(
    redis_url: str, fleet: dict[str, list[str]]
) -> None:
    client = connect(redis_url)
    transport, ledger = RedisStreams(client), Ledger(client)
    publish_paths(transport, fleet["a"], 1, "a")
    commits: list[str] = []
    commit = ledger.commit

    def counted(shard: int, token: str, state: dict[str, Any], *rest: Any) -> bool:
        commits.append(state["offset"])
        return commit(shard, token, state, *rest)

    ledger.commit = counted  # type: ignore[method-assign,assignment]
    hour = 3_600_000
    worker = Correlator("w", transport, ledger, config.load(None), Settings(1, 60_000, 4, hour))
    worker.balance()
    assert worker.work() == 0 and ledger.load(0) is None  # behind: applied, not committed
    for _ in range(10_000):
        if worker.work():
            break
    assert commits == [transport.last(0)]  # one commit, once caught up
    saved = ledger.load(0)
    assert saved is not None and saved["offset"] == transport.last(0)

    publish_end(transport, 1)  # a quiet shard's new entry is committed by the next read
    assert worker.work() == 1 and commits[-1] == transport.last(0)

"""A real ``redis-server`` on loopback for each test, and a small simulated fleet.

The server runs with no persistence in a temporary folder on a free port; the fixture
waits for its PING (no fixed sleep) and stops it afterwards. Without ``redis-server``
on the PATH the fleet tests are skipped with the reason (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from fleetwatch.simulate import SCENARIOS, simulate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "") -> None:
    """Return once ``condition()`` holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return proc.poll() is not None  # it died: stop waiting, fail below

    wait_for(answers, 10, "redis-server to answer PING")
    assert proc.poll() is None, "redis-server exited"
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every simulated scenario on one fleet of 4 nodes, split between two agents.

    Agent ``a`` holds nodes 001-002, the NCCL job and the cluster watcher's Kubernetes
    events; agent ``b`` nodes 003-004. Each entity's events come from one agent: what
    fleet mode needs to equal replay until correlators merge agents by event time.
    """
    root = tmp_path_factory.mktemp("fleet")
    for scenario in SCENARIOS:
        simulate(scenario, root / "sim" / scenario, nodes=4, lines_per_node=200)
    for scenario in SCENARIOS:
        for sub in sorted((root / "sim" / scenario).iterdir()):
            if not sub.is_dir():
                continue
            agent = "a" if sub.name in ("gpu-node-001", "gpu-node-002", "job", "cluster") else "b"
            target = root / agent / scenario / sub.name
            target.mkdir(parents=True)
            for file in sub.iterdir():
                os.symlink(file, target / file.name)
    return {"a": [str(root / "a")], "b": [str(root / "b")]}

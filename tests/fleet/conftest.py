"""A real ``redis-server`` on loopback for each test, and a small simulated fleet.

The server runs with no persistence in a temporary folder on a free port
(``fleet.local``); it answers PING before a test starts. Without ``redis-server`` on
the PATH the fleet tests are skipped with the reason (``.ci/run`` installs it).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from fleetwatch.fleet.check import simulated_fleet
from fleetwatch.fleet.local import NoRedisServer, free_port, redis_server, wait_for

__all__ = ["free_port", "wait_for"]


@pytest.fixture
def redis_url() -> Iterator[str]:
    try:
        with redis_server() as url:
            yield url
    except NoRedisServer as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every simulated scenario on one fleet of 4 nodes, split between two agents."""
    return simulated_fleet(tmp_path_factory.mktemp("fleet"), lines_per_node=200)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; any still running afterwards is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

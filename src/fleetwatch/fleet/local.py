"""A throwaway ``redis-server`` on loopback, for ``make fleet-demo``, ``fleet-check``
and the tests: a free port, no persistence, a temporary folder, stopped after.

Every wait is for a condition (the server answers PING), never a fixed sleep.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis


class NoRedisServer(RuntimeError):
    """``redis-server`` is not on the PATH."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "") -> None:
    """Return once ``condition()`` holds; ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def start_redis(folder: str, port: int, persistent: bool = False) -> subprocess.Popen[bytes]:
    """``redis-server`` on ``127.0.0.1:port`` with its files in ``folder``; answering.

    ``persistent``: an append-only file synced on every write, so a restart in the
    same folder keeps everything (what a fleet's Redis should run with).
    """
    server = shutil.which("redis-server")
    if server is None:
        raise NoRedisServer("redis-server is not installed (apt-get install -y redis-server)")
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += (
        ["--appendonly", "yes", "--appendfsync", "always"]
        if persistent
        else [
            "--appendonly",
            "no",
        ]
    )
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {proc.returncode}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, 10, "redis-server to answer PING")
    except BaseException:
        proc.kill()
        raise
    finally:
        client.close()
    return proc


@contextmanager
def redis_server() -> Iterator[str]:
    """Start ``redis-server`` on a free loopback port; yield its URL; stop it."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        proc = start_redis(folder, port)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)

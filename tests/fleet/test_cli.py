"""The fleet commands read like the others: examples, exit codes, 80 columns, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.fleet.conftest import free_port


def fleetwatch(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "80"}
    command = [sys.executable, "-m", "fleetwatch", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


@pytest.mark.parametrize("command", ["agent", "correlate", "findings", "announce"])
def test_help_has_examples_and_exit_codes_and_fits_80_columns(command: str) -> None:
    done = fleetwatch(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Examples:" in done.stdout and "Exit codes:" in done.stdout
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["agent", "--shards", "4", "examples"],
        ["correlate", "--shards", "4"],
        ["findings"],
        ["announce"],
    ],
)
def test_no_redis_is_one_line_and_exit_2(args: list[str]) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    done = fleetwatch(*args, "--redis", url)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert url in done.stderr


def test_agent_without_paths_or_end_is_a_usage_error() -> None:
    done = fleetwatch("agent", "--shards", "4")
    assert done.returncode == 2 and "--end" in done.stderr


def test_agent_files_and_live_inputs_together_is_a_usage_error() -> None:
    done = fleetwatch("agent", "--shards", "4", "examples", "--follow", "examples")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "not both" in done.stderr


def test_announce_with_a_webhook_that_is_not_http_is_a_usage_error() -> None:
    done = fleetwatch("announce", "--webhook", "file:///etc/passwd")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr

"""A full disk costs no finding and leaves no torn line: the watch waits for room.

The watch runs under a file-size limit (``RLIMIT_FSIZE``), which makes its writes fail
as a full disk does, part-way through a line or a SQLite page. Its commits then fail;
it says so once, keeps what it read, and tries again. Killed there and started again
with room, it goes on: every finding is in the JSONL once, and every line is whole.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from fleetwatch.config import load
from fleetwatch.replay import replay
from fleetwatch.sources import ReadOptions
from tests.watch.live import Watcher, caught_up, wait_for

pytestmark = pytest.mark.slow


def xids(count: int) -> str:
    return "".join(
        f"2026-11-30T08:{i // 60 % 60:02d}:{i % 60:02d}+00:00 gpu-node-{i} kernel: NVRM: Xid "
        f"(PCI:0000:3b:00): 79, pid={i}, name=python, GPU has fallen off the bus.\n"
        for i in range(count)
    )


def limited(size: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))


@pytest.mark.parametrize(
    ("limit", "fails"),
    [(96 << 10, "JSONL"), (400 << 10, "store")],
    ids=["the-jsonl-write-fails", "the-store-commit-fails"],
)
@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_full_disk_keeps_what_was_read_and_a_restart_with_room_goes_on(
    tmp_path: Path, limit: int, fails: str
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log = logs / "kern.log"
    log.write_text(xids(300))
    store, jsonl = tmp_path / "w.db", tmp_path / "f.jsonl"
    args = ["--follow", str(logs), "--from-start", "--store", str(store), "--jsonl", str(jsonl)]
    full = subprocess.Popen(
        [sys.executable, "-m", "fleetwatch", "watch", "--quiet", *args],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: limited(limit),  # set in the child alone
    )
    assert full.stderr is not None
    said = full.stderr.readline()
    while "cannot commit" not in said:
        assert said, "the watch ended without saying it could not commit"
        said = full.stderr.readline()
    assert f"cannot commit ({fails}" in said
    full.send_signal(signal.SIGKILL)
    full.wait()
    full.stderr.close()
    lines = jsonl.read_bytes().split(b"\n")
    assert lines[-1] == b""  # no torn line: the file ends with a whole one
    assert all(json.loads(line) for line in lines[:-1])

    again = Watcher(*args)
    try:
        wait_for(lambda: caught_up(store, logs), timeout=60, what="catching up with room")
    finally:
        assert again.stop() == 0
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    told = Counter((r["id"], r["transition"]) for r in records)
    expected = replay([str(logs)], load(None), ReadOptions())
    # 300 nodes of Xid 79s: the dry run's breaker_open too (a replay has no breaker)
    assert {k for k, _ in told if not k.startswith("breaker-")} == {f.id for f in expected}
    assert max(told.values()) == 1  # none twice
    assert os.path.getsize(jsonl) == sum(len(line) + 1 for line in jsonl.read_bytes().splitlines())

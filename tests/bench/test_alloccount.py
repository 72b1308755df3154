"""The allocation counter counts exactly, and the same call counts the same every time."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from bench.harness import quiet_gc

import alloccount
from fleetwatch.events import BatchBuilder, EventBatch


def counted(call: object) -> int:
    assert callable(call)
    call()  # warm: first calls fill caches
    with quiet_gc():
        alloccount.start()
        call()
        return int(alloccount.stop())


def test_what_each_domain_allocates_is_counted_once() -> None:
    assert counted(lambda: None) == 0
    # a list: its object and item array, and what the collect before counting took from
    # the free lists; the same every time
    assert {counted(lambda: [None] * 10) for _ in range(3)} == {4}
    # a 10 kB str goes through pymalloc to the raw allocator: one allocation, not two
    assert counted(lambda: "x" * 10_000) == 1
    # a NumPy array: its object, and its data buffer through NumPy's handler
    assert counted(lambda: np.empty(1_000_000)) == 2


def test_start_and_stop_pair_up() -> None:
    alloccount.start()
    with pytest.raises(RuntimeError):
        alloccount.start()
    alloccount.stop()
    with pytest.raises(RuntimeError):
        alloccount.stop()


def _batch() -> EventBatch:
    builder = BatchBuilder()
    for i in range(1024):
        builder.add(
            {
                "kind": "xid" if i % 50 == 0 else "temperature",
                "source": "dcgm",
                "line": i,
                "ts": 1_700_000_000.0 + i,
                "clock": "wall",
                "node": f"n{i % 4}",
                "pci": f"0000:{i % 8:02x}:00.0",
                "code": 79 if i % 50 == 0 else None,
                "value": 60.0,
            }
        )
    return builder.seal()


def test_the_same_call_counts_the_same_run_after_run() -> None:
    """Within one process the counter repeats exactly for code without caches.

    Library code with module caches and CPython's free lists (a detector) can differ by
    a few allocations between calls in one process; that is why the harness runs each
    benchmark in a fresh process, where the count repeats exactly (the test below).
    """

    def work() -> object:
        return [np.zeros(100) for _ in range(50)], [str(i) * 3 for i in range(200)], {"k": [1]}

    counts = [counted(work) for _ in range(5)]
    assert len(set(counts)) == 1 and counts[0] > 250


PROGRAM = """
import alloccount
from bench.harness import quiet_gc
from tests.bench.test_alloccount import _batch
from fleetwatch.detectors.xid_correlation import XidCorrelation
batch, detector = _batch(), XidCorrelation()
detector.process(batch)
with quiet_gc():
    alloccount.start(); detector.process(batch); print(alloccount.stop())
"""


@pytest.mark.slow
def test_the_same_call_counts_the_same_process_after_process() -> None:
    env_run = [sys.executable, "-c", PROGRAM]
    counts = {
        subprocess.run(
            env_run,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={"PYTHONHASHSEED": "0", "PATH": ""},
        ).stdout.strip()
        for _ in range(3)
    }
    assert len(counts) == 1 and int(counts.pop()) > 0

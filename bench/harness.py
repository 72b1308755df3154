"""The benchmarks: one per detector, one per reader, each a deterministic workload.

Detector benchmarks (``bench_<detector>``) feed the detector what it sees in a busy
fleet: every simulated fault scenario's events merged and time-sorted (healthy
background in real formats, the faults included), cut to the kinds it reads, in
windows of ``window`` events after a warm-up. Reader benchmarks (``bench_read_<reader>``)
read a realistic input of that format, where most lines match nothing, and count per
line.

Each measurement is allocations (exact, ``alloccount``: the same number every run for
the same interpreter and NumPy) and time. ``measure`` runs each benchmark in a fresh
process with ``PYTHONHASHSEED=0``: CPython's free lists and NumPy's caches remember
what ran before, and a reused object is no allocation, so only a fresh process with a
fixed hash seed repeats its count exactly.

``python -m bench.harness NAME WINDOW`` runs one benchmark and prints it as JSON;
``python -m bench.harness --timings`` times every benchmark (one sample for gate 2);
``python -m bench.harness --instructions``, run under callgrind, counts their
instructions (gate 2's deterministic metric).
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, Final

import numpy as np

import alloccount
from fleetwatch.config import load
from fleetwatch.detectors import REGISTRY
from fleetwatch.events import KIND_ID, EventBatch, concat
from fleetwatch.replay import Window, anchor, select
from fleetwatch.simulate import SCENARIOS, simulate
from fleetwatch.sources import ReadOptions, ReadStats, read_paths

WARMUP_WINDOWS = 5
MEASURED_WINDOWS = 40


@contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect now and keep the cyclic collector off while counting.

    When the collector runs depends on every allocation since the process started
    (a first run that compiles bytecode allocates more), and a collection inside a
    measured call changes what the call reuses: off, the count repeats exactly.
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(frozen=True)
class Measurement:
    """One benchmark's result."""

    name: str
    window: int
    allocs_per_op: float
    allocs_per_event: float
    ns_per_event: float


# The scenarios the ceilings were first measured on, in their seed order; a scenario
# added later takes the next seed, so the fleets (and ceilings) of these stay as they were.
_FIRST_FLEET: Final = (
    "aer-storm",
    "app-xid-job",
    "dbe-row-remap",
    "eviction-storm",
    "healthy",
    "nccl-straggler",
    "nvlink-storm",
    "remap-failure",
    "thermal-cooling-fault",
    "xid79-fallen-off-bus",
)


def _fleet_order() -> list[str]:
    first = [name for name in _FIRST_FLEET if name in SCENARIOS]
    return first + sorted(name for name in SCENARIOS if name not in _FIRST_FLEET)


@cache
def fleet_events() -> EventBatch:
    """Every fault scenario's events, merged in time order (the busy fleet)."""
    parts = []
    with tempfile.TemporaryDirectory(prefix="fleetwatch-bench-") as tmp:
        for seed, scenario in enumerate(_fleet_order(), start=1000):
            folder = Path(tmp) / scenario
            simulate(scenario, folder, seed=seed, nodes=3, lines_per_node=300)
            stats = ReadStats()
            events = concat(list(read_paths([str(folder)], stats=stats)))
            anchor(events, stats.boot_anchors)
            parts.append(events)
    return select(concat(parts), Window())


def detector_windows(name: str, window: int) -> list[EventBatch]:
    """The windows a detector benchmark feeds: its kinds only, cycled to fill enough."""
    spec = REGISTRY[name]
    events = fleet_events()
    mine = events.take(np.flatnonzero(np.isin(events["kind"], [KIND_ID[k] for k in spec.kinds])))
    wanted = (WARMUP_WINDOWS + MEASURED_WINDOWS) * window
    rows = np.resize(np.arange(len(mine)), wanted)  # cycle through the mix
    every = mine.take(rows)
    return [every.take(slice(i, i + window)) for i in range(0, wanted, window)]


PLAIN = {"pod_evicted": "PlainPodEvicted", "thermal_throttle": "PlainThermalThrottle"}


def warmed_detector(name: str, window: int, plain: bool = False) -> tuple[Any, list[EventBatch]]:
    """A detector after its warm-up windows, and the windows to measure it on.

    ``plain``: its per-event reference version (``bench/reference.py``) instead.
    """
    windows = detector_windows(name, window)
    if plain:
        from bench import reference

        detector = getattr(reference, PLAIN[name])(load(None)[name])
    else:
        detector = REGISTRY[name].factory(load(None)[name])
    for batch in windows[:WARMUP_WINDOWS]:
        detector.process(batch)
    return detector, windows[WARMUP_WINDOWS:]


def bench_detector(name: str, window: int, plain: bool = False) -> Measurement:
    """Run one detector over its mix; count allocations and time per window."""
    detector, windows = warmed_detector(name, window, plain)
    allocs: list[int] = []
    nanos: list[int] = []
    with quiet_gc():
        for batch in windows:
            alloccount.start()
            detector.process(batch)
            allocs.append(alloccount.stop())
    for batch in windows:
        start = time.perf_counter_ns()
        detector.process(batch)
        nanos.append(time.perf_counter_ns() - start)
    per_op = sum(allocs) / len(allocs)
    label = f"plain_{name}" if plain else f"bench_{name}"
    return Measurement(label, window, per_op, per_op / window, statistics.median(nanos) / window)


# --- readers ------------------------------------------------------------------------------


def _kmsg_input() -> bytes:
    from bench.parse_throughput import generate

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kern.log"
        generate(path, 20_000, seed=7)
        return path.read_bytes()


def _fleet_file(scenario: str, relative: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        simulate(scenario, Path(tmp), seed=3, nodes=2, lines_per_node=100)
        return (Path(tmp) / relative).read_bytes()


def _smi_input() -> bytes:
    report = (
        Path(__file__).resolve().parent.parent / "tests" / "data" / "h100" / "nvidia-smi-q.txt"
    ).read_bytes()
    return report * 40  # a bug report's worth of -q snapshots


def _jsonl_input() -> bytes:
    from fleetwatch.events import concat as join

    with tempfile.TemporaryDirectory() as tmp:
        simulate("thermal-cooling-fault", Path(tmp), seed=3, nodes=1, lines_per_node=100)
        batch = join(list(read_paths([str(Path(tmp) / "gpu-node-001" / "dcgm.prom")])))
    return "".join(json.dumps(r) + "\n" for r in batch.records()).encode()


READER_INPUTS: dict[str, Callable[[], bytes]] = {
    "smi": _smi_input,
    "jsonl": _jsonl_input,
    "kmsg": _kmsg_input,
    "dcgm": lambda: _fleet_file("healthy", "gpu-node-001/dcgm.prom"),
    "k8s": lambda: _fleet_file("eviction-storm", "cluster/events.jsonl") * 50,
    "nccl": lambda: _fleet_file("nccl-straggler", "job/rank-0.log") * 200,
}


# A line no reader claims: what most of a node's logs are (another program's output).
NOISE_LINE: Final = b"2026-12-02T08:00:00.000Z trainer[4121]: step 1200 loss 2.31 tokens/s 41250\n"


@contextmanager
def reader_input(
    name: str, noise: int = 0, one_chunk: bool = False
) -> Iterator[tuple[Callable[[], int], int]]:
    """A warmed-up call that reads a realistic input of one format (after ``noise``
    lines no reader claims) and returns how many events it read, and the line count.
    ``one_chunk``: read it in one chunk, whatever its size."""
    data = NOISE_LINE * noise + READER_INPUTS[name]()
    options = ReadOptions(chunk_bytes=len(data) + 1) if one_chunk else None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(data)

        def read() -> int:
            return sum(len(batch) for batch in read_paths([str(path)], options))

        read()  # warm-up: caches, the prefilter, imports
        yield read, data.count(b"\n")


def _counted(read: Callable[[], int]) -> tuple[int, int]:
    """The allocations of one read, and the events it gave."""
    with quiet_gc():
        alloccount.start()
        events = read()
        allocs = alloccount.stop()
    return allocs, events


def bench_reader(name: str, repeat: int = 5) -> Measurement:
    """Read a realistic input of one format; count allocations and time per line."""
    with reader_input(name) as (read, lines):
        allocs, _ = _counted(read)
        nanos = []
        for _ in range(repeat):
            start = time.perf_counter_ns()
            read()
            nanos.append(time.perf_counter_ns() - start)
    return Measurement(
        f"bench_read_{name}", 1, allocs, allocs / lines, statistics.median(nanos) / lines
    )


def bench_reader_record(name: str) -> Measurement:
    """Allocations per record (per event read) of the same input as ``bench_reader``."""
    with reader_input(name) as (read, _):
        allocs, events = _counted(read)
    return Measurement(f"bench_read_{name}_record", 1, allocs, allocs / events, 0.0)


def bench_reader_noise(name: str, noise: int = 10_000) -> Measurement:
    """Allocations per line no reader claims, in steady state: the input after
    ``2 * noise`` noise lines, less the input after ``noise`` (what the first noise
    lines cost once, such as a record's nearest stamp changing, cancels out). Each is
    read in one chunk: what a chunk costs (its read, its prefilter call) is the
    stream's, not a line's, and where chunks end would move with the noise."""
    counts = []
    for lines in (noise, 2 * noise):
        with reader_input(name, noise=lines, one_chunk=True) as (read, _):
            counts.append(_counted(read)[0])
    extra = counts[1] - counts[0]
    return Measurement(f"bench_read_{name}_noise", 1, extra, max(extra, 0) / noise, 0.0)


def instructions() -> list[tuple[str, int]]:
    """Each gated benchmark's measured span once, inside ``alloccount.measured``.

    Run under ``valgrind --tool=callgrind --toggle-collect=alloccount_measured
    --dump-after=alloccount_measured`` (``bench/delta.py --metric instructions``), each
    call leaves one dump with the instructions of that span alone. Returns each
    benchmark's ``name@window`` and its number of events (lines for readers), in the
    order of the dumps.
    """
    done: list[tuple[str, int]] = []
    for detector in REGISTRY:
        for window in (1024, 16):
            machine, windows = warmed_detector(detector, window)

            def run(machine: Any = machine, windows: list[EventBatch] = windows) -> None:
                for batch in windows:
                    machine.process(batch)

            with quiet_gc():
                alloccount.measured(run)
            done.append((f"bench_{detector}@{window}", sum(len(w) for w in windows)))
    for reader in READER_INPUTS:
        with reader_input(reader) as (read, lines), quiet_gc():
            alloccount.measured(read)
        done.append((f"bench_read_{reader}@1", lines))
    return done


def all_benchmarks() -> dict[tuple[str, int], Callable[[], Measurement]]:
    """Every benchmark this harness knows, by (name, window)."""
    known: dict[tuple[str, int], Callable[[], Measurement]] = {}
    for detector in REGISTRY:
        for window in (1024, 16):
            known[f"bench_{detector}", window] = partial(bench_detector, detector, window)
    for reader in READER_INPUTS:
        known[f"bench_read_{reader}", 1] = partial(bench_reader, reader)
        known[f"bench_read_{reader}_record", 1] = partial(bench_reader_record, reader)
        known[f"bench_read_{reader}_noise", 1] = partial(bench_reader_noise, reader)
    for detector in PLAIN:  # the per-event references, for comparison; not gated
        known[f"plain_{detector}", 1024] = partial(bench_detector, detector, 1024, True)
    return known


def known() -> list[tuple[str, int]]:
    """Every benchmark this harness can run, as (name, window)."""
    return list(all_benchmarks())


def measure(name: str, window: int) -> Measurement | None:
    """Run one benchmark in a fresh process; None if it produced no measurement."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "bench.harness", name, str(window)],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
        timeout=600,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        return None
    return Measurement(**json.loads(done.stdout))


def timings() -> dict[str, float]:
    """ns/event of every benchmark, all in this process: one sample for gate 2.

    Time, unlike allocation counts, does not depend on what ran before in a way that
    matters, so one process serves every benchmark and the fleet is built once.
    """
    return {
        f"{name}@{window}": run().ns_per_event
        for (name, window), run in all_benchmarks().items()
        if name.startswith("bench_")  # the per-event references are not gated
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["--timings"]:
        print(json.dumps(timings()))
        sys.exit(0)
    if sys.argv[1:] == ["--instructions"]:
        print(json.dumps(instructions()))
        sys.exit(0)
    wanted = (sys.argv[1], int(sys.argv[2]))
    run = all_benchmarks().get(wanted)
    if run is None:
        sys.exit(f"no benchmark {wanted[0]} at window {wanted[1]}")
    result = run()
    print(json.dumps(result.__dict__))

"""Streaming replay feeds the engine what sorting every event at once fed it, in bounded memory.

The reference is the replay that read every input into one batch, anchored it, sorted
it and cut it into batches (``one_sort`` below, kept here as it was). Replay now spills
sorted runs and merges them; the engine must see the same batches, column by column
and string by string, so the findings are the same down to their evidence. Small
``Limits`` make even small inputs take every path: many runs, merges of merges, pieces
that cut through ties.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetwatch import replay as replay_module
from fleetwatch.config import build, load
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE, CLOCK_ID, EventBatch, concat
from fleetwatch.merge import Keyed, merge
from fleetwatch.records import ROW, to_records
from fleetwatch.replay import Limits, Window, anchor, replay, replay_batches
from fleetwatch.simulate import simulate
from fleetwatch.sources import ReadOptions, ReadStats, read_paths
from fleetwatch.timestamps import parse_zone

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ReadOptions(year=2024, zone=parse_zone("UTC"))
TINY = Limits(spill_events=64, piece_events=16, fan_in=3)
LIMITS = (Limits(), TINY, Limits(spill_events=1, piece_events=1, fan_in=2))
START = 1717495200.0  # 2024-06-04T10:00:00Z


def one_sort(paths: list[str], window: Window) -> list[EventBatch]:
    """The batches replay fed the engine before it streamed (its code, as it was)."""
    stats = ReadStats()
    events = concat(list(read_paths(paths, OPTIONS, stats)))
    anchor(events, stats.boot_anchors)
    keep = np.ones(len(events), dtype=bool)
    ts = events["ts"]
    wall = events["clock"] == CLOCK_ID["wall"]
    if window.since is not None:
        keep &= ~wall | (ts >= window.since)
    if window.until is not None:
        keep &= ~wall | (ts <= window.until)
    if window.node is not None:
        ids = [i for i, s in enumerate(events.strings) if s == window.node]
        keep &= np.isin(events["node"], ids)
    rows = np.flatnonzero(keep)
    clock_rank = np.where(wall[rows], 1, np.where(np.isnan(ts[rows]), 2, 0))
    order = np.lexsort((np.nan_to_num(ts[rows], nan=np.inf), clock_rank))
    events = events.take(rows[order])
    return [events.take(slice(at, at + BATCH_SIZE)) for at in range(0, len(events), BATCH_SIZE)]


def assert_same(streamed: list[EventBatch], expected: list[EventBatch]) -> None:
    assert [len(b) for b in streamed] == [len(b) for b in expected]
    for n, (got, want) in enumerate(zip(streamed, expected, strict=True)):
        assert got.strings == want.strings, f"batch {n}: string table"
        for name, column in want.columns.items():
            assert got[name].dtype == column.dtype, (n, name)
            assert np.array_equal(got[name], column, equal_nan=column.dtype.kind == "f"), (n, name)


def findings(batches: list[EventBatch]) -> list[object]:
    engine = Engine(build(load(None)))
    return list(engine.run(batches))


# -- inputs --------------------------------------------------------------------------

XIDS = (
    "NVRM: Xid (PCI:0000:{bus}:00): 79, pid=2761, name=python, GPU has fallen off the bus.",
    "NVRM: Xid (PCI:0000:{bus}:00): 13, pid=411, name=python3, Graphics SM Warp Exception",
    "NVRM: Xid (PCI:0000:{bus}:00): 48, pid=98, name=python, An uncorrectable double bit error",
    "NVRM: Xid (PCI:0000:{bus}:00): 94, pid=2, name=python, Contained: CE User Channel (0x9).",
    "NVRM: GPU at PCI:0000:{bus}:00: GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a{bus}",
    "pcieport 0000:00:03.1: AER: Corrected error received: 0000:{bus}:00.0",
    "EXT4-fs (nvme0n1p2): re-mounted. Opts: errors=remount-ro",
)
BUSES = ("18", "2a", "3b", "5d")


def _kernel_line(rng: random.Random) -> str:
    return rng.choice(XIDS).format(bus=rng.choice(BUSES))


def write_incident(root: Path, nodes: int = 4, lines: int = 300, seed: int = 1) -> None:
    """Nodes with plain dmesg (boot clock, a reboot, equal and sub-microsecond stamps),
    some anchored by a syslog with both stamps, DCGM scrapes with and without times."""
    rng = random.Random(seed)
    for i in range(nodes):
        node = root / f"node-{i}"
        node.mkdir(parents=True)
        with (node / "dmesg.txt").open("w") as out:
            boot = 50.0
            for n in range(lines):
                if n == lines // 2:
                    boot = 3.0  # a reboot: the boot clock starts again
                elif rng.random() < 0.7:  # else the stamp repeats: a tie
                    boot += rng.choice((0.000001, 0.25, 3.0))
                out.write(f"[{boot:12.6f}] {_kernel_line(rng)}\n")
            # two stamps an anchor's sum makes equal, in the reverse of their order
            out.write(f"[{boot + 1:.10f}2] {_kernel_line(rng)}\n")
            out.write(f"[{boot + 1:.10f}1] {_kernel_line(rng)}\n")
        if i % 2 == 0:  # anchored: syslog kernel lines carry both stamps
            with (node / "kern.log").open("w") as out:
                for n in range(lines // 3):
                    t = START + n * 7.0
                    stamp = np.datetime_as_string(np.datetime64(int(t * 1e6), "us")) + "+00:00"
                    out.write(f"{stamp} node-{i} kernel: [{t - START + 40:12.6f}] ")
                    out.write(_kernel_line(rng) + "\n")
        with (node / "dcgm.prom").open("w") as out:
            for n in range(lines // 4):
                labels = f'gpu="{n % 4}",pci_bus_id="00000000:{BUSES[n % 4].upper()}:00.0"'
                labels += f',Hostname="node-{i}"'
                when = f" {int((START + n * 30) * 1000)}" if i % 3 else ""  # no time: last
                out.write(f"DCGM_FI_DEV_GPU_TEMP{{{labels}}} {60 + n % 30}{when}\n")
                out.write(f"DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{labels}}} {n // 40}{when}\n")


@pytest.fixture(scope="module")
def incident(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("incident")
    write_incident(root)
    return root


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleets")
    for scenario in ("xid79-fallen-off-bus", "nccl-straggler", "eviction-storm"):
        simulate(scenario, root / scenario, seed=3, nodes=3, lines_per_node=150)
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format the readers know, boot-clock files beside syslog ones, in one fleet."""
    root = tmp_path_factory.mktemp("mixed")
    shutil.copytree(ROOT / "tests" / "data" / "kernel", root / "gpu-node-7")
    shutil.copytree(ROOT / "tests" / "data" / "dcgm", root / "gpu-node-17")
    shutil.copytree(ROOT / "tests" / "data" / "nccl", root / "job")
    shutil.copytree(ROOT / "tests" / "data" / "h100", root / "h100")
    shutil.copytree(ROOT / "tests" / "data" / "k8s", root / "cluster")
    return root


# -- the same batches ------------------------------------------------------------------


@pytest.mark.parametrize("limits", LIMITS, ids=["default", "tiny", "one"])
@pytest.mark.parametrize(
    "example", sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())
)
def test_examples_stream_as_they_sorted(example: str, limits: Limits) -> None:
    paths = [str(ROOT / "examples" / example)]
    streamed = list(replay_batches(paths, OPTIONS, limits=limits))
    expected = one_sort(paths, Window())
    assert_same(streamed, expected)
    assert findings(streamed) == findings(expected)


@pytest.mark.parametrize("limits", LIMITS[:2], ids=["default", "tiny"])
def test_boot_clock_files_anchored_or_not_stream_as_they_sorted(
    incident: Path, limits: Limits
) -> None:
    stats = ReadStats()
    streamed = list(replay_batches([str(incident)], OPTIONS, stats=stats, limits=limits))
    assert set(stats.boot_anchors) == {"node-0", "node-2"}  # the others stay on boot time
    clocks = np.concatenate([b["clock"] for b in streamed])
    assert {0, 1, 2} <= set(clocks.tolist())  # untimed, wall and boot-clock events
    expected = one_sort([str(incident)], Window())
    assert_same(streamed, expected)
    assert findings(streamed) == findings(expected)


def test_anchored_ties_go_in_read_order(tmp_path: Path) -> None:
    """Two boot times that differ by less than the anchor's rounding become one time."""
    (tmp_path / "n").mkdir()
    xid = "NVRM: Xid (PCI:0000:3b:00): 13, pid={}, name=python3, Graphics SM Warp Exception"
    (tmp_path / "n" / "dmesg.txt").write_text(
        "".join(f"[100.0000000{9 - k}] {xid.format(k)}\n" for k in range(8))
    )
    (tmp_path / "n" / "kern.log").write_text(
        f"2024-06-04T10:00:00.000000+00:00 n kernel: [   60.000000] {xid.format(99)}\n"
    )
    paths = [str(tmp_path)]
    expected = one_sort(paths, Window())
    assert len(set(expected[0]["ts"].tolist())) < len(expected[0])  # the anchor made ties
    for limits in LIMITS:
        assert_same(list(replay_batches(paths, OPTIONS, limits=limits)), expected)


def test_simulated_fleets_stream_as_they_sorted(fleets: Path) -> None:
    for fleet in sorted(fleets.iterdir()):
        paths = [str(fleet)]
        expected = one_sort(paths, Window())
        for limits in LIMITS[:2]:  # the default limits, and tiny ones
            assert_same(list(replay_batches(paths, OPTIONS, limits=limits)), expected)
    assert replay([str(fleets)], load(None), OPTIONS) == findings(one_sort([str(fleets)], Window()))


def test_every_reader_in_one_fleet_streams_as_it_sorted(mixed: Path) -> None:
    paths = [str(mixed)]
    expected = one_sort(paths, Window())
    for limits in LIMITS:
        assert_same(list(replay_batches(paths, OPTIONS, limits=limits)), expected)


def test_files_out_of_time_order_stream_as_they_sorted(tmp_path: Path) -> None:
    """Logs whose lines are shuffled: every chunk goes back in time, so many short runs."""
    simulate("thermal-cooling-fault", tmp_path, seed=2, nodes=2, lines_per_node=200)
    rng = random.Random(2)
    for name in ("gpu-node-001/kern.log", "gpu-node-002/dcgm.prom"):
        lines = (tmp_path / name).read_text().splitlines(keepends=True)
        rng.shuffle(lines)
        (tmp_path / name).write_text("".join(lines))
    paths = [str(tmp_path)]
    expected = one_sort(paths, Window())
    for limits in LIMITS[:2]:
        assert_same(list(replay_batches(paths, OPTIONS, limits=limits)), expected)


def test_without_a_temporary_file_replay_holds_its_runs_in_memory(
    incident: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = [str(incident)]
    expected = one_sort(paths, Window())

    def no_directory(**_: object) -> None:
        raise FileNotFoundError("No usable temporary directory found")

    with monkeypatch.context() as patched:
        patched.setattr("tempfile.TemporaryFile", no_directory)
        assert_same(list(replay_batches(paths, OPTIONS, limits=TINY)), expected)
    writes = 0

    def disk_full(fd: int, data: Any, offset: int) -> int:
        nonlocal writes
        writes += 1
        if writes > 5:  # the first segments on disk, the rest in memory
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, data, offset)

    real_pwrite = os.pwrite
    monkeypatch.setattr("os.pwrite", disk_full)
    assert_same(list(replay_batches(paths, OPTIONS, limits=TINY)), expected)
    assert writes > 5


WINDOWS = (
    Window(since=START + 300),
    Window(until=START + 900),
    Window(since=START + 300, until=START + 900),
    Window(node="node-0"),
    Window(node="node-1"),
    Window(node="gpu-node-002", since=START + 600),
    Window(node="no-such-node"),
)


@pytest.mark.parametrize("window", WINDOWS, ids=str)
def test_windows_stream_as_they_sorted(
    incident: Path, fleets: Path, mixed: Path, window: Window
) -> None:
    paths = [str(incident), str(fleets / "xid79-fallen-off-bus"), str(mixed)]
    expected = one_sort(paths, window)
    for limits in LIMITS[:2]:
        assert_same(list(replay_batches(paths, OPTIONS, window, limits=limits)), expected)
    assert replay(paths, load(None), OPTIONS, window) == findings(expected)


def test_inputs_in_another_order_are_another_read_order(incident: Path, fleets: Path) -> None:
    """Ties in time keep the order the paths were named in, as the one sort kept it."""
    paths = [str(fleets / "eviction-storm"), str(incident)]
    assert_same(list(replay_batches(paths, OPTIONS, limits=TINY)), one_sort(paths, Window()))


def test_a_chunk_of_many_files_on_the_wall_clock_is_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fleet's files scraped side by side: as many runs to merge as chunks, not as
    files (each file a run would make the merge touch every file's piece per batch)."""
    for i in range(40):
        with (tmp_path / f"node-{i}.prom").open("w") as out:
            for n in range(60):
                labels = f'gpu="0",pci_bus_id="00000000:3B:00.0",Hostname="node-{i}"'
                out.write(
                    f"DCGM_FI_DEV_GPU_TEMP{{{labels}}} {60 + n} {(START + n * 30) * 1000:.0f}\n"
                )
    runs: list[int] = []
    narrow = replay_module._narrow

    def counted(found: list[Any], *rest: Any) -> Any:
        runs.append(len(found))
        return narrow(found, *rest)

    monkeypatch.setattr(replay_module, "_narrow", counted)
    limits = Limits(spill_events=BATCH_SIZE, fan_in=64)  # each batch read is a chunk
    paths = [str(tmp_path)]
    assert_same(list(replay_batches(paths, OPTIONS, limits=limits)), one_sort(paths, Window()))
    assert runs == [-(-40 * 60 // BATCH_SIZE)]


# -- bounded memory --------------------------------------------------------------------


def peak_held(paths: list[str], limits: Limits) -> tuple[int, int]:
    """(events read, the most events replay held at once) for ``paths``."""
    peak = 0

    def held(count: int) -> None:
        nonlocal peak
        peak = max(peak, count)

    stats = ReadStats()
    for _ in replay_batches(paths, OPTIONS, stats=stats, limits=limits, held=held):
        pass
    return stats.events, peak


def test_events_held_do_not_grow_with_the_input(tmp_path: Path) -> None:
    limits = Limits(spill_events=512, piece_events=64, fan_in=4)
    bound = max(limits.spill_events + BATCH_SIZE, limits.fan_in * limits.piece_events)
    held = []
    for nodes in (4, 16):
        simulate("xid79-fallen-off-bus", tmp_path / str(nodes), nodes=nodes, lines_per_node=100)
        events, peak = peak_held([str(tmp_path / str(nodes))], limits)
        assert events > 10 * bound  # so that holding them all would show
        assert peak <= bound
        held.append(peak)
    assert held[1] <= held[0] * 1.1  # four times the input: the same holding


def test_the_merge_holds_one_piece_per_stream() -> None:
    """Three long sorted streams, merged: never more than a piece of each is held."""
    rng = np.random.default_rng(1)

    def stream(n: int, piece: int, offset: int) -> list[Keyed]:
        events = concat(list(read_paths([str(ROOT / "tests/data/kernel/aer.dmesg")])))
        ts = np.sort(rng.uniform(0, 1000, n))
        rows = np.arange(n) % len(events)
        base = events.take(rows)
        base["ts"][:] = ts
        base["clock"][:] = CLOCK_ID["wall"]
        keyed = Keyed.of(to_records(base, np.arange(n, dtype=np.int64) * 3 + offset))
        return [keyed.take(np.arange(a, min(a + piece, n))) for a in range(0, n, piece)]

    sizes: list[int] = []
    out = list(merge([iter(stream(5000, 50, k)) for k in range(3)], sizes.append))
    merged = np.concatenate([p.when for p in out])
    assert len(merged) == 15000 and np.all(np.diff(merged) >= 0)
    assert max(sizes) <= 3 * 50


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.sampled_from([0.0, 1.0, 2.5, np.inf])), max_size=40),
    st.tuples(st.integers(0, 2), st.sampled_from([0.0, 1.0, 2.5, np.inf]), st.integers(-1, 80)),
)
def test_upto_counts_the_records_at_or_before_a_key(
    parts: list[tuple[int, float]], bound: tuple[int, float, int]
) -> None:
    """Binary searches by rank, time and arrival count what comparing every key counts."""
    keys = sorted((rank, when, 2 * i) for i, (rank, when) in enumerate(parts))
    n = len(keys)
    rows = np.zeros(n, dtype=ROW)
    keyed = Keyed(
        rows,
        np.asarray([k[0] for k in keys], dtype=np.int8),
        np.asarray([k[1] for k in keys], dtype=np.float64),
        np.asarray([k[2] for k in keys], dtype=np.int64),
    )
    assert keyed.upto(bound) == sum(1 for key in keys if key <= bound)

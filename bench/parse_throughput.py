"""Parse throughput on a generated mixed kernel log, beside grep on the same file.

The log is ``--lines`` lines of ``dmesg`` output: 95 % ordinary kernel noise (the lines
of a real healthy 8xA100 node's dmesg, re-stamped) and 5 % GPU records (Xid of many
codes, SXid, fallen off the bus, identity lines, multi-line AER reports). Seeded, so
every run reads the same file.

Reported, as medians of ``--repeat`` runs measured side by side:

* grep: ``LC_ALL=C grep -cE 'Xid|SXid|AER|fallen off' FILE`` writing to a file
  (GNU grep stops at the first match when its output is /dev/null);
* fleetwatch, in process: ``read_paths`` over the file, no interpreter start-up;
* fleetwatch, CLI: ``fleetwatch parse FILE --output summary``, start-up included;
* both again with ``FLEETWATCH_PURE_PYTHON=1`` where the compiled kernel-record loop is
  built (``sources/kmsg_compiled.py``): the Python path beside it, in the same run.

Usage: python bench/parse_throughput.py --lines 10000000 [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from fleetwatch.sources import ReadStats, kmsg_compiled, read_paths
from fleetwatch.sources.kmsg_compiled import PURE_PYTHON_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
REAL_DMESG = ROOT / "tests" / "data" / "real" / "a100-node-healthy-dmesg.txt"
STAMP = re.compile(r"^\[[^\]]*\] ?")

GPU_RECORDS = [
    ["NVRM: Xid (PCI:0000:{bus}:00): 79, pid={pid}, name=python, GPU has fallen off the bus."],
    [
        "NVRM: Xid (PCI:0000:{bus}:00): 13, pid={pid}, name=python3, Graphics SM Warp Exception "
        "on (GPC 1, TPC 0, SM 0): Out Of Range Address"
    ],
    [
        "NVRM: Xid (PCI:0000:{bus}:00): 31, pid={pid}, name=pt_main_thread, channel 0x00000002, "
        "intr 00000000. MMU Fault: ENGINE GRAPHICS GPC0 GPCCLIENT_T1_0 faulted @ 0x7f3a_4c000000. "
        "Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_READ"
    ],
    [
        "NVRM: Xid (PCI:0000:{bus}:00): 94, pid={pid}, name=python, Contained: CE User Channel "
        "(0x9). RST: No, D-RST: No"
    ],
    [
        "NVRM: Xid (PCI:0000:{bus}:00): 119, pid={pid}, name=python, Timeout after 6s of waiting "
        "for RPC response from GPU1 GSP! Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4)."
    ],
    ["nvidia-nvswitch2: SXid (PCI:0000:{bus}:00.0): 20034, Fatal, Link 30 LTSSM Fault Up"],
    ["NVRM: GPU 0000:{bus}:00.0: GPU has fallen off the bus."],
    [
        "NVRM: GPU at PCI:0000:{bus}:00: GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a{bus}",
        "NVRM: GPU Board Serial Number: 13203210578{bus}",
    ],
    [
        "pcieport 0000:00:03.1: AER: Corrected error received: 0000:{bus}:00.0",
        "nvidia 0000:{bus}:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, "
        "(Receiver ID)",
        "nvidia 0000:{bus}:00.0:   device [10de:2330] error status/mask=00000001/0000e000",
        "nvidia 0000:{bus}:00.0:    [ 0] RxErr                  (First)",
    ],
]
BUSES = ["07", "0f", "47", "4e", "87", "90", "b7", "bd"]


def generate(path: Path, lines: int, seed: int = 1) -> None:
    """Write ``lines`` lines of mixed dmesg to ``path``, 5 % of them GPU records."""
    noise = [STAMP.sub("", line) for line in REAL_DMESG.read_text().splitlines()]
    noise = [line for line in noise if not any(w in line for w in ("AER", "NVRM", "Xid"))]
    rng = np.random.default_rng(seed)
    written, t = 0, 0.0
    with path.open("w") as out:
        while written < lines:
            block = min(200_000, lines - written)
            is_gpu = rng.random(block) < 0.05 / 1.6  # AER reports are 4 lines: ~5 % of lines
            picks = rng.integers(0, len(noise), block)
            records = rng.integers(0, len(GPU_RECORDS), block)
            buses = rng.integers(0, len(BUSES), block)
            parts = []
            for i in range(block):
                t += 0.000731
                if is_gpu[i]:
                    for message in GPU_RECORDS[records[i]]:
                        text = message.format(bus=BUSES[buses[i]], pid=1000 + i % 5000)
                        parts.append(f"[{t:12.6f}] {text}\n")
                else:
                    parts.append(f"[{t:12.6f}] {noise[picks[i]]}\n")
            out.write("".join(parts))
            written += len(parts)


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))


def time_grep(path: Path, out: Path) -> float:
    start = time.perf_counter()
    with out.open("w") as handle:
        subprocess.run(
            ["grep", "-cE", "Xid|SXid|AER|fallen off", str(path)],
            stdout=handle,
            env={"LC_ALL": "C"},
            check=False,
        )
    return time.perf_counter() - start


@contextmanager
def python_path(pure: bool) -> Iterator[dict[str, str]]:
    """The environment that reads with the Python path only (``pure``) or as built."""
    before = os.environ.get(PURE_PYTHON_VARIABLE)
    os.environ[PURE_PYTHON_VARIABLE] = "1" if pure else "0"
    try:
        yield dict(os.environ)
    finally:
        if before is None:
            del os.environ[PURE_PYTHON_VARIABLE]
        else:
            os.environ[PURE_PYTHON_VARIABLE] = before


def time_in_process(path: Path, pure: bool = False) -> tuple[float, int]:
    stats = ReadStats()
    with python_path(pure):
        start = time.perf_counter()
        events = sum(len(batch) for batch in read_paths([str(path)], stats=stats))
        return time.perf_counter() - start, events


def time_cli(path: Path, out: Path, pure: bool = False) -> float:
    with python_path(pure) as env:
        start = time.perf_counter()
        with out.open("w") as handle:
            subprocess.run(
                [sys.executable, "-m", "fleetwatch", "parse", str(path), "--output", "summary"],
                stdout=handle,
                stderr=subprocess.DEVNULL,
                check=True,
                env=env,
            )
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--file", type=Path, help="an existing log to read instead")
    parser.add_argument("--keep", action="store_true", help="keep the generated file")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fleetwatch-bench-"))
    path = args.file or workdir / "mixed-kernel.log"
    if args.file is None:
        print(f"generating {args.lines:,} lines ...", flush=True)
        generate(path, args.lines)
    n = count_lines(path)
    size = path.stat().st_size
    print(f"file: {path} ({n:,} lines, {size / 1e6:,.0f} MB)")
    paths = (False, True) if kmsg_compiled.built() else (False,)  # compiled, then pure
    runs: dict[str, list[float]] = {}
    events = 0
    for turn in range(args.repeat):  # interleaved, so drift hits all alike
        runs.setdefault("grep -cE (LC_ALL=C)", []).append(time_grep(path, workdir / "grep.out"))
        # the two paths take turns going first
        for pure in paths if turn % 2 == 0 else paths[::-1]:
            tag = " [Python path]" if pure else ""
            seconds, found = time_in_process(path, pure)
            if events and found != events:
                raise SystemExit(f"the two paths read {events:,} and {found:,} events")
            events = found
            runs.setdefault(f"fleetwatch in process{tag}", []).append(seconds)
            cli = time_cli(path, workdir / "cli.out", pure)
            runs.setdefault(f"fleetwatch parse CLI{tag}", []).append(cli)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    grep_m = medians["grep -cE (LC_ALL=C)"]
    print(f"events: {events:,}; medians of {args.repeat} interleaved runs")
    print(f"{'':40}{'seconds':>10}{'lines/s':>16}{'x grep':>9}")
    for name in sorted(medians, key=lambda name: ("grep" not in name, "CLI" in name, name)):
        seconds = medians[name]
        print(f"{name:40}{seconds:10.2f}{n / seconds:16,.0f}{seconds / grep_m:9.1f}")
    if len(paths) == 2:
        for how in ("in process", "parse CLI"):
            compiled = medians[f"fleetwatch {how}"]
            python = medians[f"fleetwatch {how} [Python path]"]
            print(f"compiled kernel-record loop, {how}: {python / compiled:.2f}x the Python path")
    if not args.keep and args.file is None:
        path.unlink()


if __name__ == "__main__":
    main()

"""Replay and parse beside grep, on the same files, in one run: ``make bench-replay``.

Three inputs, each generated once (seeded) under ``--work``:

* ``dmesg``: a mixed kernel log of ``--dmesg-lines`` lines (``parse_throughput``: 95 %
  a real healthy node's noise, 5 % GPU records);
* ``fleet``: simulated node folders of every scenario (kernel logs, dcgm-exporter
  scrapes, Kubernetes events, NCCL logs), ``--fleet-lines`` lines in all;
* ``big``: one scenario's fleet grown to ``--big-mb`` megabytes;
* ``journal``: ``--journal-lines`` of that dmesg as ``journalctl -k -o json`` writes
  them (one object a line: the cursor, both clocks, the boot and machine ids, the
  host, transport, priority, facility and identifier, then ``MESSAGE``).

On each: ``LC_ALL=C grep -rcE`` for the records' words (what a person would type),
``fleetwatch parse --output summary`` and ``fleetwatch replay --output jsonl``, with
``--jobs 1`` and with one reading process per core (``--jobs``' default), each in a
fresh process, start-up included, interleaved ``--repeat`` times (grep, parse,
replay, grep, …) so that drift in the machine's load hits all alike. Reported: the
median seconds, lines per second, the ratio to grep's median, and the peak resident
memory of the process (its own ``ru_maxrss``, from ``os.wait4``; a forked child's peak
counts what it was forked from, so about 30 MB, the measuring interpreter, is the floor:
the inputs are generated in another process to keep it there).

Each fleetwatch runs as a user's install does: with its modules' bytecode, written by
one run on a tiny input before the rounds (pip writes it when it installs). An
environment with ``PYTHONDONTWRITEBYTECODE`` set (as this project's build machines
have) would otherwise compile every module in every run, 0.13 s of start-up here.

``--before`` names another fleetwatch executable (another checkout's
``.venv/bin/fleetwatch``): its parse and replay run beside this checkout's, each
before this one's, in the same interleaved rounds.

Usage: python -m bench.replay_speed [--dmesg-lines 10000000] [--fleet-lines 2000000]
       [--big-mb 1000] [--journal-lines 1000000] [--repeat 3] [--work DIR]
       [--only dmesg,fleet,big,journal]
       [--before /path/to/old/.venv/bin/fleetwatch]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

FLEETWATCH = Path(sys.executable).parent / "fleetwatch"
GREP_WORDS = "NVRM|Xid|SXid|AER|fallen off|NCCL|DCGM_|Evicted"


@dataclass(frozen=True)
class Run:
    """One command over one input: wall seconds and the peak resident memory (MB)."""

    seconds: float
    peak_mb: float


def measured(command: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``command`` with its output to a temporary file, measured."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        # GNU grep stops at the first match when its output is /dev/null: a real file
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):  # grep: 1 is "no match"
        raise SystemExit(f"failed: {' '.join(command)}")
    return Run(seconds, usage.ru_maxrss / 1024)


def lines_in(path: Path) -> int:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    total = 0
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 24):
                total += chunk.count(b"\n")
    return total


def megabytes(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def simulate(out: Path, scenario: str, nodes: int, seed: int = 1) -> None:
    if not (out / "answer.json").exists():
        command = [str(FLEETWATCH), "simulate", "--scenario", scenario, "--out", str(out)]
        subprocess.run(
            [*command, "--nodes", str(nodes), "--seed", str(seed)],
            check=True,
            stdout=subprocess.DEVNULL,
        )


def make_inputs(work: Path, args: argparse.Namespace) -> dict[str, Path]:
    """Generate what is missing (in this process: the measuring one starts children
    from a small interpreter, since a child's peak memory counts what it was forked
    from), and return where each input is."""
    from bench.parse_throughput import generate as generate_dmesg
    from fleetwatch.simulate import SCENARIOS

    inputs: dict[str, Path] = {}
    if "dmesg" in args.only:
        dmesg = work / f"dmesg-{args.dmesg_lines}.log"
        if not dmesg.exists():
            generate_dmesg(dmesg, args.dmesg_lines, seed=1)
        inputs["dmesg"] = dmesg
    probe = work / "probe"  # four nodes of one scenario: the size of a node's files
    simulate(probe, "xid79-fallen-off-bus", 4)
    if "fleet" in args.only:
        fleet = work / f"fleet-{args.fleet_lines}"
        per_node = lines_in(probe) / 4
        nodes = max(1, round(args.fleet_lines / (per_node * len(SCENARIOS))))
        for seed, scenario in enumerate(SCENARIOS, start=1):
            simulate(fleet / scenario, scenario, nodes, seed)
        inputs["fleet"] = fleet
    if "big" in args.only:
        big = work / f"big-{args.big_mb}mb"
        nodes = max(1, round(args.big_mb / (megabytes(probe) / 4)))
        simulate(big, "xid79-fallen-off-bus", nodes)
        inputs["big"] = big
    if "journal" in args.only:
        journal = work / f"journal-{args.journal_lines}.json"
        if not journal.exists():
            dmesg = work / f"dmesg-{args.journal_lines}.log"
            if not dmesg.exists():
                generate_dmesg(dmesg, args.journal_lines, seed=1)
            journal_from(dmesg, journal, args.journal_lines)
        inputs["journal"] = journal
    return inputs


_DMESG_LINE = re.compile(r"\[\s*(\d+)\.(\d{6})\] (.*)")
_BOOTED_AT_US = 1_722_826_000_000_000  # the boot's wall-clock time (µs)


def journal_from(dmesg: Path, out: Path, lines: int) -> None:
    """The first ``lines`` of ``dmesg`` as ``journalctl -k -o json`` entries."""
    with dmesg.open() as source, out.open("w") as sink:
        for number, line in enumerate(source):
            if number == lines:
                break
            found = _DMESG_LINE.match(line.rstrip("\n"))
            if found is None:
                continue
            boot_us = int(found[1]) * 1_000_000 + int(found[2])
            wall_us = _BOOTED_AT_US + boot_us
            entry = {
                "__CURSOR": f"s=9a1c;i={number:x};b=3e4d;m={boot_us:x};t={wall_us:x}",
                "__REALTIME_TIMESTAMP": str(wall_us),
                "__MONOTONIC_TIMESTAMP": str(boot_us),
                "_BOOT_ID": "3e4d5c6b7a8912345678901234567890",
                "_MACHINE_ID": "0123456789abcdef0123456789abcdef",
                "_HOSTNAME": "gpu-node-7",
                "_TRANSPORT": "kernel",
                "PRIORITY": "6",
                "SYSLOG_FACILITY": "0",
                "SYSLOG_IDENTIFIER": "kernel",
                "_SOURCE_MONOTONIC_TIMESTAMP": str(boot_us),
                "MESSAGE": found[3],
            }
            sink.write(json.dumps(entry, separators=(",", ":")) + "\n")


def with_bytecode() -> dict[str, str]:
    """This environment, but one in which Python keeps the bytecode it compiles."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def write_bytecode(executables: list[Path], work: Path) -> None:
    """One parse and one replay of a tiny input by each executable: every module either
    imports is compiled once and kept, as an install keeps it."""
    tiny = work / "tiny.log"
    tiny.write_text("[ 1.000000] NVRM: Xid (PCI:0000:18:00): 79, GPU has fallen off the bus.\n")
    for executable in executables:
        for command in ("parse", "replay"):
            subprocess.run(
                [str(executable), command, str(tiny), "--output", "jsonl", "--jobs", "2"],
                env=with_bytecode(),
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )


def commands(path: Path, before: Path | None) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """grep, then each fleetwatch command (``before``'s, then this checkout's)."""
    # --jobs' default (sources.parallel.default_jobs), not imported: this process stays
    # small, as a forked child's peak memory counts it
    cores = len(os.sched_getaffinity(0))
    bytecode = with_bytecode()
    found: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "grep -rcE (LC_ALL=C)": (["grep", "-rcE", GREP_WORDS, str(path)], {"LC_ALL": "C"}),
    }
    versions = (
        {"fleetwatch": FLEETWATCH}
        if before is None
        else {"before": before, "fleetwatch": FLEETWATCH}
    )
    for command in ("parse", "replay"):
        output = "summary" if command == "parse" else "jsonl"
        for jobs in (1, cores):
            for name, executable in versions.items():
                run = [str(executable), command, str(path), "--output", output]
                found[f"{name} {command} -j{jobs}"] = ([*run, "--jobs", str(jobs)], bytecode)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dmesg-lines", type=int, default=10_000_000)
    parser.add_argument("--fleet-lines", type=int, default=2_000_000)
    parser.add_argument("--big-mb", type=int, default=1000)
    parser.add_argument("--journal-lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, help="keep (and reuse) the inputs here")
    parser.add_argument("--only", default="dmesg,fleet,big,journal")
    parser.add_argument("--before", type=Path, help="another fleetwatch executable, beside")
    parser.add_argument("-g", "--generate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    work = args.work or Path(tempfile.mkdtemp(prefix="fleetwatch-bench-replay-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.generate:  # the child that generates: print where each input is
        for name, path in make_inputs(work, args).items():
            print(f"{name}\t{path}")
        return
    print(f"inputs under {work} (generated once) ...", flush=True)
    generated = subprocess.run(
        [sys.executable, "-m", "bench.replay_speed", *sys.argv[1:], "--work", str(work), "-g"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    inputs = {name: Path(path) for name, path in (ln.split("\t") for ln in generated.splitlines())}
    write_bytecode([FLEETWATCH] if args.before is None else [args.before, FLEETWATCH], work)
    print(f"medians of {args.repeat} interleaved runs, start-up included", flush=True)
    header = f"{'input':6} {'lines':>11} {'MB':>7}  {'command':24} {'seconds':>8}"
    print(header + f" {'lines/s':>12} {'x grep':>7} {'peak MB':>8}")
    for name, path in inputs.items():
        lines, size = lines_in(path), megabytes(path)
        runs: dict[str, list[Run]] = {label: [] for label in commands(path, args.before)}
        for _ in range(args.repeat):
            for label, (command, env) in commands(path, args.before).items():
                runs[label].append(measured(command, env))
        grep = statistics.median(r.seconds for r in runs["grep -rcE (LC_ALL=C)"])
        for label, done in runs.items():
            seconds = statistics.median(r.seconds for r in done)
            peak = max(r.peak_mb for r in done)
            print(
                f"{name:6} {lines:>11,} {size:>7.0f}  {label:24} {seconds:>8.2f}"
                f" {lines / seconds:>12,.0f} {seconds / grep:>7.1f} {peak:>8.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()

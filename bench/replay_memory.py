"""Replay's peak memory and time at 1x, 2x and 4x a simulated fleet, before and after.

Fleets come from ``fleetwatch simulate`` (``--scenario``, ``--base-nodes`` times each
scale: a node is about 1.2 MB of kernel log and DCGM scrapes, ~4,300 events). With
``--scale-by lines`` the fleet keeps its nodes and each node's kernel log grows
instead (``--base-lines``, 2,000 by default, times each scale): the input grows, the
fleet's GPUs (and so the detectors' state) do not. Each ``fleetwatch replay FLEET
--output jsonl`` runs in a fresh process; its peak resident memory is the child's own
``ru_maxrss`` (``os.wait4``), its time the wall clock from start to exit, interpreter
start-up included. ``--before`` names another fleetwatch executable (another
checkout's ``.venv/bin/fleetwatch``) to measure beside this one; the two must print
the same findings (id, detector, severity, action, summary, count and times; a field
a later version adds is not a difference), or the run fails.

Reported: medians of ``--repeat`` runs, interleaved (before, after, before, …) so that
drift in the machine's load hits both alike.

Usage: python bench/replay_memory.py [--before /path/to/old/.venv/bin/fleetwatch]
       [--base-nodes 60] [--base-lines 2000] [--scales 1,2,4] [--scale-by nodes|lines]
       [--repeat 3] [--fleets DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

AFTER = Path(sys.executable).parent / "fleetwatch"  # this checkout's, in its venv


@dataclass(frozen=True)
class Run:
    """One replay: its peak resident memory (MB), wall time (s) and output."""

    peak_mb: float
    seconds: float
    output: bytes


def generate(fleet: Path, scenario: str, nodes: int, lines: int) -> None:
    """Write the fleet unless it is there already (``--fleets`` keeps them)."""
    if (fleet / "answer.json").exists():
        return
    command = [str(AFTER), "simulate", "--scenario", scenario, "--out", str(fleet)]
    subprocess.run(
        [*command, "--nodes", str(nodes), "--lines-per-node", str(lines)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def replay(executable: Path, fleet: Path, out: Path) -> Run:
    """``executable replay fleet`` in a fresh process, measured."""
    with out.open("wb") as stdout:
        start = time.perf_counter()
        child = subprocess.Popen(
            [str(executable), "replay", str(fleet), "--output", "jsonl"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):  # 1: a finding at --fail-on (not set here)
        raise SystemExit(f"{executable} replay {fleet} exited {child.returncode}")
    return Run(usage.ru_maxrss / 1024, seconds, out.read_bytes())  # ru_maxrss: KiB


# What makes two findings the same incident judged alike; a field a later version adds
# (``clock``) is not a different finding.
_SAME: Final = ("id", "detector", "severity", "action", "summary", "count", "first_ts", "last_ts")


def _findings(output: bytes) -> tuple[tuple[object, ...], ...]:
    return tuple(
        tuple(found.get(key) for key in _SAME)
        for found in map(json.loads, output.decode().splitlines())
    )


def size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another fleetwatch executable")
    parser.add_argument("--scenario", default="xid79-fallen-off-bus")
    parser.add_argument("--base-nodes", type=int, default=60)
    parser.add_argument("--base-lines", type=int, default=2000, help="kernel log lines per node")
    parser.add_argument("--scales", default="1,2,4")
    parser.add_argument("--scale-by", choices=("nodes", "lines"), default="nodes")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fleets", type=Path, help="keep (and reuse) the fleets here")
    args = parser.parse_args()
    root = args.fleets or Path(tempfile.mkdtemp(prefix="fleetwatch-replay-memory-"))
    versions = {"after": AFTER} if args.before is None else {"before": args.before, "after": AFTER}
    rows = []
    for scale in (int(s) for s in args.scales.split(",")):
        nodes = args.base_nodes * (scale if args.scale_by == "nodes" else 1)
        lines = args.base_lines * (scale if args.scale_by == "lines" else 1)
        fleet = root / f"{args.scenario}-{nodes}-{lines}"
        generate(fleet, args.scenario, nodes, lines)
        runs: dict[str, list[Run]] = {name: [] for name in versions}
        for _ in range(args.repeat):
            for name, executable in versions.items():
                runs[name].append(replay(executable, fleet, root / f"{name}.out"))
        outputs = {_findings(run.output) for name in runs for run in runs[name]}
        if len(outputs) != 1:
            raise SystemExit(f"{fleet}: the findings differ between runs or versions")
        medians = {
            name: (
                statistics.median(r.peak_mb for r in found),
                statistics.median(r.seconds for r in found),
            )
            for name, found in runs.items()
        }
        rows.append((scale, size_mb(fleet), medians))
        print(f"{scale}x done: {fleet}", file=sys.stderr, flush=True)
    print(
        f"fleetwatch replay --output jsonl, {args.scenario}, scaled by {args.scale_by}; "
        f"medians of {args.repeat} runs"
    )
    head = "".join(f"{name + ' MB':>12}{name + ' s':>11}" for name in versions)
    print(f"{'scale':>5}{'input MB':>10}{head}")
    for scale, mb, medians in rows:
        cells = "".join(f"{peak:12.0f}{seconds:11.2f}" for peak, seconds in medians.values())
        print(f"{str(scale) + 'x':>5}{mb:10.0f}{cells}")


if __name__ == "__main__":
    main()

"""Gate 2, the time delta: ``python -m bench.delta``.

Compares each benchmark's ns/event with a baseline and fails only on a slowdown that
is both significant and larger than ``--threshold`` (default 10 %) at the median.
Significant: a one-sided Mann-Whitney U test per benchmark, with Holm's correction
across all benchmarks so that testing sixteen of them does not turn noise into an
alarm (family-wise error below ``--alpha``). A sample is one fresh process that times
every benchmark (``python -m bench.harness --timings``); A/B samples alternate their
order (A B, B A, …) so that whatever runs first does not carry a bias.

The baseline is either

* ``bench/baseline.json`` (``--baseline``, written by ``--write-baseline``), with the
  interpreter, NumPy and machine it was measured on; or
* ``--against REV``: REV is checked out in a temporary git worktree and measured in the
  same run, interleaved A B A B, so both sides share the machine's noise. This is the
  one to trust on a shared or different machine.

Where REV cannot be had (a shallow clone, the first commit, a revision without the
harness) the gate says so and exits 0: a report, not a pass.

``--metric instructions`` is the deterministic variant: instructions per event counted
by valgrind's callgrind (``python -m bench.harness --instructions`` under
``--toggle-collect=alloccount_measured``, ``PYTHONHASHSEED=0``, the cyclic collector
off). The same code gives the same count run after run, so one process per side is a
complete answer: no statistics, and a change above the threshold fails. It needs
``valgrind`` and ``--against`` (a baseline file would hold another machine's counts);
A and B run side by side, one per core.

Exit codes: 0 no significant slowdown (or nothing to compare), 1 a slowdown, 2 a
usage error, an unreadable baseline, or instructions of this tree that could not be
counted (fail closed, as gate 1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu

from bench.gate import _table

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ROOT / "bench" / "baseline.json"


def sample(tree: Path) -> dict[str, float]:
    """One timing sample of every benchmark, measured with the code of ``tree``."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.harness", "--timings"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    result: dict[str, float] = json.loads(done.stdout)
    return result


CALLGRIND = (
    "valgrind",
    "--tool=callgrind",
    "--collect-atstart=no",
    "--toggle-collect=alloccount_measured",
    "--dump-after=alloccount_measured",
)
"""Count instructions only inside ``alloccount.measured``; one dump file per call."""


def dump_totals(out: Path, parts: int) -> list[int]:
    """The instructions of each of the first ``parts`` dumps in ``out``."""
    totals = []
    for part in range(1, parts + 1):
        dump = (out / f"callgrind.out.{part}").read_text()
        line = next(ln for ln in dump.splitlines() if ln.startswith("totals:"))
        totals.append(int(line.split()[1]))
    return totals


def instruction_sample(tree: Path) -> tuple[subprocess.Popen[str], Path]:
    """Start counting every benchmark's instructions with the code of ``tree``."""
    out = Path(tempfile.mkdtemp(prefix="fleetwatch-callgrind-"))
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": f"{tree / 'src'}{os.pathsep}{tree}"}
    run = subprocess.Popen(
        [
            *CALLGRIND,
            f"--callgrind-out-file={out / 'callgrind.out'}",
            sys.executable,
            "-m",
            "bench.harness",
            "--instructions",
        ],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return run, out


def instructions_per_event(sampling: tuple[subprocess.Popen[str], Path]) -> dict[str, float]:
    """Wait for ``instruction_sample``; each benchmark's instructions per event."""
    run, out = sampling
    stdout, stderr = run.communicate(timeout=1800)
    try:
        if run.returncode != 0:
            raise RuntimeError((stderr.strip().splitlines() or ["failed"])[-1])
        order: list[list[Any]] = json.loads(stdout)
        totals = dump_totals(out, len(order))
        return {name: n / events for (name, events), n in zip(order, totals, strict=True)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def compare_instructions(
    current: dict[str, float], base: dict[str, float], threshold: float
) -> tuple[list[list[str]], list[str]]:
    """The report rows and the failures of exact counts: any rise above ``threshold``."""
    rows, failures = [], []
    for name in sorted(current):
        if name not in base:
            rows.append([name, f"{current[name]:,.0f}", "-", "-", "new"])
            continue
        change = current[name] / base[name] - 1.0 if base[name] else 0.0
        slower = change > threshold
        if slower:
            failures.append(f"SLOWER {name}: {change:+.1%} instructions per event")
        rows.append(
            [
                name,
                f"{current[name]:,.0f}",
                f"{base[name]:,.0f}",
                f"{change:+.1%}",
                "SLOWER" if slower else "ok",
            ]
        )
    return rows, failures


def compare(
    current: dict[str, list[float]], base: dict[str, list[float]], threshold: float, alpha: float
) -> tuple[list[list[str]], list[str]]:
    """The report rows and the failures of ``current`` against ``base`` samples."""
    rows, failures = [], []
    for name in sorted(current):
        if name not in base:
            rows.append([name, f"{statistics.median(current[name]):,.0f}", "-", "-", "-", "new"])
            continue
        now, then = np.asarray(current[name]), np.asarray(base[name])
        change = float(np.median(now) / np.median(then) - 1.0)
        p = float(mannwhitneyu(now, then, alternative="greater").pvalue)
        slower = p < alpha and change > threshold
        if slower:
            failures.append(f"SLOWER {name}: {change:+.1%} at the median, p = {p:.4f}")
        rows.append(
            [
                name,
                f"{np.median(now):,.0f}",
                f"{np.median(then):,.0f}",
                f"{change:+.1%}",
                f"{p:.3f}",
                "SLOWER" if slower else "ok",
            ]
        )
    return rows, failures


def _worktree(revision: str) -> tuple[Path | None, str]:
    where = Path(tempfile.mkdtemp(prefix="fleetwatch-ab-"))
    done = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), revision],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        where.rmdir()  # git made nothing in it
        return None, (done.stderr.strip().splitlines() or ["?"])[-1]
    if not (where / "bench" / "harness.py").exists():
        _drop(where)
        return None, f"{revision} is older than the benchmark harness"
    _build_extensions(where)
    return where, ""


def _build_extensions(tree: Path) -> None:
    """Build the revision's optional C extensions in place, as ``make install`` builds this
    tree's: else that side would read with the Python path only, and this side compiled.
    Where it cannot be built, that side reads with the Python path, as a wheel made
    without a compiler does."""
    if (tree / "setup.py").exists():
        subprocess.run(
            [sys.executable, "setup.py", "--quiet", "build_ext", "--inplace"],
            cwd=tree,
            capture_output=True,
            check=False,
        )


def _drop(tree: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
        capture_output=True,
        check=False,
    )


def _meta() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpu {platform.node()}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.delta", description=__doc__)
    parser.add_argument("--against", help="a git revision to measure A/B in the same run")
    parser.add_argument("--baseline", default=str(BASELINE), help="a baseline file")
    parser.add_argument("--write-baseline", action="store_true", help="measure, write, stop")
    parser.add_argument("--samples", type=int, default=7, help="processes per side")
    parser.add_argument("--threshold", type=float, default=0.10)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument(
        "--metric",
        choices=("time", "instructions"),
        default="time",
        help="ns/event (statistical) or callgrind instructions/event (deterministic)",
    )
    args = parser.parse_args(argv)
    if args.metric == "instructions":
        return _instructions_gate(args)
    if args.samples < 3:
        print("bench-delta-check: --samples must be at least 3", file=sys.stderr)
        return 2

    current: dict[str, list[float]] = {}
    base: dict[str, list[float]] = {}
    source = ""
    if args.write_baseline:
        for _ in range(args.samples):
            for name, ns in sample(ROOT).items():
                current.setdefault(name, []).append(ns)
        Path(args.baseline).write_text(
            json.dumps({"meta": _meta(), "samples": current}, indent=1) + "\n"
        )
        print(f"wrote {args.baseline}: {args.samples} samples of {len(current)} benchmarks")
        return 0
    if args.against:
        tree, why = _worktree(args.against)
        if tree is None:
            print(f"delta: no baseline: {why}; not compared")
            return 0
        try:
            for i in range(args.samples):  # interleaved, alternating who goes first
                order = (
                    ((ROOT, current), (tree, base))
                    if i % 2 == 0
                    else ((tree, base), (ROOT, current))
                )
                for where, into in order:
                    for name, ns in sample(where).items():
                        into.setdefault(name, []).append(ns)
        except RuntimeError as exc:
            print(f"delta: {args.against} could not be measured ({exc}); not compared")
            return 0
        finally:
            _drop(tree)
        source = f"{args.against}, measured A/B in this run"
    else:
        try:
            saved = json.loads(Path(args.baseline).read_text())
            base = saved["samples"]
        except FileNotFoundError:
            print(f"delta: no baseline file {args.baseline}; not compared")
            return 0
        except (ValueError, KeyError, TypeError) as exc:
            print(f"bench-delta-check: unreadable baseline {args.baseline}: {exc}", file=sys.stderr)
            return 2
        for _ in range(args.samples):
            for name, ns in sample(ROOT).items():
                current.setdefault(name, []).append(ns)
        meta = saved.get("meta", {})
        source = (
            f"{args.baseline} (python {meta.get('python')}, numpy {meta.get('numpy')}, "
            f"{meta.get('machine')})"
        )
    rows, failures = compare(current, base, args.threshold, args.alpha)
    columns = ["benchmark", "now", "baseline", "change", "p", "result"]
    return _report(f"Gate 2: ns/event against {source}", columns, rows, failures, args.format)


def _report(
    title: str, columns: list[str], rows: list[list[str]], failures: list[str], fmt: str
) -> int:
    """Print the table and each failure; the gate's exit code."""
    print(_table(title, columns, rows, fmt), end="")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


def _instructions_gate(args: argparse.Namespace) -> int:
    if not args.against:
        print("bench-delta-check: --metric instructions needs --against REV", file=sys.stderr)
        return 2
    if shutil.which("valgrind") is None:
        print("delta: valgrind is not installed; instructions not compared")
        return 0
    tree, why = _worktree(args.against)
    if tree is None:
        print(f"delta: no baseline: {why}; not compared")
        return 0
    try:
        if not (tree / "bench" / "harness.py").read_text().count("--instructions"):
            print(f"delta: {args.against} cannot count instructions (older harness); not compared")
            return 0
        now, then = instruction_sample(ROOT), instruction_sample(tree)  # one per core
        counted: list[dict[str, float] | Exception] = []
        for sampling in (now, then):  # wait for both, whatever happens to one
            try:
                counted.append(instructions_per_event(sampling))
            except (RuntimeError, OSError, ValueError, StopIteration) as exc:
                counted.append(exc)
    finally:
        _drop(tree)
    current, base = counted
    if isinstance(current, Exception):  # this tree: fail closed, as gate 1 does
        print(f"bench-delta-check: instructions of this tree not counted: {current}")
        return 2
    if isinstance(base, Exception):
        print(f"delta: instructions of {args.against} not counted ({base}); not compared")
        return 0
    rows, failures = compare_instructions(current, base, args.threshold)
    title = f"Gate 2: instructions/event (callgrind) against {args.against}"
    columns = ["benchmark", "now", "baseline", "change", "result"]
    return _report(title, columns, rows, failures, args.format)


if __name__ == "__main__":
    sys.exit(main())

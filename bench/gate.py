"""Gate 1, the allocation ceiling: ``python -m bench.gate allocs``.

Runs every benchmark registered in ``bench/registry.toml`` and compares its
allocations per event (per line for readers) with the row's ceiling.

Exit codes:

* 0: every benchmark is at or under its ceiling, and no ceiling rose without a reason;
* 1: a benchmark is over its ceiling (BREACH), or a ceiling rose against ``--against``
  (default: the previous commit) while its ``reason`` stayed the same;
* 2: failing closed: the registry is malformed, a detector has no row at window 1024,
  or a registered benchmark produced no measurement.

Where the revision cannot be read (a shallow clone, the first commit, a revision older
than the registry) the ratchet says so and is not applied: a report, not a pass.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
REGISTRY_PATH = ROOT / "bench" / "registry.toml"


class RegistryError(ValueError):
    """The registry file is not what the gate can trust."""


@dataclass(frozen=True)
class Row:
    """One registered benchmark and its ceiling."""

    name: str
    window: int
    ceiling: float
    reason: str = ""


def parse_registry(text: str, where: str) -> dict[tuple[str, int], Row]:
    """The rows of a registry file's text."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{where}: not valid TOML: {exc}") from exc
    rows: dict[tuple[str, int], Row] = {}
    entries = data.get("benchmark")
    if not isinstance(entries, list) or not entries:
        raise RegistryError(f"{where}: no [[benchmark]] rows")
    for i, entry in enumerate(entries):
        name, window, ceiling = entry.get("name"), entry.get("window"), entry.get("ceiling")
        reason = entry.get("reason", "")
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{where}: benchmark[{i}] has no name")
        if not isinstance(window, int) or isinstance(window, bool) or window < 1:
            raise RegistryError(f"{where}: {name}: window must be a positive whole number")
        if not isinstance(ceiling, int | float) or isinstance(ceiling, bool) or ceiling < 0:
            raise RegistryError(f"{where}: {name}: ceiling must be a number >= 0")
        if not isinstance(reason, str):
            raise RegistryError(f"{where}: {name}: reason must be text")
        unknown = set(entry) - {"name", "window", "ceiling", "reason"}
        if unknown:
            raise RegistryError(f"{where}: {name}: unknown key {sorted(unknown)[0]!r}")
        if (name, window) in rows:
            raise RegistryError(f"{where}: {name} at window {window} is registered twice")
        rows[name, window] = Row(name, window, float(ceiling), reason)
    return rows


COMMITTED = "bench/registry.toml"  # where the registry lives in every revision


def registry_at(revision: str, repo: Path) -> dict[tuple[str, int], Row] | str:
    """The repository's registry as it was at ``revision``, or why it cannot be had."""
    done = subprocess.run(
        ["git", "-C", str(repo), "show", f"{revision}:{COMMITTED}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["?"])[-1]
        return f"no registry at {revision} ({why})"
    try:
        return parse_registry(done.stdout, f"{revision}:{COMMITTED}")
    except RegistryError as exc:
        return f"the registry at {revision} is unreadable ({exc})"


def _table(title: str, columns: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "markdown":
        lines = [
            f"**{title}**",
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "|".join("---" for _ in columns) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines) + "\n"
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="left" if column in ("benchmark", "result") else "right")
    for r in rows:
        table.add_row(*r)
    console = Console(width=140, file=sys.stdout)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def allocs(args: argparse.Namespace) -> int:
    """Gate 1; returns the exit code."""
    from bench.harness import known, measure
    from fleetwatch.detectors import REGISTRY

    registry = Path(args.registry)
    try:
        rows = parse_registry(registry.read_text(encoding="utf-8"), str(registry))
    except (OSError, RegistryError) as exc:
        print(f"bench-allocs-check: {exc}", file=sys.stderr)
        return 2
    missing = [d for d in REGISTRY if (f"bench_{d}", 1024) not in rows]
    if missing:
        print(
            f"bench-allocs-check: detector {missing[0]} has no registry row "
            f"(bench_{missing[0]} at window 1024)",
            file=sys.stderr,
        )
        return 2
    available = set(known())
    chosen = [r for r in rows.values() if not args.only or r.name in args.only]
    failures: list[str] = []
    report: list[list[str]] = []
    for row in chosen:
        m = measure(row.name, row.window) if (row.name, row.window) in available else None
        if m is None:
            print(
                f"bench-allocs-check: {row.name} at window {row.window} is registered but "
                "no benchmark produced a measurement",
                file=sys.stderr,
            )
            return 2
        ok = m.allocs_per_event <= row.ceiling
        if not ok:
            failures.append(
                f"BREACH {row.name} (window {row.window}): "
                f"{m.allocs_per_event:.3f} allocs/event > ceiling {row.ceiling}"
            )
        report.append(
            [
                row.name,
                f"{m.allocs_per_op:,.1f}",
                str(row.window),
                f"{m.allocs_per_event:.3f}",
                f"{row.ceiling:g}",
                "PASS" if ok else "BREACH",
            ]
        )
    print(
        _table(
            "Gate 1: allocations per event against the ceilings",
            ["benchmark", "allocs/op", "window", "allocs/event", "ceiling", "result"],
            report,
            args.format,
        ),
        end="",
    )
    previous = registry_at(args.against, Path(args.repo))
    if isinstance(previous, str):
        print(f"ratchet: {previous}; not compared")
    else:
        for key, row in rows.items():
            old = previous.get(key)
            if old is not None and row.ceiling > old.ceiling and row.reason == old.reason:
                failures.append(
                    f"RATCHET {row.name} (window {row.window}): the ceiling rose from "
                    f"{old.ceiling:g} to {row.ceiling:g} against {args.against} without a "
                    "new reason in its row"
                )
        print(f"ratchet: compared with {args.against}")
    for failure in failures:
        print(failure)
    return 1 if failures else 0


def table(args: argparse.Namespace) -> int:
    """Every benchmark the harness knows, measured; no ceilings applied."""
    from bench.harness import known, measure

    report = []
    for name, window in known():
        m = measure(name, window)
        if m is None:
            report.append([name, str(window), "-", "-", "-", "no measurement"])
            continue
        report.append(
            [
                name,
                str(window),
                f"{m.allocs_per_op:,.1f}",
                f"{m.allocs_per_event:.3f}",
                f"{m.ns_per_event:,.0f}",
                "",
            ]
        )
    print(
        _table(
            "fleetwatch benchmarks",
            ["benchmark", "window", "allocs/op", "allocs/event", "ns/event", "result"],
            report,
            args.format,
        ),
        end="",
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate", description=__doc__)
    sub = parser.add_subparsers(dest="gate", required=True)
    listing = sub.add_parser("table", help="every benchmark, measured, as a table")
    listing.add_argument("--format", choices=("text", "markdown"), default="text")
    gate = sub.add_parser("allocs", help="gate 1: allocations per event against ceilings")
    gate.add_argument("--registry", default=str(REGISTRY_PATH))
    gate.add_argument("--against", default="HEAD~1", help="git revision for the ratchet")
    gate.add_argument("--repo", default=str(ROOT), help="the git repository to read it from")
    gate.add_argument("--format", choices=("text", "markdown"), default="text")
    gate.add_argument("--only", nargs="*", help="measure only these benchmark names")
    args = parser.parse_args(argv)
    return table(args) if args.gate == "table" else allocs(args)


if __name__ == "__main__":
    sys.exit(main())

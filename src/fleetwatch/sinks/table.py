"""The findings for a terminal: most severe first, then oldest first.

At the widths terminals have (80 columns and up) each finding is a short block: its
severity, action and where, then its detector, count and first time, then the summary
wrapped; nothing is cut. From ``WIDE_AT`` columns (or with ``--wide``), and in a file or
pipe, it is a table with a column each.

Every cell but the severity is a ``rich.text.Text`` through ``one_line``: names and
summaries come from input, so ``[bold]`` in a node name is shown, never read as markup
(a stray ``[/bold]`` would otherwise stop the table with a markup error), and a newline
or a terminal escape in it is shown escaped.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fleetwatch.findings import Finding, Severity
from fleetwatch.sinks.one_line import one_line

_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.ERROR: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "dim",
}


def when(ts: float | None, clock: str | None) -> str:
    """A finding's time for people: UTC for wall-clock times, seconds for boot clocks."""
    if ts is None:
        return "-"
    # a finding saved before findings named their clock: small times are since boot
    if clock == "boot" or (clock is None and ts < 1e9):
        return f"boot+{ts:.0f}s"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):  # a year past 9999 from a forged stamp
        return f"{ts:.0f}"


WIDE_AT = 160
"""From this width on, the findings are a table with a column each; narrower, a list."""


def write_table(
    findings: Sequence[Finding], out: TextIO, width: int | None = None, wide: bool = False
) -> None:
    """Render the findings for a person: a list that fits the terminal (80 columns and
    up; nothing cut, the summary wrapped), or with ``wide`` or room for it, a table."""
    console = _console(out, width)
    if wide and console.width < WIDE_AT:  # the columns at their width; a terminal wraps
        console = Console(file=out, width=_WIDE)
    if not findings:
        console.print("no findings")
        return
    if wide or console.width >= WIDE_AT:
        _table(findings, console)
    else:
        _list(findings, console)


def _console(out: TextIO, width: int | None) -> Console:
    if width is not None:
        return Console(file=out, width=width)
    # a terminal (or COLUMNS) says its width; a file or pipe gets room for the table
    if out.isatty() or os.environ.get("COLUMNS"):
        return Console(file=out)
    return Console(file=out, width=_WIDE)


_WIDE = 220


def _where(f: Finding) -> str:
    """The node and GPU at fault, as the operator names them."""
    gpu = f"GPU {f.pci}" if f.pci else f"GPU {f.gpu}" if f.gpu is not None else ""
    return " ".join(part for part in (one_line(f.node or ""), one_line(gpu)) if part)


def _list(findings: Sequence[Finding], console: Console) -> None:
    """A finding in three parts: severity, action and where; the detector, count and
    time; the summary, wrapped and indented. Long names wrap, never cut."""
    console.print(Text(f"{len(findings)} finding(s)", style="italic"))
    width = max(console.width, 20)
    for f in findings:
        head = f"{f.severity!s:<8} {f.action}  {_where(f)}"
        records = f"{f.count:,} record{'s' if f.count != 1 else ''}"
        detail = f"{one_line(f.detector)} · {records} · first seen {when(f.first_ts, f.clock)}"
        console.print()
        for i, line in enumerate(_wrap(head, width, "")):
            console.print(Text(line, style=_STYLE[f.severity] if i == 0 else ""))
        for line in _wrap(detail, width, "  "):
            console.print(Text(line, style="dim"))
        for line in _wrap(one_line(f.summary), width, "  "):
            console.print(Text(line))


def _wrap(text: str, width: int, indent: str) -> list[str]:
    """``text`` in lines of at most ``width``: at spaces, and inside a word longer than a
    line (a node name is folded, never cut)."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent,
        break_on_hyphens=False,
        drop_whitespace=True,
    ) or [indent]


def _table(findings: Sequence[Finding], console: Console) -> None:
    table = Table(title=f"{len(findings)} finding(s)", title_justify="left", show_lines=False)
    for name in ("severity", "detector", "node", "gpu", "action"):
        table.add_column(name, no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("first seen", no_wrap=True)
    table.add_column("summary", ratio=1)
    for f in findings:
        gpu = f.pci or (str(f.gpu) if f.gpu is not None else "")
        first_seen = when(f.first_ts, f.clock)
        cells = (f.detector, f.node or "", gpu, str(f.action), f"{f.count:,}", first_seen)
        table.add_row(
            Text(str(f.severity), style=_STYLE[f.severity]),
            *(Text(one_line(cell)) for cell in (*cells, f.summary)),
        )
    console.print(table)

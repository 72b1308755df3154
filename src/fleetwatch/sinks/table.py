"""The findings table for a terminal: most severe first, then oldest first.

Every cell but the severity is a ``rich.text.Text`` through ``one_line``: names and
summaries come from input, so ``[bold]`` in a node name is shown, never read as markup
(a stray ``[/bold]`` would otherwise stop the table with a markup error), and a newline
or a terminal escape in it is shown escaped.
"""

from __future__ import annotations

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


def write_table(findings: Sequence[Finding], out: TextIO) -> None:
    """Render the findings as a table."""
    # A terminal wraps the summary; a file or pipe gets lines long enough not to.
    console = Console(file=out) if out.isatty() else Console(file=out, width=220)
    if not findings:
        console.print("no findings")
        return
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

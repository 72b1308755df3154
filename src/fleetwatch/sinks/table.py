"""The findings for a terminal: most severe first, then oldest first.

At the widths terminals have (80 columns and up) each finding is a short block: its
severity, action and where, then its detector, count and first time, then the summary
wrapped; nothing is cut but a name too long to be a host name (over ``LIST_NAME_CAP``,
253 characters, the longest DNS name). From ``WIDE_AT`` columns (or with ``--wide``),
and in a file or pipe, it is a table with a column each, where a name (node, GPU or
PCI address, job) over ``NAME_CAP`` (64) characters is cut, so that one long name
cannot squeeze the other columns out. A cut name ends in ``…``, wherever it is shown
(its cell and the summary), and a note under the findings says so; ``--output jsonl``
has every name whole.

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
from typing import TYPE_CHECKING, Final, TextIO

from rich.cells import cell_len, set_cell_size

from fleetwatch.findings import Finding, Severity
from fleetwatch.sinks.one_line import one_line

if TYPE_CHECKING:
    # rich's console, table and text are imported where a table is written: a command
    # that writes none (replay's JSON lines, watch) starts without them
    from rich.console import Console

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

NAME_CAP: Final = 64
"""The most characters of a name a table cell shows; narrower tables show fewer (the
other columns take about 100 at most, and the summary keeps 30)."""

LIST_NAME_CAP: Final = 253
"""The most characters of a name the list shows (folded over lines): the longest DNS
name, so every host name is shown whole; a longer name is no host's, it is cut."""


def cut(name: str, cap: int) -> str:
    """``name`` in at most ``cap`` columns: whole, or its start and ``…``."""
    return name if cell_len(name) <= cap else set_cell_size(name, cap - 1).rstrip(" ") + "…"


def names_cut(text: str, names: Sequence[str | None], cap: int) -> str:
    """``text`` (a summary, already through ``one_line``) with each of ``names`` that is
    over ``cap`` cut as its cell shows it, so that the summary names it the same way."""
    long = {one_line(n) for n in names if n and cell_len(one_line(n)) > cap}
    for name in sorted(long, key=len, reverse=True):  # a name inside a longer one: after it
        text = text.replace(name, cut(name, cap))
    return text


def cut_note(cap: int) -> str:
    """What is said under the findings when a name was cut."""
    return f"… a name over {cap} characters, cut here: --output jsonl has it whole"


def write_table(
    findings: Sequence[Finding], out: TextIO, width: int | None = None, wide: bool = False
) -> None:
    """Render the findings for a person: a list that fits the terminal (80 columns and
    up; the summary wrapped, a name cut only past ``LIST_NAME_CAP``), or with ``wide``
    or room for it, a table (a name cut past ``NAME_CAP``)."""
    from rich.console import Console

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
    from rich.console import Console

    if width is not None:
        return Console(file=out, width=width)
    # a terminal (or COLUMNS) says its width; a file or pipe gets room for the table
    if out.isatty() or os.environ.get("COLUMNS"):
        return Console(file=out)
    return Console(file=out, width=_WIDE)


_WIDE = 220


def _where(f: Finding) -> str:
    """The node and GPU at fault, as the operator names them."""
    node = cut(one_line(f.node or ""), LIST_NAME_CAP)
    gpu = f.pci if f.pci else str(f.gpu) if f.gpu is not None else ""
    gpu = f"GPU {cut(one_line(gpu), LIST_NAME_CAP)}" if gpu else ""
    return " ".join(part for part in (node, gpu) if part)


def _names(f: Finding) -> tuple[str | None, ...]:
    """The names of a finding that come from input, any of which may be cut."""
    return (f.node, f.pci, f.job)


def _is_cut(f: Finding, cap: int) -> bool:
    return any(n and cell_len(one_line(n)) > cap for n in _names(f))


def _list(findings: Sequence[Finding], console: Console) -> None:
    """A finding in three parts: severity, action and where; the detector, count and
    time; the summary, wrapped and indented. Names wrap; past ``LIST_NAME_CAP`` they
    are cut."""
    from rich.text import Text

    console.print(Text(f"{len(findings)} finding(s)", style="italic"))
    width = max(console.width, 20)
    for f in findings:
        head = f"{f.severity!s:<8} {f.action}  {_where(f)}"
        records = f"{f.count:,} record{'s' if f.count != 1 else ''}"
        detail = f"{one_line(f.detector)} · {records} · first seen {when(f.first_ts, f.clock)}"
        summary = names_cut(one_line(f.summary), _names(f), LIST_NAME_CAP)
        console.print()
        for i, line in enumerate(_wrap(head, width, "")):
            console.print(Text(line, style=_STYLE[f.severity] if i == 0 else ""))
        for line in _wrap(detail, width, "  "):
            console.print(Text(line, style="dim"))
        for line in _wrap(summary, width, "  "):
            console.print(Text(line))
    if any(_is_cut(f, LIST_NAME_CAP) for f in findings):
        console.print()
        for line in _wrap(cut_note(LIST_NAME_CAP), width, ""):
            console.print(Text(line, style="dim"))


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


_SUMMARY_MIN: Final = 30
"""The narrowest the table's summary column gets: a long name is cut before that."""
_FRAME: Final = 25
"""What the table's borders and padding take: 9 rules and 2 spaces for each of 8 columns."""


def _table(findings: Sequence[Finding], console: Console) -> None:
    """One row a finding. The node column gets what the other columns and a summary of
    ``_SUMMARY_MIN`` leave, at most ``NAME_CAP`` characters."""
    from rich.table import Table
    from rich.text import Text

    rows = []
    for f in findings:
        gpu = f.pci or (str(f.gpu) if f.gpu is not None else "")
        rows.append(
            (
                one_line(f.detector),
                one_line(f.node or ""),
                cut(one_line(gpu), NAME_CAP),
                str(f.action),
                f"{f.count:,}",
                when(f.first_ts, f.clock),
            )
        )
    headers = ("detector", "node", "gpu", "action", "count", "first seen")
    widths = [max(cell_len(c) for c in column) for column in zip(headers, *rows, strict=True)]
    others = len("severity") + sum(widths) - widths[1] + _FRAME
    cap = max(16, min(NAME_CAP, console.width - others - _SUMMARY_MIN))
    table = Table(title=f"{len(findings)} finding(s)", title_justify="left", show_lines=False)
    for name in ("severity", "detector", "node", "gpu", "action"):
        table.add_column(name, no_wrap=True)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("first seen", no_wrap=True)
    table.add_column("summary", ratio=1)
    for f, (detector, node, *rest) in zip(findings, rows, strict=True):
        summary = names_cut(one_line(f.summary), _names(f), cap)
        table.add_row(
            Text(str(f.severity), style=_STYLE[f.severity]),
            *(Text(cell) for cell in (detector, cut(node, cap), *rest, summary)),
        )
    console.print(table)
    if any(_is_cut(f, cap) for f in findings):
        console.print(Text(cut_note(cap), style="dim"))

"""The console: one line per announced transition, for the person watching.

The line is built from ``rich.text.Text`` parts, never from markup: the entity and the
summary come from input, so ``[bold]`` or ``:smile:`` in a node name is shown as it is,
and a newline, a tab or a terminal escape in it is escaped (``one_line``) so that a
transition stays one line for grep and for log collectors.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.text import Text

from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.one_line import one_line

_STYLE = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}


def where(transition: Transition) -> str:
    """The entity in a few words: node, then GPU or PCI address, job and rank."""
    f = transition.finding
    parts = [f.node or f.job or "fleet"]
    if f.gpu is not None:
        parts.append(f"GPU {f.gpu}")
    elif f.pci is not None:
        parts.append(f.pci)
    if f.rank is not None:
        parts.append(f"rank {f.rank}")
    return " ".join(parts)


class ConsoleSink:
    """Prints announced transitions as they happen."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False, highlight=False)

    def announce(self, transitions: list[Transition]) -> None:
        for t in transitions:
            f = t.finding
            severity = str(f.severity)
            stamp = datetime.now(UTC).strftime("%H:%M:%S")
            line = Text.assemble(
                f"{stamp} ",
                (f"{severity.upper():8}", _STYLE.get(severity, "")),
                f" {t.kind:9} {one_line(f.detector):16} {one_line(where(t))}: "
                f"{one_line(f.summary)} -> ",
                (str(f.action), "bold"),
            )
            self.console.print(line, soft_wrap=True)  # one line, never wrapped

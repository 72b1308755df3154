"""The console: one line per announced transition, for the person watching."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from fleetwatch.lifecycle import Transition

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
            self.console.print(
                f"{stamp} [{_STYLE.get(severity, '')}]{severity.upper():8}[/] "
                f"{t.kind:9} {f.detector:16} {escape(where(t))}: {escape(f.summary)} "
                f"-> [bold]{f.action}[/]",
                soft_wrap=True,  # one line per transition, for grep and for log collectors
            )

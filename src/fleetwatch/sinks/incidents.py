"""Incidents for machines and for people: ``--output incidents`` and ``incidents-table``.

* ``incidents``: one incident a line, its documented JSON form (``Incident.to_json``,
  docs/incidents.md), most severe first;
* ``incidents-table``: for a terminal, each incident a short block that fits 80
  columns: its severity, action and nodes; its rule, findings and first time; its
  summary wrapped; then one line per finding, the root first. Nothing is cut but a
  name too long to be a host name (over 253 characters, ``table.LIST_NAME_CAP``),
  which ends in ``…`` wherever it is shown, with a note under the incidents.

Names and summaries come from input: every cell is a ``rich.text.Text`` through
``one_line``, never markup (see ``table.py``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, TextIO

from fleetwatch.findings import Severity
from fleetwatch.incidents import Incident
from fleetwatch.sinks.json_line import json_line
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.table import LIST_NAME_CAP, cut, cut_note, names_cut, when

if TYPE_CHECKING:  # imported where the list is written, as sinks/table.py does
    from rich.console import Console

INCIDENT_FORMATS: Final = ("incidents", "incidents-table")
_STYLE: Final = {
    Severity.CRITICAL: "bold red",
    Severity.ERROR: "red",
    Severity.WARNING: "yellow",
    Severity.INFO: "dim",
}


def write_incidents(
    incidents: Sequence[Incident], fmt: str, out: TextIO, width: int | None = None
) -> None:
    """Write ``incidents`` to ``out`` in ``fmt`` (one of ``INCIDENT_FORMATS``)."""
    if fmt == "incidents":
        for incident in incidents:
            out.write(json_line(incident.to_json()))
    elif fmt == "incidents-table":
        from rich.console import Console

        _list(incidents, Console(file=out, width=width) if width else Console(file=out))
    else:
        raise ValueError(f"unknown output format {fmt!r}")


def _list(incidents: Sequence[Incident], console: Console) -> None:
    from rich.text import Text

    if not incidents:
        console.print("no incidents")
        return
    linked = sum(1 for i in incidents if i.effects)
    said = f"{len(incidents)} incident(s), {linked} of them linking several findings"
    console.print(Text(said, style="italic"))
    width = max(console.width, 20)
    cap, any_cut = LIST_NAME_CAP, False
    for incident in incidents:
        names = [n for f in incident.findings for n in (f.node, f.pci, f.job)]
        any_cut = any_cut or any(n and cut(one_line(n), cap) != one_line(n) for n in names)
        nodes = ", ".join(cut(one_line(n), cap) for n in incident.nodes) or "-"
        head = f"{incident.severity!s:<8} {incident.action}  {nodes}"
        n = len(incident.findings)
        detail = (
            f"{incident.incident_id} · {incident.rule} · {n} finding{'s' if n != 1 else ''}"
            f" · first seen {when(incident.first_ts, incident.clock)}"
        )
        console.print()
        for i, line in enumerate(_wrap(head, width, "")):
            console.print(Text(line, style=_STYLE[incident.severity] if i == 0 else ""))
        for line in _wrap(detail, width, "  "):
            console.print(Text(line, style="dim"))
        # the summary is one_line's already (incidents.py): only its long names are cut
        for line in _wrap(names_cut(incident.summary, names, cap), width, "  "):
            console.print(Text(line))
        if incident.effects:
            for role, f in (("root", incident.root), *(("then", e) for e in incident.effects)):
                parts = (f.node, f.pci) if f.node else (f"job {f.job}" if f.job else "",)
                where = " ".join(cut(one_line(p), cap) for p in parts if p)
                text = f"{role} {f.severity!s:<8} {f.detector} {where} {f.action}"
                for line in _wrap(text, width, "    "):
                    console.print(Text(line, style="dim"))
    if any_cut:
        console.print()
        for line in _wrap(cut_note(cap), width, ""):
            console.print(Text(line, style="dim"))


def _wrap(text: str, width: int, indent: str) -> list[str]:
    """``text`` in lines of at most ``width``, folding a long word, never cutting it."""
    return textwrap.wrap(
        text,
        width,
        initial_indent=indent,
        subsequent_indent=indent + "  " if indent.startswith("    ") else indent,
        break_on_hyphens=False,
    ) or [indent]

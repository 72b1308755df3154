"""Sinks: where findings go. Replay writes them once, in one of these forms.

* ``table``: for a terminal, most severe first; a list that fits 80 columns, or a
  table where there is room (``table.py``);
* ``jsonl``: one finding a line, the documented JSON form (``Finding.to_json``);
* ``drain-list`` and ``slurm``: the nodes and GPUs to take out of service (``drain.py``).

Names and summaries come from input: the table shows them as text, never as markup;
line formats escape what could add a line (``one_line.py``), JSON lines every character
that is not printable (``json_line.py``); ``slurm`` quotes every argument and leaves
out findings whose node is not a Slurm node name (``hostnames.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from fleetwatch.findings import Finding
from fleetwatch.sinks.drain import write_drain_list, write_slurm
from fleetwatch.sinks.json_line import json_line
from fleetwatch.sinks.table import write_table

FORMATS = ("table", "jsonl", "drain-list", "slurm")


def write_jsonl(findings: Sequence[Finding], out: TextIO) -> None:
    """One finding per line as JSON (``json_line``: a newline or a bidi control in a
    string is escaped)."""
    for finding in findings:
        out.write(json_line(finding.to_json()))


def write(findings: Sequence[Finding], fmt: str, out: TextIO, wide: bool = False) -> list[Finding]:
    """Write ``findings`` to ``out`` in ``fmt`` (one of ``FORMATS``); ``wide``: the
    table with a column each, whatever the terminal's width.

    Returns the findings the format left out (``slurm``: ``drain.NOT_A_HOST_NAME``).
    """
    if fmt == "table":
        write_table(findings, out, wide=wide)
    elif fmt == "jsonl":
        write_jsonl(findings, out)
    elif fmt == "drain-list":
        write_drain_list(findings, out)
    elif fmt == "slurm":
        return write_slurm(findings, out)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return []

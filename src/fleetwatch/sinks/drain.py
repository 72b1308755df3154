"""What to take out of service: one line per node or GPU, or Slurm's commands.

A finding whose action takes something out of service (``reset_gpu`` and stronger)
lands here. GPU actions (reset, RMA) name the GPU by node, PCI address and serial;
node actions (drain, reboot) name the node. Slurm cannot drain one GPU, so
``slurm`` drains the node of every such finding, one command per node with every
reason joined.

Node names and summaries come from input, and both outputs are read by programs:

* ``drain-list`` is one node or GPU a line, three tab-separated columns, always: each
  column is written through ``one_line``, so a newline or a tab in a name is ``\\n`` or
  ``\\t`` and cannot add a line or a column.
* ``slurm`` is meant to be piped to ``sh``: every argument is quoted with
  ``shlex.quote``, and a finding whose node is not a Slurm node name
  (``hostnames.is_slurm_node_name``: a host name, and not ``ALL`` in any case, which
  ``nodename=`` reads as every node) is left out, not written; ``write_slurm`` returns
  such findings so the caller can say so. A script checks nothing with Slurm: a name
  that ``slurm.conf`` makes a ``NodeSet`` would drain its nodes (``watch --act slurm``
  asks Slurm first, and refuses it).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Final, TextIO

from fleetwatch.findings import Action, Finding
from fleetwatch.hostnames import is_slurm_node_name
from fleetwatch.sinks.one_line import one_line

_GPU_ACTIONS = frozenset({Action.RESET_GPU, Action.RMA_GPU})

NOT_A_HOST_NAME: Final = "node name is not a Slurm node name"
"""Why ``write_slurm`` leaves a finding out: not a host name, or ``ALL``."""


def out_of_service(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that take a node or GPU out of service, most severe first."""
    return [f for f in findings if f.action.takes_out_of_service and f.node]


def write_drain_list(findings: Sequence[Finding], out: TextIO) -> None:
    """``node [gpu pci serial] <tab> action <tab> summary`` for each node or GPU to take out."""
    seen: set[tuple[str | None, str | None, Action]] = set()
    for f in out_of_service(findings):
        gpu = f.pci if f.action in _GPU_ACTIONS else None
        key = (f.node, gpu, f.action)
        if key in seen:
            continue
        seen.add(key)
        target = f.node or "?"
        if gpu:
            target += f" gpu {gpu}" + (f" serial {f.serial}" if f.serial else "")
        out.write(f"{one_line(target)}\t{one_line(str(f.action))}\t{one_line(f.summary)}\n")


def write_slurm(findings: Sequence[Finding], out: TextIO) -> list[Finding]:
    """``scontrol update nodename=N state=drain reason='…'`` per node to drain.

    Returns the findings left out because their node is not a Slurm node name.
    """
    reasons: dict[str, list[str]] = {}
    left_out: list[Finding] = []
    for f in out_of_service(findings):
        assert f.node is not None  # out_of_service keeps only findings with a node
        if not is_slurm_node_name(f.node):
            left_out.append(f)
            continue
        text = f"fleetwatch {f.detector}: {f.action}"
        if f.pci:
            text += f" {f.pci}"
        if text not in reasons.setdefault(f.node, []):
            reasons[f.node].append(text)
    for node, texts in reasons.items():
        reason = one_line("; ".join(texts))  # one line of shell, one line in Slurm
        out.write(
            f"scontrol update nodename={shlex.quote(node)} state=drain "
            f"reason={shlex.quote(reason)}\n"
        )
    return left_out

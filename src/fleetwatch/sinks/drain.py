"""What to take out of service: one line per node or GPU, or Slurm's commands.

A finding whose action takes something out of service (``reset_gpu`` and stronger)
lands here. GPU actions (reset, RMA) name the GPU by node, PCI address and serial;
node actions (drain, reboot) name the node. Slurm cannot drain one GPU, so
``slurm`` drains the node of every such finding, one command per node with every
reason joined.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO

from fleetwatch.findings import Action, Finding

_GPU_ACTIONS = frozenset({Action.RESET_GPU, Action.RMA_GPU})


def out_of_service(findings: Sequence[Finding]) -> list[Finding]:
    """The findings that take a node or GPU out of service, most severe first."""
    return [f for f in findings if f.action.takes_out_of_service and f.node]


def write_drain_list(findings: Sequence[Finding], out: TextIO) -> None:
    """``node [gpu pci serial] action: summary`` for each node or GPU to take out."""
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
        out.write(f"{target}\t{f.action}\t{f.summary}\n")


def _quote(reason: str) -> str:
    return reason.replace("\\", "\\\\").replace('"', "'")


def write_slurm(findings: Sequence[Finding], out: TextIO) -> None:
    """``scontrol update nodename=N state=drain reason="…"`` per node to drain."""
    reasons: dict[str, list[str]] = {}
    for f in out_of_service(findings):
        assert f.node is not None
        text = f"fleetwatch {f.detector}: {f.action}"
        if f.pci:
            text += f" {f.pci}"
        if text not in reasons.setdefault(f.node, []):
            reasons[f.node].append(text)
    for node, texts in reasons.items():
        reason = _quote("; ".join(texts))
        out.write(f'scontrol update nodename={node} state=drain reason="{reason}"\n')

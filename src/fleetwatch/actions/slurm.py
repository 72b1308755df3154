"""Slurm: drain a node with ``scontrol update``, run as an argument list, never a shell.

``drain`` checks the node name first (``hostnames.is_host_name``): a name with ``;``,
``$(...)``, a space, ``,`` or ``[`` (which Slurm expands into several nodes) is refused
before any process starts. The reason is one line (``one_line``) naming the finding id,
its detector and action, and the GPU when there is one, so ``sinfo -R`` leads back to
the finding. Nothing here resumes a node: an operator does, once the GPU is fixed.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Final

from fleetwatch.findings import Finding
from fleetwatch.hostnames import is_host_name
from fleetwatch.sinks.one_line import one_line

MAX_REASON: Final = 200  # Slurm keeps the reason whole, but sinfo's column is short


@dataclass(frozen=True)
class SlurmConfig:
    """``[watch.slurm]``: how to reach Slurm."""

    scontrol: str = "scontrol"
    """The scontrol executable (a path, or a name looked up in PATH)."""
    timeout_s: float = 10.0
    """Longest wait for one scontrol command."""


class SlurmError(RuntimeError):
    """scontrol could not be run, or it refused the command (the message says why)."""


class NotAHostName(ValueError):
    """A node name that is not a host name: refused before anything runs."""


def reason(finding: Finding) -> str:
    """``fleetwatch <id>: <detector> <action> [gpu <i> <pci>]``, on one line."""
    text = f"fleetwatch {finding.id}: {finding.detector} {finding.action}"
    if finding.gpu is not None:
        text += f" gpu {finding.gpu}"
    if finding.pci:
        text += f" {finding.pci}"
    return one_line(text)[:MAX_REASON]


def drain_argv(config: SlurmConfig, node: str, why: str) -> list[str]:
    """The argument list that drains ``node``; ``NotAHostName`` for a name unfit for it."""
    if not is_host_name(node):
        raise NotAHostName(f"node name {one_line(node)!r} is not a host name: not drained")
    return [config.scontrol, "update", f"nodename={node}", "state=drain", f"reason={why}"]


class Slurm:
    """Drains nodes through scontrol."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config

    def drain(self, node: str, why: str) -> None:
        """Drain ``node``; ``NotAHostName`` before anything runs, ``SlurmError`` when it fails."""
        argv = drain_argv(self.config, node, why)
        try:
            done = subprocess.run(  # a list, no shell; the node name is checked
                argv,
                capture_output=True,
                text=True,
                timeout=self.config.timeout_s,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{self.config.scontrol}: {exc}") from exc
        if done.returncode != 0:
            said = one_line((done.stderr or done.stdout).strip())[:300]
            raise SlurmError(f"scontrol exited {done.returncode}: {said}")

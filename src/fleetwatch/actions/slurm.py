"""Slurm: drain a node with ``scontrol update``, run as an argument list, never a shell.

A node name comes from input, and ``nodename=`` is Slurm syntax: ``gpu[1-8]`` or
``a,b`` is several nodes, ``ALL`` (any case) every node, a ``NodeSet`` of ``slurm.conf``
its nodes. So a name is checked twice before a drain:

1. ``drain_argv`` takes only a Slurm node name (``hostnames.is_slurm_node_name``: a host
   name, not ``ALL``), before any process starts;
2. ``Slurm.check`` asks Slurm (``scontrol -o show node NAME``, which expands no
   ``NodeSet``) that the name is exactly one node it knows; an unknown name, a
   ``NodeSet`` or a list is ``NotASlurmNode``: refused, not drained.

The reason is one line (``one_line``) naming the finding id, its detector and action,
and the GPU when there is one, so ``sinfo -R`` leads back to the finding. Nothing here
resumes a node: an operator does, once the GPU is fixed.

**The fleet's ledger.** Each node may run its own fleetwatch (``slurm-health``, or a
watch per node), and each store sees one node; Slurm sees them all. ``Slurm.fleet``
reads the nodes (``sinfo -h -N -o '%N|%H|%E'``: one line per node and partition) and,
from their reasons, the drains fleetwatch made: a reason starting ``fleetwatch `` set in
the breaker's window. ``%H`` is printed in the format of ``SLURM_TIME_FORMAT``, which
sinfo is run with set to ``%s`` (seconds since the epoch), so no time zone is guessed;
a time given as ``YYYY-MM-DDTHH:MM:SS`` instead is read in this machine's zone, as
sinfo writes it, and a reason whose time cannot be read counts as in the window. A node
an operator resumed has its reason cleared by Slurm, and no longer counts.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fleetwatch.findings import Finding
from fleetwatch.hostnames import SLURM_EVERY_NODE, is_slurm_node_name
from fleetwatch.sinks.one_line import one_line

MAX_REASON: Final = 200  # Slurm keeps the reason whole, but sinfo's column is short
REASON_PREFIX: Final = "fleetwatch "
"""How the reason of every drain fleetwatch makes starts (``reason``, and ``replay
--output slurm``'s): the ledger counts these."""
FLEET_FORMAT: Final = "%N|%H|%E"  # node, when its reason was set, the reason (may hold |)
_NOT_FOUND: Final = " not found"  # scontrol: "Node NAME not found", exit 1


@dataclass(frozen=True)
class SlurmConfig:
    """``[watch.slurm]``: how to reach Slurm."""

    scontrol: str = "scontrol"
    """The scontrol executable (a path, or a name looked up in PATH)."""
    sinfo: str = ""
    """The sinfo executable; "": the sinfo beside ``scontrol`` when that is a path, else
    ``sinfo`` looked up in PATH."""
    timeout_s: float = 10.0
    """Longest wait for one scontrol or sinfo command."""

    def sinfo_command(self) -> str:
        """The sinfo to run (see ``sinfo``)."""
        if self.sinfo:
            return self.sinfo
        scontrol = Path(self.scontrol)
        return str(scontrol.with_name("sinfo")) if scontrol.parent != Path() else "sinfo"


class SlurmError(RuntimeError):
    """scontrol or sinfo could not be run, or refused the command (the message says why)."""


class NotASlurmNode(ValueError):
    """A node name that is not exactly one node of Slurm: refused, nothing drained."""


@dataclass(frozen=True)
class Fleet:
    """What Slurm says of the fleet, for the breaker."""

    nodes: frozenset[str]
    """Every node sinfo lists."""
    drained: frozenset[str]
    """Nodes whose reason is fleetwatch's, set in the window (or at a time not given)."""


def reason(finding: Finding) -> str:
    """``fleetwatch <id>: <detector> <action> [gpu <i> <pci>]``, on one line."""
    text = f"{REASON_PREFIX}{finding.id}: {finding.detector} {finding.action}"
    if finding.gpu is not None:
        text += f" gpu {finding.gpu}"
    if finding.pci:
        text += f" {finding.pci}"
    return one_line(text)[:MAX_REASON]


def drain_argv(config: SlurmConfig, node: str, why: str) -> list[str]:
    """The argument list that drains ``node``; ``NotASlurmNode`` for a name unfit for it."""
    if not is_slurm_node_name(node):
        raise NotASlurmNode(
            f"node name {one_line(node)!r} is not a Slurm node name: not drained"
            + (" (Slurm reads it as every node)" if node.lower() == SLURM_EVERY_NODE else "")
        )
    return [config.scontrol, "update", f"nodename={node}", "state=drain", f"reason={why}"]


def shown_nodes(shown: str) -> list[str]:
    """The node names of ``scontrol -o show node`` output: one line a node, ``NodeName=`` first."""
    names = []
    for line in shown.splitlines():
        first = line.split(" ", 1)[0]
        if first.startswith("NodeName="):
            names.append(first.removeprefix("NodeName="))
    return names


def read_fleet(listing: str, since: float) -> Fleet:
    """The ``Fleet`` of sinfo's ``FLEET_FORMAT`` lines; fleetwatch's drains since ``since``.

    A line without two ``|`` (a reason holding a newline goes on over the next line) is
    no node; a reason may hold ``|``, the node and the time never do.
    """
    nodes: set[str] = set()
    drained: set[str] = set()
    for line in listing.splitlines():
        parts = line.split("|", 2)
        if len(parts) < 3 or not parts[0]:
            continue
        node, when, why = parts
        nodes.add(node)
        if why.startswith(REASON_PREFIX):
            at = reason_time(when)
            if at is None or at >= since:
                drained.add(node)
    return Fleet(frozenset(nodes), frozenset(drained))


def reason_time(text: str) -> float | None:
    """sinfo's ``%H``: seconds since the epoch, or local ``YYYY-MM-DDTHH:MM:SS``; else None."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    try:
        return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, OverflowError):
        return None


class Slurm:
    """Drains nodes through scontrol; asks Slurm about nodes and the fleet."""

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config

    def check(self, node: str) -> None:
        """``NotASlurmNode`` unless ``node`` is exactly one node Slurm knows; ``SlurmError``
        when Slurm cannot be asked."""
        drain_argv(self.config, node, "")  # the name alone first, before any process
        done = self._run([self.config.scontrol, "-o", "show", "node", node])
        said = one_line((done.stderr or done.stdout).strip())[:300]
        if done.returncode != 0:
            if said.endswith(_NOT_FOUND):
                raise NotASlurmNode(f"Slurm knows no node {one_line(node)!r}: not drained")
            raise SlurmError(f"scontrol show node exited {done.returncode}: {said}")
        names = shown_nodes(done.stdout)
        if names != [node]:
            shown = ", ".join(one_line(n) for n in names[:5]) or "none"
            raise NotASlurmNode(
                f"Slurm reads {one_line(node)!r} as {len(names)} node(s) ({shown}): not drained"
            )

    def drain(self, node: str, why: str) -> None:
        """Drain ``node`` (``check`` it first); ``NotASlurmNode`` before anything runs,
        ``SlurmError`` when it fails."""
        done = self._run(drain_argv(self.config, node, why))
        if done.returncode != 0:
            said = one_line((done.stderr or done.stdout).strip())[:300]
            raise SlurmError(f"scontrol exited {done.returncode}: {said}")

    def fleet(self, since: float) -> Fleet:
        """The fleet's nodes and fleetwatch's drains since ``since`` (see the module
        docstring); ``SlurmError`` when sinfo fails or lists no node."""
        sinfo = self.config.sinfo_command()
        done = self._run(
            [sinfo, "-h", "-N", "-o", FLEET_FORMAT], {**os.environ, "SLURM_TIME_FORMAT": "%s"}
        )
        if done.returncode != 0:
            said = one_line((done.stderr or done.stdout).strip())[:300]
            raise SlurmError(f"sinfo exited {done.returncode}: {said}")
        fleet = read_fleet(done.stdout, since)
        if not fleet.nodes:
            raise SlurmError("sinfo listed no nodes")
        return fleet

    def _run(
        self, argv: list[str], env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(  # a list, no shell; node names are checked
                argv,
                capture_output=True,
                text=True,
                timeout=self.config.timeout_s,
                check=False,
                env=env,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError(f"{argv[0]}: {exc}") from exc

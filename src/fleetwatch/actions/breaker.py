"""The blast-radius breaker: how many nodes the watch may act on in a window.

A bad input (a driver update that logs a scary Xid everywhere, a parser bug, a replayed
log) must not drain half a fleet. The breaker allows acting on a node while fewer than
``limit`` distinct nodes were acted on in the last ``window_s`` seconds, where ``limit``
is the smaller of ``max_nodes`` and ``max_percent`` of the nodes the watch has seen.
The percentage is rounded up, so a fleet of fewer than 20 nodes can still lose one
(``ceil(5 % of 1)`` is 1); a node already acted on in the window costs nothing more.

It decides only: what was acted on and what was held back is recorded by ``actor``
in the watch store, and the window is counted from those rows, so a restart keeps the
count, and the window slides: a row older than ``window_s`` no longer counts. With
``--act slurm`` the actor adds the drains fleetwatch made anywhere in the fleet, read
from Slurm, to those rows, and the nodes seen are Slurm's (``slurm.Slurm.fleet``).
"""

from __future__ import annotations

import math
from collections.abc import Set
from dataclasses import dataclass


@dataclass(frozen=True)
class BreakerConfig:
    """``[watch.breaker]``: the most a watch may take out of service per window."""

    max_nodes: int = 2
    """Nodes acted on per window, at most."""
    max_percent: float = 5.0
    """Nodes acted on per window, at most, as a percentage of the nodes seen (rounded up)."""
    window_s: float = 3600.0
    """The sliding window, in seconds."""


class Breaker:
    """Decides whether one more node may be acted on."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config

    def limit(self, seen: int) -> int:
        """Distinct nodes that may be acted on per window, when ``seen`` nodes were seen."""
        # round first: 5 % of 60 is 3.0000000000000004 in floating point, not 4 nodes
        share = math.ceil(round(self.config.max_percent * seen / 100.0, 9))
        return max(0, min(self.config.max_nodes, share))

    def allows(self, node: str, acted: Set[str], seen: int) -> bool:
        """Whether acting on ``node`` is allowed, ``acted`` being the window's nodes."""
        return node in acted or len(acted) < self.limit(seen)

"""Whether a node name from input is a host name, fit to go into a command.

Node names come from input: folder names, the host of a syslog line, dcgm-exporter's
``Hostname`` label, Kubernetes events. A name is shown to people as it is (escaped, see
``sinks.one_line``), but it goes into a command (``--output slurm``) only when it is a
host name: ASCII letters, digits, ``-``, ``_`` and ``.``, 1 to 253 characters, starting
with a letter, a digit or ``_`` (never ``-``, which a command reads as an option).

That is what DNS names (RFC 1123) and Slurm node names have in common, plus ``_``. It
keeps out everything a shell or Slurm would read as syntax: spaces, quotes, ``$``,
backquotes, ``;``, newlines, and also ``,`` and ``[`` that Slurm expands into a list of
nodes (``nodename=gpu[1-8]`` drains eight).

A host name is not yet a Slurm node name: ``is_slurm_node_name`` also keeps out ``ALL``,
in any case, which ``scontrol update nodename=ALL`` reads as every node of the cluster
(Slurm 22.05 ``man scontrol``, "NodeName": 'If the keyword "ALL" is specified alone';
slurmctld compares it without case). ``slurm.conf`` may also name a ``NodeSet`` that
``nodename=`` expands into its nodes; its names are the site's, so no check of the name
alone can know them: ``actions.slurm`` asks Slurm that the name is exactly one node
before it drains.
"""

from __future__ import annotations

import re
from typing import Final

MAX_LENGTH: Final = 253
_HOST_NAME: Final = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_LENGTH - 1}}}")
SLURM_EVERY_NODE: Final = "all"
"""What ``nodename=`` reads as every node, compared without case."""


def is_host_name(name: str) -> bool:
    """True when ``name`` is a host name (see the module docstring)."""
    return _HOST_NAME.fullmatch(name) is not None


def is_slurm_node_name(name: str) -> bool:
    """True when ``name`` is a host name that Slurm reads as one node name, not ``ALL``."""
    return is_host_name(name) and name.lower() != SLURM_EVERY_NODE

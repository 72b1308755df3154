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
"""

from __future__ import annotations

import re
from typing import Final

MAX_LENGTH: Final = 253
_HOST_NAME: Final = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.-]{{0,{MAX_LENGTH - 1}}}")


def is_host_name(name: str) -> bool:
    """True when ``name`` is a host name (see the module docstring)."""
    return _HOST_NAME.fullmatch(name) is not None

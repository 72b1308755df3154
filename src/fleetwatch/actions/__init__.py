"""Acting on findings: the blast-radius breaker (``breaker``) in front of every action,
and the tools that act (``slurm``). ``actor`` runs what the watch store asks for.

The names the command line offers live here, not in ``actor``: every command would
otherwise import the tools (and prometheus_client) to build its ``--help``.
"""

from typing import Final

BREAKER: Final = "breaker"
"""The detector name of ``breaker_open`` findings."""
TOOLS: Final = ("slurm", "kubernetes")
"""What ``--act`` accepts."""
SLURM_HEALTH_STORE: Final = "/var/lib/fleetwatch/slurm-health.db"
"""Where ``slurm-health`` keeps its place, findings and drains between runs."""

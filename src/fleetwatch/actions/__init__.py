"""Acting on findings: the blast-radius breaker (``breaker``) in front of every action,
and the tools that act (``slurm``). ``actor`` runs what the watch store asks for."""

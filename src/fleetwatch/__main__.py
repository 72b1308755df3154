"""``python -m fleetwatch`` runs the command line."""

from fleetwatch.cli import main

main()

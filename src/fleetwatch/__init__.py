"""fleetwatch: find GPU faults in the telemetry of a GPU fleet and say what to do.

The public surface: the event model and the readers. The command line
(``fleetwatch.cli``) is a thin layer over these.
"""

from fleetwatch.events import KINDS, SOURCES, BatchBuilder, EventBatch
from fleetwatch.sources import InputError, ReadOptions, ReadStats, read_paths

__all__ = [
    "KINDS",
    "SOURCES",
    "BatchBuilder",
    "EventBatch",
    "InputError",
    "ReadOptions",
    "ReadStats",
    "read_paths",
]
__version__ = "0.1.0"

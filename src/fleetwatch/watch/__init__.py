"""Watch: one node, live. Its sources feed the engine, its lifecycle turns findings into
transitions, its store makes a restart safe, its sinks tell.

* ``plan``: the config file and the command line as one ``WatchPlan``;
* ``daemon``: the running ``Watch``: sources on their threads, commits, the sinks.

The lifecycle (``fleetwatch.lifecycle``) and the store (``fleetwatch.store``) stay a
layer below: the fleet's correlators, the sinks, ``slurm-health``, ``silence`` and
``findings`` use them without a watch.
"""

from fleetwatch.watch.daemon import Watch
from fleetwatch.watch.plan import MetricsSettings, Relay, WatchPlan, WatchSettings, load_plan

__all__ = ["MetricsSettings", "Relay", "Watch", "WatchPlan", "WatchSettings", "load_plan"]

"""Which optional library each part of fleetwatch needs, and the one line that says so.

``pip install fleetwatch`` brings what ``replay``, ``parse``, ``findings`` and
``silence`` need, and no compiler. The rest comes as extras (``pyproject.toml``):

* ``watch``: tenacity (retries), urllib3 (the webhook, dcgm-exporter scrapes) and
  nvidia-ml-py (``--nvml``), for ``fleetwatch watch``;
* ``kubernetes``: the official client, for ``watch --kubeconfig``;
* ``fleet``: redis, for ``agent``, ``correlate`` and ``findings --redis``, and the
  ``watch`` extra (a live agent is a watch).

Those libraries are imported only inside what uses them, and the command asks
``require`` first, so a missing one is one line naming the extra (exit 2), not a
traceback. ``tests/test_extras.py`` holds ``MODULES`` to the extras in pyproject.toml.
"""

from __future__ import annotations

import importlib
from typing import Final

MODULES: Final[dict[str, str]] = {
    "tenacity": "watch",
    "urllib3": "watch",
    "pynvml": "watch",  # the nvidia-ml-py distribution
    "kubernetes": "kubernetes",
    "redis": "fleet",
}
"""The import name of each optional library -> the extra that installs it."""


class MissingExtra(ImportError):
    """A part of fleetwatch used without the extra that installs its libraries."""


def hint(what: str, extras: set[str]) -> str:
    """``fleetwatch watch --nvml needs: pip install 'fleetwatch[watch]'``."""
    return f"{what} needs: pip install 'fleetwatch[{','.join(sorted(extras))}]'"


def require(what: str, *modules: str) -> None:
    """Import ``modules``; raise ``MissingExtra`` naming the extras of those that fail.

    ``what`` is what the user asked for, as they would type it (``fleetwatch watch
    --nvml``). A library that is there but lacks one of its own dependencies is
    missing too: installing the extra brings that as well.
    """
    missing = set()
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError:
            missing.add(MODULES[module])
    if missing:
        raise MissingExtra(hint(what, missing))

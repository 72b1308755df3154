"""Run the fleetwatch command as the base install has it: no optional library imports.

``python -m tests.without_extras replay examples/xid79-fallen-off-bus`` is ``fleetwatch
replay ...`` where importing what an extra installs (``fleetwatch.extras.MODULES``)
fails as it does when the library is not installed. ``make install-check`` does the
same in a real fresh venv; this is its quick stand-in for ``make test``.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from fleetwatch.extras import MODULES


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] in MODULES:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None  # the other finders look for it as usual


if __name__ == "__main__":
    for loaded in [m for m in sys.modules if m.partition(".")[0] in MODULES]:
        del sys.modules[loaded]  # none is, at this point; were one, it would now be gone
    sys.meta_path.insert(0, _NotInstalled())
    from fleetwatch.cli import main

    sys.argv[0] = "fleetwatch"
    main()

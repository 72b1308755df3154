"""A fake ``scontrol``: a real executable written into a test's folder.

Each run appends its arguments, exactly as the process received them, as one JSON
line, and exits with the code in ``exit_code`` (0 by default). A shell never sees the
arguments: if one did, ``$(...)`` or ``;`` would run before the script could record them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

_SCRIPT = """#!{python}
import json, pathlib, sys
here = pathlib.Path(__file__).parent
with open(here / "scontrol.calls", "a") as out:
    out.write(json.dumps(sys.argv[1:]) + "\\n")
code = here / "scontrol.exit"
if code.exists():
    print("slurm_update error: Invalid node name specified", file=sys.stderr)
    sys.exit(int(code.read_text()))
"""


class FakeScontrol:
    """``path``: the executable; ``calls()``: the argument lists it was run with."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "scontrol"
        self.path.write_text(_SCRIPT.format(python=sys.executable))
        self.path.chmod(0o755)
        self._calls = folder / "scontrol.calls"
        self._exit = folder / "scontrol.exit"

    def calls(self) -> list[list[str]]:
        if not self._calls.exists():
            return []
        return [json.loads(line) for line in self._calls.read_text().splitlines()]

    def fail_with(self, code: int) -> None:
        self._exit.write_text(str(code))

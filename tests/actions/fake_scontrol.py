"""A fake Slurm: ``scontrol`` and ``sinfo``, real executables written into a test's folder.

A stand-in where a real cluster is too slow to start for each test (the real one:
``slurm_cluster.py``). It keeps its nodes and their reasons in ``slurm.json`` and answers
what fleetwatch asks, as Slurm 22.05 does (checked against the loopback cluster):

* ``scontrol update nodename=N state=drain reason=R`` sets N's reason and its time; N is
  a node, a ``NodeSet`` of the fake (its nodes) or ``ALL`` in any case (every node), as
  slurmctld expands them; another name fails with Slurm's message, exit 1;
* ``scontrol -o show node N``: one ``NodeName=N ...`` line for a node; ``Node N not
  found`` and exit 1 for anything else, a ``NodeSet`` and ``ALL`` included;
* ``sinfo -h -N -o '%N|%H|%E'``: a line per node, the time in ``SLURM_TIME_FORMAT``
  (``%s``: seconds since the epoch; unset: local ``YYYY-MM-DDTHH:MM:SS``), ``Unknown``
  and ``none`` for a node with no reason.

Each run appends its arguments, exactly as the process received them, as one JSON line
(``scontrol.calls``, ``sinfo.calls``). A shell never sees the arguments: if one did,
``$(...)`` or ``;`` would run before the script could record them. ``fail_with`` makes
scontrol's updates fail, ``sinfo_fails`` and ``sinfo_hangs`` make sinfo fail or outlive a timeout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

_SCONTROL = """#!{python}
import json, pathlib, sys, time
here = pathlib.Path(__file__).parent
args = sys.argv[1:]
with open(here / "scontrol.calls", "a") as out:
    out.write(json.dumps(args) + "\\n")
state = json.loads((here / "slurm.json").read_text())
nodes = state["nodes"]
if args[:3] == ["-o", "show", "node"] and len(args) == 4:
    name = args[3]
    if name not in nodes:
        print(f"Node {{name}} not found", file=sys.stderr)
        sys.exit(1)
    print(f"NodeName={{name}} Arch=x86_64 CPUTot=1 State=IDLE Partitions=debug")
    sys.exit(0)
if args[:1] == ["update"]:
    code = here / "scontrol.exit"
    if code.exists():
        print("slurm_update error: Invalid node name specified", file=sys.stderr)
        sys.exit(int(code.read_text()))
    fields = dict(arg.split("=", 1) for arg in args[1:])
    name = fields["nodename"]
    if name.lower() == "all":
        targets = list(nodes)
    elif name in state["nodesets"]:
        targets = state["nodesets"][name]
    elif name in nodes:
        targets = [name]
    else:
        print("slurm_update error: Invalid node name specified", file=sys.stderr)
        sys.exit(1)
    for target in targets:
        nodes[target] = {{"reason": fields.get("reason", ""), "time": int(time.time())}}
    (here / "slurm.json").write_text(json.dumps(state))
    sys.exit(0)
print(f"fake scontrol: not understood: {{args}}", file=sys.stderr)
sys.exit(2)
"""

_SINFO = """#!{python}
import json, os, pathlib, sys, time
here = pathlib.Path(__file__).parent
args = sys.argv[1:]
with open(here / "sinfo.calls", "a") as out:
    out.write(json.dumps(args) + "\\n")
if (here / "sinfo.hang").exists():
    time.sleep(30)
if (here / "sinfo.exit").exists():
    print("slurm_load_partitions: Unable to contact slurm controller", file=sys.stderr)
    sys.exit(1)
if args != ["-h", "-N", "-o", "%N|%H|%E"]:
    print(f"fake sinfo: not understood: {{args}}", file=sys.stderr)
    sys.exit(2)
fmt = os.environ.get("SLURM_TIME_FORMAT", "%Y-%m-%dT%H:%M:%S")
for name, node in json.loads((here / "slurm.json").read_text())["nodes"].items():
    when = time.strftime(fmt, time.localtime(node["time"])) if node["reason"] else "Unknown"
    print(f"{{name}}|{{when}}|{{node['reason'] or 'none'}}")
"""


class FakeScontrol:
    """``path``: scontrol, beside it sinfo; ``calls()``: the argument lists scontrol ran
    with, ``updates()`` those that change a node; ``reasons()``: each node's reason."""

    def __init__(
        self, folder: Path, nodes: Iterable[str] = (), nodesets: Mapping[str, list[str]] = {}
    ) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "scontrol"
        self.sinfo = folder / "sinfo"
        for path, script in ((self.path, _SCONTROL), (self.sinfo, _SINFO)):
            path.write_text(script.format(python=sys.executable))
            path.chmod(0o755)
        self.folder = folder
        self._state = folder / "slurm.json"
        state = {"nodes": {n: {"reason": "", "time": 0} for n in nodes}, "nodesets": nodesets}
        self._state.write_text(json.dumps(state))

    def _read(self, name: str) -> list[list[str]]:
        calls = self.folder / name
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]

    def calls(self) -> list[list[str]]:
        return self._read("scontrol.calls")

    def updates(self) -> list[list[str]]:
        return [call for call in self.calls() if call[:1] == ["update"]]

    def sinfo_calls(self) -> list[list[str]]:
        return self._read("sinfo.calls")

    def reasons(self) -> dict[str, str]:
        return {n: v["reason"] for n, v in json.loads(self._state.read_text())["nodes"].items()}

    def set_reason(self, node: str, reason: str, when: float) -> None:
        """As if ``scontrol update nodename=node state=drain reason=...`` ran at ``when``."""
        state = json.loads(self._state.read_text())
        state["nodes"][node] = {"reason": reason, "time": int(when)}
        self._state.write_text(json.dumps(state))

    def fail_with(self, code: int) -> None:
        (self.folder / "scontrol.exit").write_text(str(code))

    def sinfo_fails(self) -> None:
        (self.folder / "sinfo.exit").write_text("1")

    def sinfo_hangs(self) -> None:
        (self.folder / "sinfo.hang").write_text("")

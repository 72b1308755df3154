"""make install-check: what a user gets from ``pip install fleetwatch``, checked for real.

In a fresh virtual environment in a temporary folder it installs this working tree
with no extras, as a user's ``pip install fleetwatch`` would, and checks that:

1. no compiler was needed: ``CC`` and ``CXX`` are ``/bin/false`` and pip may take
   wheels only (``--only-binary :all:``; this project itself is built from the tree);
2. no extra's library came along (pyproject.toml's ``watch``, ``kubernetes``,
   ``fleet``), nor a development tool;
3. ``fleetwatch replay examples/xid79-fallen-off-bus`` finds the Xid 79 and
   ``fleetwatch parse`` reads, and where the ``hyperscan`` wheel installed, the same
   replay without it (Python's ``re`` prefilter) gives the same findings;
4. ``fleetwatch watch --nvml`` says in one line which extra it needs, exit 2.

It downloads from the package index, so it is not part of ``make test``; .ci/run runs
it after ``make ci-full``. Standard library only: it runs with any python3 (3.11+).
Exit 0 when all hold, 1 naming the first that does not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "examples/xid79-fallen-off-bus"
NVML_LINE = "fleetwatch: error: fleetwatch watch --nvml needs: pip install 'fleetwatch[watch]'\n"
NO_COMPILER = {"CC": "/bin/false", "CXX": "/bin/false"}  # a build that needs one fails


class CheckFailed(Exception):
    """One thing a user's install would get wrong."""


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``argv``; its stdout, or ``CheckFailed`` with its stderr's tail."""
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, env=env, timeout=900
    )
    if done.returncode != 0:
        raise CheckFailed(f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def copy_tree(into: Path) -> None:
    """The working tree's files as git sees them (tracked and new, never ignored ones)."""
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT)
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the tree is not there
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def extra_distributions() -> set[str]:
    """Every distribution an extra of pyproject.toml names (not this project)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
    found = set()
    for requirements in project["optional-dependencies"].values():
        for requirement in requirements:
            if m := name.match(requirement):
                found.add(canonical(m[0]))
    return found - {"fleetwatch"}


def installed_in(python: str, cwd: Path) -> dict[str, str]:
    """The distributions of an environment: canonical name -> version."""
    listed = json.loads(run([python, "-m", "pip", "list", "--format", "json"], cwd))
    return {canonical(p["name"]): p["version"] for p in listed}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def check(work: Path) -> None:
    tree, venv = work / "tree", work / "venv"
    copy_tree(tree)
    run([sys.executable, "-m", "venv", str(venv)], work)
    python, fleetwatch = str(venv / "bin" / "python"), str(venv / "bin" / "fleetwatch")
    seeded = installed_in(python, tree)  # what venv put there itself (pip; setuptools < 3.12)
    env = {**os.environ, **NO_COMPILER}
    print("install-check: pip install . (wheels only, CC=/bin/false), in a fresh venv")
    run([python, "-m", "pip", "install", "--quiet", "--only-binary", ":all:", "."], tree, env)

    installed = installed_in(python, tree)
    unwanted = sorted((installed.keys() - seeded.keys()) & extra_distributions())
    if unwanted:
        raise CheckFailed(f"the base install brought what extras are for: {', '.join(unwanted)}")
    print("install-check: installed " + ", ".join(f"{n} {v}" for n, v in sorted(installed.items())))

    findings = run([fleetwatch, "replay", EXAMPLE, "--output", "jsonl"], tree)
    drains = run([fleetwatch, "replay", EXAMPLE, "--output", "drain-list"], tree)
    if not drains.startswith("gpu-node-17\treboot_node\tXid 79"):
        raise CheckFailed(f"replay {EXAMPLE} did not find the Xid 79: {drains!r}")
    run([fleetwatch, "parse", f"{EXAMPLE}/gpu-node-17/dmesg.txt"], tree)
    print(f"install-check: replay {EXAMPLE}: {len(findings.splitlines())} finding(s), Xid 79 found")

    engine = [python, "-c", "from fleetwatch.sources.prefilter import Prefilter as P; "
              "print(P((b'x',)).name)"]  # fmt: skip
    if "hyperscan" in installed:
        if run(engine, tree).strip() != "hyperscan":
            raise CheckFailed("the hyperscan wheel is installed but the prefilter does not use it")
        run([python, "-m", "pip", "uninstall", "--quiet", "--yes", "hyperscan"], tree)
    if run(engine, tree).strip() != "re":
        raise CheckFailed("without hyperscan the prefilter is not Python's re")
    if run([fleetwatch, "replay", EXAMPLE, "--output", "jsonl"], tree) != findings:
        raise CheckFailed("replay without hyperscan found something else than with it")
    print("install-check: replay without hyperscan (Python's re): the same findings")

    done = subprocess.run(
        [fleetwatch, "watch", "--nvml", "--store", str(work / "w.db")],
        cwd=tree, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 2 or done.stderr != NVML_LINE or done.stdout:
        raise CheckFailed(
            f"watch --nvml without [watch]: exit {done.returncode}, stderr {done.stderr!r}"
            f" (wanted exit 2 and {NVML_LINE!r})"
        )
    print(f"install-check: watch --nvml without the extra: exit 2, {NVML_LINE.strip()!r}")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="fleetwatch-install-check-") as work:
        try:
            check(Path(work))
        except CheckFailed as exc:
            print(f"install-check: FAILED: {exc}", file=sys.stderr)
            return 1
    print("install-check: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())

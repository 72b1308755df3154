"""The base install runs replay; each extra's command says, in one line, what it needs."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fleetwatch.extras import MODULES, MissingExtra, hint, require

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "xid79-fallen-off-bus"


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a requirement's distribution name
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {m[0].lower() for m in map(_NAME.match, requirements) if m}


def test_modules_names_every_library_of_every_extra_and_nothing_else() -> None:
    declared = {e: names(reqs) for e, reqs in PROJECT["optional-dependencies"].items()}
    assert "fleetwatch" in declared.pop("dev")  # dev installs every extra
    assert set(declared) == {"watch", "kubernetes", "fleet"}
    # an extra may bring another whole (a live agent is a watch: fleet brings watch)
    assert "fleetwatch[watch]" in PROJECT["optional-dependencies"]["fleet"]
    declared["fleet"].discard("fleetwatch")
    # what each installed distribution provides to import (the dev install has them all)
    provides: dict[str, set[str]] = {}
    for module, installed in importlib.metadata.packages_distributions().items():
        for dist in installed:
            provides.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    for extra, dists in declared.items():
        for dist in dists:
            modules = provides[dist] & set(MODULES)
            assert modules, f"{dist} of [{extra}] has no import name in extras.MODULES"
            assert {MODULES[m] for m in modules} == {extra}
    for module, extra in MODULES.items():
        providers = {dist for dist, modules in provides.items() if module in modules}
        assert providers & declared[extra], f"no distribution of [{extra}] provides {module}"
    # and the base install needs none of them
    assert not names(PROJECT["dependencies"]) & set().union(*declared.values())


def test_require_names_each_missing_extra_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # None in sys.modules: cannot import
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    require("fleetwatch watch", "tenacity", "urllib3")  # installed here: no error
    with pytest.raises(MissingExtra) as raised:
        require("fleetwatch watch --nvml --kubeconfig", "tenacity", "pynvml", "kubernetes")
    assert str(raised.value) == hint(
        "fleetwatch watch --nvml --kubeconfig", {"watch", "kubernetes"}
    )
    assert str(raised.value) == (
        "fleetwatch watch --nvml --kubeconfig needs: pip install 'fleetwatch[kubernetes,watch]'"
    )


def base(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as the base install has it (tests/without_extras.py)."""
    return subprocess.run(
        [sys.executable, "-m", "tests.without_extras", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip


@pytest.mark.slow
def test_replay_runs_without_any_extra() -> None:
    done = base("replay", str(EXAMPLE), "--output", "drain-list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gpu-node-17\treboot_node\tXid 79")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("watch", "--nvml"), "fleetwatch watch --nvml needs: pip install 'fleetwatch[watch]'"),
        (
            ("agent", "--shards", "2", "--end"),
            "fleetwatch agent needs: pip install 'fleetwatch[fleet]'",
        ),
    ],
)
def test_a_command_without_its_extra_is_one_line_naming_it_and_exit_2(
    args: tuple[str, ...], line: str
) -> None:
    done = base(*args)
    assert done.returncode == 2
    assert done.stderr == f"fleetwatch: error: {line}\n" and done.stdout == ""

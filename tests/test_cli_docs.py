"""What the command says about itself, and the README about it, stays whole: every
command in the bare usage and the README's synopsis, every option of each in its
synopsis, every scenario in the README, and every --help's ending."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleetwatch.cli import _SHORT_USAGE, cli
from fleetwatch.simulate import ALL_SCENARIOS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
COMMANDS = sorted(cli.commands)
READS_ENVIRONMENT = (
    "replay",
    "report",
    "parse",
    "findings",
    "detectors",
    "silence",
    "watch",
    "announce",
)


def synopsis() -> dict[str, str]:
    """The README's synopsis (the first block under "What it does"), by command."""
    block = README.split("## What it does", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    command = ""
    for line in block.splitlines():
        if line.startswith("fleetwatch "):
            command = line.split()[1]
            entries[command] = entries.get(command, "") + "\n" + line.split("#", 1)[0]
        elif line.startswith(" ") and command:
            entries[command] += "\n" + line.split("#", 1)[0]
    return entries


def test_the_bare_usage_lists_every_command() -> None:
    for name in COMMANDS:
        assert re.search(rf"^  fleetwatch {re.escape(name)}\b", _SHORT_USAGE, re.M), name
    assert all(len(line) <= 80 for line in _SHORT_USAGE.splitlines())


@pytest.mark.parametrize("name", COMMANDS)
def test_the_readme_synopsis_has_the_command_and_every_option(name: str) -> None:
    entry = synopsis().get(name)
    assert entry is not None, f"fleetwatch {name} is not in the README's synopsis"
    for param in cli.commands[name].params:
        if isinstance(param, click.Option) and not param.hidden:
            assert any(re.search(rf"{re.escape(o)}\b", entry) for o in param.opts), (
                name,
                param.opts,
            )


def test_the_readme_names_every_scenario() -> None:
    for scenario in ALL_SCENARIOS:
        assert f"`{scenario}`" in README, scenario


def test_the_readme_points_at_files_that_exist() -> None:
    root = Path(__file__).resolve().parents[1]
    for target in re.findall(r"\]\(([^)#]+)", README):
        if "://" not in target:
            assert (root / target).exists(), target
    assert "DESIGN.md" not in README  # the map lives outside this repository


@pytest.mark.parametrize("name", COMMANDS)
def test_every_help_ends_with_examples_exit_codes_and_its_environment(name: str) -> None:
    done = CliRunner(env={"COLUMNS": "80"}).invoke(cli, [name, "--help"], prog_name="fleetwatch")
    assert done.exit_code == 0, done.output
    assert "Examples:" in done.stdout and "Exit codes:" in done.stdout
    assert ("Environment:" in done.stdout) == (name in READS_ENVIRONMENT or name == "slurm-health")
    assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout

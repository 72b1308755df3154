"""Usage errors are one line and exit 2, and each says what to do: simulate, explain,
a window that ends before it starts; replay's --node-name, which its hint names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetwatch.cli import cli
from fleetwatch.replay import EmptyWindow
from fleetwatch.simulate import ALL_SCENARIOS

ROOT = Path(__file__).resolve().parents[1]
XID79 = (
    "[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=python, "
    "GPU has fallen off the bus.\n"
)


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin)


def one_line_exit_2(done: Result, *said: str) -> None:
    assert done.exit_code == 2, done.output
    assert done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("fleetwatch: error: ") and "\\n" not in done.stderr
    for words in said:
        assert words in done.stderr, (words, done.stderr)


def test_simulate_lists_its_scenarios_and_names_them_when_none_is_given() -> None:
    listed = invoke("simulate", "--list")
    assert listed.exit_code == 0 and listed.stdout.splitlines() == list(ALL_SCENARIOS)
    # click said "Choose from:\n\txid79-fallen-off-bus,\n\t...", escaped on one line
    one_line_exit_2(
        invoke("simulate", "--out", "x"), "give --scenario NAME", ", ".join(ALL_SCENARIOS)
    )
    one_line_exit_2(
        invoke("simulate", "--scenario", "nope", "--out", "x"), "no scenario 'nope'", "healthy"
    )
    one_line_exit_2(invoke("simulate", "--scenario", "healthy"), "give --out DIR")


@pytest.mark.parametrize("out", ["/proc/fleetwatch-test", "/sys/fleetwatch-test"])
def test_simulate_into_a_folder_it_cannot_write_is_one_line(out: str) -> None:
    one_line_exit_2(
        invoke("simulate", "--scenario", "healthy", "--out", out), f"cannot write --out {out}"
    )
    assert not Path(out).exists()


def test_simulate_refuses_a_folder_that_is_not_empty_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text(XID79)
    args = ["simulate", "--scenario", "healthy", "--out", str(tmp_path), "--lines-per-node", "5"]
    one_line_exit_2(invoke(*args), "is not empty", "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.log"]
    forced = invoke(*args, "--force")
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "answer.json").is_file() and (tmp_path / "old.log").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert invoke(*args[:-3], str(empty), "--lines-per-node", "5").exit_code == 0


def test_explain_says_how_to_ask() -> None:
    one_line_exit_2(invoke("explain", "xid", "abc"), "Xid 'abc' is no Xid code")
    one_line_exit_2(invoke("explain", "79"), "fleetwatch explain xid 79")
    one_line_exit_2(invoke("explain", "xid"), "which Xid?")
    one_line_exit_2(invoke("explain", "xid", "1e3"), "no Xid code")
    assert invoke("explain", "XID", "79").stdout.startswith("Xid 79: GPU has fallen off the bus")


@pytest.mark.slow
def test_since_after_until_is_one_line_exit_2(tmp_path: Path) -> None:
    args = ["replay", str(ROOT / "examples"), "--since", "2024-06-05", "--until", "2024-06-01"]
    done = subprocess.run(
        [sys.executable, "-m", "fleetwatch", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert done.stderr.count("\n") == 1 and "--since (2024-06-05 " in done.stderr
    assert "is after --until (2024-06-01 " in done.stderr
    # report builds the same window: the same error, which main() makes that one line
    out = tmp_path / "r.html"
    reported = invoke(*["report", *args[1:], "--out", str(out)])
    assert isinstance(reported.exception, EmptyWindow) and not out.exists()
    assert "--since (2024-06-05 " in str(reported.exception)


def test_replay_names_the_node_of_a_plain_dmesg_with_node_name() -> None:
    unnamed = invoke("replay", "-", "--output", "jsonl", stdin=XID79)
    assert unnamed.exit_code == 0 and json.loads(unnamed.stdout)["node"] == "stdin"
    assert "name it with --node-name, or put each node's logs" in unnamed.stderr
    named = invoke("replay", "-", "--output", "jsonl", "--node-name", "gpu-node-17", stdin=XID79)
    assert named.exit_code == 0 and json.loads(named.stdout)["node"] == "gpu-node-17"
    assert "named after their file" not in named.stderr
    drains = invoke(
        "replay", "-", "--output", "drain-list", "--node-name", "gpu-node-17", stdin=XID79
    )
    assert drains.stdout.startswith("gpu-node-17\treboot_node\t")  # a named node is drained
    # the old filter's name is still refused, and says which option does what
    one_line_exit_2(
        invoke("replay", "-", "--node", "gpu-node-17", stdin=XID79), "--only-node", "--node-name"
    )


def test_each_command_hints_at_its_own_option(tmp_path: Path) -> None:
    parsed = invoke("parse", "-", stdin=XID79)
    assert "name it with --node, or put" in parsed.stderr
    reported = invoke("report", "-", "--out", str(tmp_path / "r.html"), stdin=XID79)
    assert reported.exit_code == 0, reported.output
    assert "; put each node's logs in a folder named after the node" in reported.stderr
    assert "name it with" not in reported.stderr

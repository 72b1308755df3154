"""Output is data, never code: a node name from input runs nothing, adds no line, is no markup.

Node names come from input: a folder name of a replay input, the host of a syslog line,
dcgm-exporter's ``Hostname`` label. For hostile names from each of those, ``fleetwatch
replay DIR --output slurm`` is piped into a real ``sh`` in an empty folder, with a fake
``scontrol`` first on its PATH that records its arguments: no file may appear there, and
``scontrol`` sees only the valid node. The drain list has one line per finding and three
columns a line; the table shows the names as written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from fleetwatch.cli import cli
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.console import ConsoleSink
from fleetwatch.sinks.one_line import one_line

VALID = "gpu-node-17"
SCONTROL_LINE = (  # what the fake scontrol records for the valid node: one argument each
    "update|nodename=gpu-node-17|state=drain|"
    "reason=fleetwatch xid_correlation: reboot_node 0000:3b:00.0|"
)
XID79 = (  # a real kernel line (examples/xid79-fallen-off-bus): a reboot_node finding
    "[ 1843.308145] NVRM: Xid (PCI:0000:3b:00): 79, pid=2761, name=python, "
    "GPU has fallen off the bus."
)

# (name, how the drain list and stderr show it). A folder name cannot hold "/", so no
# closing markup tag there.
FOLDER_NAMES = [
    ("gpu-a$(touch PWNED)", "gpu-a$(touch PWNED)"),
    ("gpu-b`touch X`", "gpu-b`touch X`"),
    ("gpu-c;touch X", "gpu-c;touch X"),
    ("gpu-d\ntouch X", "gpu-d\\ntouch X"),
    ("gpu-e\ttouch X", "gpu-e\\ttouch X"),
    ("[bold]x", "[bold]x"),
]
# A syslog host holds no white space, ":" or brackets (the envelope reads `[^\s:\[\]]+`);
# ${IFS} is the shell's way to a space without one.
SYSLOG_HOSTS = [
    ("gpu-a$(touch${IFS}PWNED)", "gpu-a$(touch${IFS}PWNED)"),
    ("gpu-b`touch${IFS}X`", "gpu-b`touch${IFS}X`"),
    ("gpu-c;touch${IFS}X", "gpu-c;touch${IFS}X"),
    ("gpu-f|touch${IFS}X", "gpu-f|touch${IFS}X"),
    ("ALL", "ALL"),  # a host name, but Slurm's nodename=ALL is every node (any case)
    ("all", "all"),
]
# A Prometheus label value can hold anything, a newline written as \n.
DCGM_HOSTNAMES = [
    ("gpu-a$(touch PWNED)", "gpu-a$(touch PWNED)"),
    ("gpu-b`touch X`", "gpu-b`touch X`"),
    ("gpu-c;touch X", "gpu-c;touch X"),
    ("gpu-d\ntouch X", "gpu-d\\ntouch X"),
    ("[bold]x[/bold]", "[bold]x[/bold]"),
    ("[/bold]y", "[/bold]y"),  # a closing tag with no opening one: a markup error in rich
    ("All", "All"),
]


def folders(root: Path, names: list[str]) -> None:
    for name in [*names, VALID]:
        (root / name).mkdir(parents=True)
        (root / name / "dmesg").write_text(XID79 + "\n")


def syslog(root: Path, names: list[str]) -> None:
    (root / "collected").mkdir(parents=True)
    lines = [f"Jun  4 10:12:31 {host} kernel: {XID79}\n" for host in [*names, VALID]]
    (root / "collected" / "syslog").write_text("".join(lines))


def dcgm(root: Path, names: list[str]) -> None:
    (root / "scrapes").mkdir(parents=True)
    lines = ["# TYPE DCGM_FI_DEV_XID_ERRORS gauge\n"]
    for host in [*names, VALID]:
        label = host.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        lines.append(
            'DCGM_FI_DEV_XID_ERRORS{gpu="0",UUID="GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11",'
            f'pci_bus_id="00000000:3B:00.0",Hostname="{label}"}} 79\n'
        )
    (root / "scrapes" / "dcgm-scrape.prom").write_text("".join(lines))


SOURCES = {
    "folder": (folders, FOLDER_NAMES),
    "syslog": (syslog, SYSLOG_HOSTS),
    "dcgm": (dcgm, DCGM_HOSTNAMES),
}


def replay(root: Path, fmt: str) -> Result:
    result = CliRunner().invoke(cli, ["replay", str(root), "--output", fmt])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(params=list(SOURCES))
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, list[tuple[str, str]]]:
    """A replay input whose hostile nodes each have one reboot_node finding, and VALID too."""
    write, names = SOURCES[request.param]
    root = tmp_path / "input"
    write(root, [name for name, _ in names])
    found = [json.loads(line) for line in replay(root, "jsonl").stdout.splitlines()]
    # the input is what the test thinks it is: else the checks below would hold vacuously
    assert sorted(f["node"] for f in found if f["action"] == "reboot_node") == sorted(
        [name for name, _ in names] + [VALID]
    )
    return root, names


def pipe_to_sh(script: str, tmp_path: Path) -> tuple[Path, list[str]]:
    """Run ``script`` in a real ``sh`` in an empty folder; scontrol only records arguments."""
    bin_dir, work = tmp_path / "bin", tmp_path / "sh-runs-here"
    bin_dir.mkdir()
    work.mkdir()
    log = tmp_path / "scontrol.log"
    log.touch()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(
        '#!/bin/sh\nfor a in "$@"; do printf "%s|" "$a"; done >>"$LOG"\necho >>"$LOG"\n'
    )
    scontrol.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}  # touch is on it
    done = subprocess.run(
        ["sh"], input=script, cwd=work, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return work, log.read_text().splitlines()


def test_slurm_piped_to_sh_runs_nothing_from_a_node_name(
    fleet: tuple[Path, list[tuple[str, str]]], tmp_path: Path
) -> None:
    root, names = fleet
    done = replay(root, "slurm")
    work, calls = pipe_to_sh(done.stdout, tmp_path)
    assert sorted(p.name for p in work.iterdir()) == []  # no PWNED, no X
    assert calls == [SCONTROL_LINE]  # the valid node is drained, with its reason whole
    # the others are left out and named, escaped, in one line on stderr
    (report,) = [line for line in done.stderr.splitlines() if "not in the slurm output" in line]
    head = f"fleetwatch: {len(names)} finding(s) not in the slurm output: "
    assert report.startswith(head + "node name is not a Slurm node name (") and report.endswith(")")
    listed = report[len(head + "node name is not a Slurm node name (") : -1].split(", ")
    assert sorted(listed) == sorted(shown for _, shown in names)


def test_the_drain_list_has_one_line_and_three_columns_per_finding(
    fleet: tuple[Path, list[tuple[str, str]]],
) -> None:
    root, names = fleet
    out = replay(root, "drain-list").stdout
    lines = out.splitlines()
    assert out.count("\n") == len(lines) == len(names) + 1
    assert all(line.count("\t") == 2 for line in lines)
    assert sorted(line.split("\t")[0] for line in lines) == sorted(
        [shown for _, shown in names] + [VALID]
    )
    for line in lines:  # the summary names the node too, escaped the same way
        target, action, summary = line.split("\t")
        assert action == "reboot_node" and f" of {target}: " in summary


def test_the_table_shows_names_as_written_never_as_markup(
    fleet: tuple[Path, list[tuple[str, str]]],
) -> None:
    root, names = fleet
    table = replay(root, "table").stdout
    for _, shown in names:
        assert shown in table
    assert f"{len(names) + 1} finding(s)" in table


def test_incidents_keep_names_as_data_and_their_summaries_on_one_line(
    fleet: tuple[Path, list[tuple[str, str]]],
) -> None:
    root, names = fleet
    printed = [json.loads(line) for line in replay(root, "incidents").stdout.splitlines()]
    assert sorted(i["nodes"][0] for i in printed) == sorted([n for n, _ in names] + [VALID])
    for incident in printed:  # the JSON keeps the name; the paragraph escapes it
        assert incident["summary"].isprintable()
        assert one_line(incident["nodes"][0]) in incident["summary"]
    table = replay(root, "incidents-table").stdout
    for _, shown in names:
        assert shown in table


def test_the_real_command_piped_to_sh(tmp_path: Path) -> None:
    """``fleetwatch replay DIR --output slurm | sh`` with the installed command."""
    root = tmp_path / "input"
    folders(root, [name for name, _ in FOLDER_NAMES])
    done = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "replay", str(root), "--output", "slurm"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    work, calls = pipe_to_sh(done.stdout, tmp_path)
    assert list(work.iterdir()) == [] and calls == [SCONTROL_LINE]
    assert f"{len(FOLDER_NAMES)} finding(s) not in the slurm output" in done.stderr


def finding(node: str, summary: str) -> Finding:
    return Finding(
        id="xid_correlation-1",
        detector="xid_correlation",
        severity=Severity.CRITICAL,
        action=Action.REBOOT_NODE,
        summary=summary,
        first_ts=None,
        last_ts=None,
        node=node,
    )


def test_the_watch_console_is_one_line_per_transition_and_no_markup() -> None:
    out = StringIO()
    sink = ConsoleSink(Console(file=out, width=60, highlight=False))
    names = [name for name, _ in DCGM_HOSTNAMES] + ["gpu-g\r\x1b[2Kfake line", "gpu:smile:"]
    sink.announce([Transition("new", finding(n, f"Xid 79 of {n}"), True) for n in names])
    lines = out.getvalue().splitlines()
    assert len(lines) == len(names)
    for line, name in zip(lines, names, strict=True):
        assert f" {one_line(name)}: Xid 79 of {one_line(name)} -> reboot_node" in line
    assert "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "😄" not in out.getvalue()  # no emoji code read either


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("gpu-node-17", "gpu-node-17"),
        ("a\nb", "a\\nb"),
        ("a\tb\r", "a\\tb\\r"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("gpu\udcff", "gpu\\udcff"),  # an undecodable byte: encodes as UTF-8 now
        ("a\\nb", "a\\\\nb"),  # a real backslash stays apart from an escape
        ("a\u2028b\x85c", "a\\u2028b\\x85c"),  # what str.splitlines() splits on
        ("gpü 日本", "gpü 日本"),
    ],
)
def test_one_line(text: str, shown: str) -> None:
    assert one_line(text) == shown
    assert len(one_line(text).splitlines()) == 1
    one_line(text).encode()

"""One rule for node names (and NCCL job names), wherever you point fleetwatch from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from fleetwatch import config
from fleetwatch.replay import replay
from fleetwatch.sources.context import ReadOptions, ReadStats
from fleetwatch.sources.files import expand, read_paths

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"
FLEETWATCH = [sys.executable, "-m", "fleetwatch"]


def _findings(paths: list[str]) -> list[tuple[str, str, str | None, str]]:
    found = replay(paths, config.load(None), ReadOptions(), None, ReadStats())
    return sorted((f.id, f.detector, f.node, str(f.action)) for f in found)


def test_replaying_the_examples_folder_finds_what_each_incident_finds() -> None:
    incidents = sorted(str(p) for p in EXAMPLES.iterdir() if p.is_dir())
    each = sorted(f for incident in incidents for f in _findings([incident]))
    assert _findings([str(EXAMPLES)]) == each
    assert len(each) == 6  # as the README's `make demo` shows
    assert ("gpu-node-17", "drain_node") not in {
        (n, a) for _, d, n, a in each if d == "pod_evicted"
    }


def test_the_node_is_the_folder_that_directly_holds_the_file(tmp_path: Path) -> None:
    deep = tmp_path / "incident" / "rack-3" / "gpu-node-7"
    deep.mkdir(parents=True)
    (deep / "dmesg.txt").write_text("x\n")
    (tmp_path / "incident" / "loose.log").write_text("x\n")
    by_name = {i.name.rsplit("/", 1)[-1]: i for i in expand([str(tmp_path / "incident")])}
    assert by_name["dmesg.txt"].node == "gpu-node-7" and not by_name["dmesg.txt"].node_is_file_name
    # directly in the folder you named: no folder names it; the file does, flagged
    assert by_name["loose.log"].node == "loose" and by_name["loose.log"].node_is_file_name
    (named,) = expand([str(deep / "dmesg.txt")])
    assert named.node == "dmesg" and named.node_is_file_name
    # a live source names such files after this machine instead
    (live,) = expand([str(deep / "dmesg.txt")], host="this-host")
    assert live.node == "this-host" and not live.node_is_file_name


def test_a_node_named_after_a_file_is_said_once_and_not_with_node(tmp_path: Path) -> None:
    xid = "[  100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.\n"
    for name in ("dmesg", "kern.log"):
        (tmp_path / name).write_text(xid * 3)
    args = [*FLEETWATCH, "parse", str(tmp_path / "dmesg"), str(tmp_path / "kern.log"), "-"]
    done = subprocess.run(args, input=xid, capture_output=True, text=True, check=False)
    warnings = [line for line in done.stderr.splitlines() if "named after their file" in line]
    assert len(warnings) == 1, done.stderr
    assert "dmesg (" in warnings[0] and "kern (" in warnings[0] and "stdin (<stdin>)" in warnings[0]
    named = subprocess.run(
        [*args[:-1], "--node", "gpu-node-9"], capture_output=True, text=True, check=False
    )
    assert "named after" not in named.stderr
    assert {json.loads(line)["node"] for line in named.stdout.splitlines()} == {"gpu-node-9"}


def test_a_hostile_file_name_in_the_warning_stays_on_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "evil\nfleetwatch: all clear\x1b[2J"
    bad.write_text("[  100.0] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.\n")
    done = subprocess.run(
        [*FLEETWATCH, "parse", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert len(done.stderr.splitlines()) == 2  # the warning and the summary, nothing forged
    assert "\\n" in done.stderr and "\x1b" not in done.stderr


def test_nccl_job_names_do_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "nccl-straggler", tmp_path / "nccl-straggler")
    here = os.getcwd()
    try:
        os.chdir(tmp_path)
        near = _findings(["nccl-straggler"])
        os.chdir(tmp_path / "nccl-straggler")
        inside = _findings(["."])
    finally:
        os.chdir(here)
    far = _findings([str(tmp_path / "nccl-straggler")])
    assert near == inside == far and len(far) == 1
    jobs = {e["job"] for b in read_paths([str(tmp_path)]) for e in b.records() if "job" in e}
    assert jobs == {"nccl-straggler"}


def test_a_node_named_after_a_file_is_not_drained(tmp_path: Path) -> None:
    report = ROOT / "tests" / "data" / "smi" / "two-gpus-throttled.txt"
    done = subprocess.run(
        [*FLEETWATCH, "replay", str(report), "--output", "slurm"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout == ""
    assert "not in the slurm output: the node is named after a file" in done.stderr
    # the smi reader names the node itself: the warning is said all the same
    assert "named after their file: two-gpus-throttled" in done.stderr


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    aer = ROOT / "tests" / "data" / "kernel" / "aer.dmesg"
    once = [i.name for i in expand([str(aer)])]
    twice = expand([str(aer), f"{aer.parent}/../kernel/aer.dmesg", str(aer.parent)])
    assert len([i for i in twice if i.name.endswith("aer.dmesg")]) == len(once) == 1


def test_stdin_is_its_own_job_and_a_bad_path_is_one_escaped_line() -> None:
    (stdin,) = expand(["-"])
    assert stdin.job == "stdin" and stdin.node == "stdin" and stdin.node_is_file_name
    done = subprocess.run(
        [*FLEETWATCH, "replay", "/nonexistent/\n\x1b[31mall clear"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "\x1b" not in done.stderr

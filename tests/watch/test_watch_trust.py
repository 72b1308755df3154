"""What a user sees from a real watch process when the input is bad or goes quiet.

* A bad record between two Xid 79s costs that record alone: both are announced.
* A fatal AER report, the last thing a node writes before it goes quiet, is announced
  within a second of its last line, though the reader held it for more lines.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from fleetwatch.events import concat
from fleetwatch.sources import read_paths
from fleetwatch.watch import Watch, load_plan
from tests.inputs.test_quiet_tail import FATAL_AER
from tests.watch.live import Watcher, caught_up, transitions, wait_for

pytestmark = pytest.mark.slow


def xid79(host: str, pci: str) -> str:
    return (
        f"2024-06-04T10:29:43+00:00 {host} kernel: NVRM: Xid (PCI:{pci}): 79, pid=2761, "
        "name=python, GPU has fallen off the bus.\n"
    )


def watch(tmp_path: Path, *extra: str) -> tuple[Watcher, Path, Path]:
    log = tmp_path / "logs" / "kern.log"
    log.parent.mkdir()
    log.write_text("")
    jsonl = tmp_path / "findings.jsonl"
    # --from-start: the file is empty, and lines written before the watch opens it (a
    # loaded machine) are read all the same
    watcher = Watcher(
        "--follow",
        str(log),
        "--from-start",
        "--store",
        str(tmp_path / "w.db"),
        "--jsonl",
        str(jsonl),
        *extra,
    )
    return watcher, log, jsonl


def test_a_bad_record_between_two_xid_79s_costs_only_itself(tmp_path: Path) -> None:
    w, log, jsonl = watch(tmp_path, "--metrics-port", "0")
    try:
        bad = xid79("gpu-node-1", "0000:3b:00").replace(": 79,", ": 99999999999999999999,")
        with log.open("a") as out:  # the three lines arrive in one write
            out.write(xid79("gpu-node-1", "0000:3b:00") + bad + xid79("gpu-node-2", "0000:5e:00"))
        found = wait_for(lambda: len(transitions(jsonl)) >= 2, what="both Xid 79 findings")
        assert found
        nodes = sorted(json.loads(line)["node"] for line in jsonl.read_text().splitlines())
        assert nodes == ["gpu-node-1", "gpu-node-2"]
        unreadable = 'fleetwatch_unreadable_records_total{reader="kmsg",reason="out of range"}'
        assert wait_for(lambda: w.metrics().get(unreadable) == 1, what="the bad record counted")
        assert not any("failed" in line for line in w.lines)  # no source restart
    finally:
        assert w.stop() == 0


def test_a_fatal_aer_on_a_quiet_node_is_announced_within_a_second(tmp_path: Path) -> None:
    w, log, jsonl = watch(tmp_path)
    try:
        with log.open("a") as out:
            out.write(FATAL_AER)
        written = time.monotonic()
        found = wait_for(lambda: transitions(jsonl), timeout=10, what="the fatal AER finding")
        latency = time.monotonic() - written
        record = json.loads(jsonl.read_text().splitlines()[0])
        assert found[0][1] == "new" and record["detector"] == "pcie_aer"
        assert record["severity"] == "critical"
        assert latency < 1.0, f"announced {latency:.2f} s after its last line"
    finally:
        assert w.stop() == 0


def test_a_kill_inside_the_very_first_commit_doubles_no_line(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "kern.log"
    log.parent.mkdir()
    log.write_text(xid79("gpu-node-1", "0000:3b:00"))
    jsonl = tmp_path / "findings.jsonl"
    args = ("--follow", str(log.parent), "--from-start", "--store", str(tmp_path / "w.db"),
            "--jsonl", str(jsonl))  # fmt: skip
    # the commit pauses after its JSONL line is written: the kill lands in between
    first = Watcher(*args, env={"FLEETWATCH_CHAOS_COMMIT_PAUSE_S": "30"})
    wait_for(lambda: transitions(jsonl), what="the line written before the commit")
    first.kill9()
    again = Watcher(*args)
    try:
        wait_for(lambda: caught_up(tmp_path / "w.db", log.parent), what="the restart's commit")
    finally:
        assert again.stop() == 0
    assert [t for _, t in transitions(jsonl)] == ["new"]


def test_the_tick_lets_detectors_forget_what_their_keep_times_end(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "kern.log"
    log.parent.mkdir()
    log.write_text(xid79("gpu-node-1", "0000:3b:00") + xid79("gpu-node-2", "0000:5e:00"))
    plan = load_plan(None, {"follow": [str(log.parent)], "from_start": True,
                            "store": str(tmp_path / "w.db")})  # fmt: skip
    watch = Watch(dataclasses.replace(plan, console=False))
    try:
        events = concat(list(read_paths([str(log.parent)])))
        watch._apply("file", [events], None)
        xid = next(d for d in watch.engine.detectors if d.name == "xid_correlation")
        assert xid.size() > 0
        now = time.time()
        watch._tick(now)  # the first sweep stamps what it sees
        watch._commit()
        held = len(json.dumps(watch.store.checkpoints()["xid_correlation"]))
        watch._tick(now + 3 * 86400)  # days later on the watch's clock: all of it is over
        assert xid.size() == 0
        watch._commit()
        assert len(json.dumps(watch.store.checkpoints()["xid_correlation"])) < held
    finally:
        watch.store.close()

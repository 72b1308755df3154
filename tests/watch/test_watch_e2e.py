"""End to end, with real processes: files appended, rotated, a watcher killed, a receiver down."""

from __future__ import annotations

import json
import os
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.events import concat
from fleetwatch.simulate import simulate
from fleetwatch.sources import read_paths
from tests.watch.live import Receiver, Watcher, caught_up, transitions, wait_for

# real watch processes killed and restarted, a receiver down and back: make test-e2e
pytestmark = [pytest.mark.slow, pytest.mark.e2e]

XID79 = (Path(__file__).parent.parent.parent / "examples" / "xid79-fallen-off-bus"
         / "gpu-node-17" / "dmesg.txt").read_text()  # fmt: skip
XID79_LINE = next(line for line in XID79.splitlines(keepends=True) if "pid=2761" in line)


class Unanswered:
    """A receiver that is down: each connection is closed before a word is said.

    Unlike a port where nothing listens, it counts the watcher's tries, so a test can
    wait for failed deliveries instead of sleeping through them.
    """

    def __init__(self) -> None:
        self.tries = 0
        outer = self

        class Hang(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                outer.tries += 1  # the server closes the connection unanswered

        class Server(socketserver.TCPServer):
            allow_reuse_address = True  # the receiver comes back on this port

        self._server = Server(("127.0.0.1", 0), Hang)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.down()


def fleet(tmp: Path) -> dict[Path, list[str]]:
    """A simulated fleet's files (relative path -> lines): an XID 79 and an AER storm."""
    files: dict[Path, list[str]] = {}
    for i, scenario in enumerate(("xid79-fallen-off-bus", "aer-storm")):
        out = tmp / f"sim-{scenario}"
        simulate(scenario, out, seed=5 + i, nodes=3, lines_per_node=300)
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.name != "answer.json":
                rel = Path(scenario) / path.relative_to(out)
                files[rel] = path.read_text().splitlines(keepends=True)
    return files


def write_in_steps(
    files: dict[Path, list[str]], into: Path, steps: int, between: object = None
) -> None:
    """Append every file's lines in ``steps`` pieces; ``between(step)`` runs after each."""
    for step in range(steps):
        for rel, lines in files.items():
            cut = slice(len(lines) * step // steps, len(lines) * (step + 1) // steps)
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a") as out:
                out.write("".join(lines[cut]))
        time.sleep(0.3)  # a writer's pace, so the files grow in pieces; nothing waits on it
        if callable(between):
            between(step)


def expected_events(files: dict[Path, list[str]], tmp: Path) -> int:
    whole = tmp / "whole"
    for rel, lines in files.items():
        (whole / rel).parent.mkdir(parents=True, exist_ok=True)
        (whole / rel).write_text("".join(lines))
    return len(concat(list(read_paths([str(whole)]))))


def settled(watcher: Watcher, events: int) -> bool:
    return watcher.events_read() == events


def test_appended_lines_reach_the_jsonl_metrics_and_webhook(
    tmp_path: Path, receiver: Receiver
) -> None:
    logs = tmp_path / "logs"
    jsonl = tmp_path / "findings.jsonl"
    w = Watcher("--follow", str(logs), "--store", str(tmp_path / "w.db"), "--jsonl",
                str(jsonl), "--webhook", receiver.url, "--metrics-port", "0")  # fmt: skip
    try:
        (logs / "gpu-node-17").mkdir(parents=True)
        (logs / "gpu-node-17" / "kern.log").write_text(XID79)
        found = wait_for(lambda: transitions(jsonl), what="a finding in the JSONL")
        assert found[0][1] == "new" and found[0][0].startswith("xid_correlation-")
        delivered = wait_for(lambda: receiver.received, what="the webhook")
        assert delivered[0]["id"] == found[0][0] and delivered[0]["action"] == "reboot_node"
        assert delivered[0]["node"] == "gpu-node-17" and receiver.bad_signatures == 0
        metrics = w.metrics()
        key = 'fleetwatch_findings_open{detector="xid_correlation",severity="critical"}'
        assert metrics[key] == 1
        assert metrics['fleetwatch_events_total{kind="xid",source="kmsg"}'] >= 1
        assert metrics['fleetwatch_announcements_total{transition="new"}'] == 1
    finally:
        assert w.stop() == 0


def test_rotation_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    files = fleet(tmp_path)
    logs = tmp_path / "logs"
    # This writer pauses 0.3 s between pieces cut at any line, inside multi-line records
    # too; a quiet tail (0.2 s) would read such a record before its last lines come. A
    # kernel writes a record at once; here the quiet wait is longer than the pauses.
    config = tmp_path / "fw.toml"
    config.write_text(f"[[watch.files]]\npath = {json.dumps(str(logs))}\nquiet_s = 5.0\n")
    w = Watcher("--config", str(config), "--store", str(tmp_path / "w.db"), "--jsonl",
                str(tmp_path / "f.jsonl"), "--metrics-port", "0")  # fmt: skip

    def rotate(step: int) -> None:
        if step == 1:  # logrotate: rename every file, the writer goes on in a new one
            for rel in files:
                os.rename(logs / rel, logs / rel.with_name(rel.name + ".1"))

    try:
        write_in_steps(files, logs, 4, rotate)
        events = expected_events(files, tmp_path)
        try:
            wait_for(lambda: settled(w, events), timeout=60, what=f"{events} events read")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {w.events_read():.0f} were") from None
        # A line read later proves the watcher polled every file again since: a rotated
        # file read twice would be counted by then.
        marker = logs / "marker-node" / "kern.log"
        marker.parent.mkdir()
        marker.write_text(XID79_LINE)
        wait_for(lambda: w.events_read() > events, what="the marker line")
        with marker.open("a") as out:  # and once more: a second poll of every file
            out.write(XID79_LINE.replace("pid=2761", "pid=2762"))
        wait_for(lambda: w.events_read() >= events + 2, what="the second marker line")
        assert w.events_read() == events + 2  # each exactly once
        got = transitions(tmp_path / "f.jsonl")
        assert {i.split("-")[0] for i, _ in got} >= {"xid_correlation", "pcie_aer"}
        assert len(got) == len(set(got))
    finally:
        assert w.stop() == 0


def test_kill_9_and_restart_give_the_findings_of_an_uninterrupted_run(
    tmp_path: Path, receiver: Receiver
) -> None:
    # Each node's kernel log only: one ordered stream per incident. Where two files tell
    # of one incident (the kernel's XID line and dcgm-exporter's XID gauge), its id takes
    # the time of whichever was read first, and that depends on timing, restart or not.
    files = {rel: lines for rel, lines in fleet(tmp_path).items() if rel.name == "kern.log"}

    def run(name: str, kill_at: int | None) -> list[tuple[str, str]]:
        logs, store, jsonl = tmp_path / name, tmp_path / f"{name}.db", tmp_path / f"{name}.jsonl"
        args = ("--follow", str(logs), "--store", str(store), "--jsonl", str(jsonl),
                "--webhook", receiver.url, "--metrics-port", "0")  # fmt: skip
        holder = [Watcher(*args)]

        def maybe_kill(step: int) -> None:
            if step == kill_at:
                holder[0].kill9()
                holder[0] = Watcher(*args)

        write_in_steps(files, logs, 5, maybe_kill)
        wait_for(lambda: caught_up(store, logs), what="every line read and committed")
        assert holder[0].stop() == 0
        return transitions(jsonl)

    whole = run("whole", None)
    delivered_before = len(receiver.received)
    killed = run("killed", 2)
    assert {i.split("-")[0] for i, _ in whole} == {"xid_correlation", "pcie_aer"}
    assert sorted(killed) == sorted(whole)  # same findings, by id, none twice
    assert len(set(killed)) == len(killed)
    delivered = Counter((r["id"], r["transition"]) for r in receiver.received[delivered_before:])
    assert set(delivered) == set(killed)  # at least once, each


def test_a_receiver_that_was_down_gets_every_finding_when_it_is_back(tmp_path: Path) -> None:
    down = Unanswered()
    port = down.port
    jsonl = tmp_path / "f.jsonl"
    w = Watcher("--follow", str(tmp_path / "logs"), "--store", str(tmp_path / "w.db"),
                "--jsonl", str(jsonl), "--webhook", f"http://127.0.0.1:{port}/hook")  # fmt: skip
    try:
        write_in_steps(fleet(tmp_path), tmp_path / "logs", 2)
        announced = wait_for(lambda: transitions(jsonl), what="findings")
        wait_for(lambda: down.tries >= 3, what="three failed tries at the webhook")
        down.close()
        back = Receiver(port)
        back.up()
        try:
            wait_for(lambda: len(back.received) >= len(set(transitions(jsonl))), timeout=60,
                     what="every finding at the webhook")  # fmt: skip
            got = {(r["id"], r["transition"]) for r in back.received}
            assert got == set(transitions(jsonl)) and set(announced) <= got
        finally:
            back.down()
    finally:
        down.close()  # again, if the test failed before: a no-op otherwise
        assert w.stop() == 0

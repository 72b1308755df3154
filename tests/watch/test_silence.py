"""``fleetwatch silence``: what it refuses, what it lists, and a running watch taking it up."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fleetwatch.cli import cli
from fleetwatch.store import Store
from tests.watch.live import Watcher, wait_for

XID79 = (Path(__file__).parent.parent.parent / "examples" / "xid79-fallen-off-bus"
         / "gpu-node-17" / "dmesg.txt").read_text()  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "w.db"
    Store(path).close()
    return path


def held(store: Path) -> list[int]:
    """The ids of the silences that hold now in ``store``."""
    with contextlib.closing(Store(store)) as opened:
        return [s.id for s in opened.silences(time.time())]


def silence(store: Path, *args: str, columns: int = 80) -> Result:
    return CliRunner(env={"COLUMNS": str(columns)}).invoke(
        cli, ["silence", "--store", str(store), *args]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--for", "2h", "--reason", "x"), "give --list, --remove ID, or what to silence"),
        (("--node", "n", "--reason", "x"), "--for is needed"),
        (("--node", "n", "--for", "2 hours", "--reason", "x"), "no span such as"),
        (("--node", "n", "--for", "0m", "--reason", "x"), "no span such as"),
        (("--node", "n", "--for", "2h"), "--reason is needed"),
        (("--node", "n", "--for", "2h", "--reason", " "), "--reason is needed"),
        (("--gpu", "3", "--detector", "hbm_ecc", "--for", "2h", "--reason", "x"), "--node too"),
        (("--node", "n", "--detector", "xid", "--for", "2h", "--reason", "x"), "no detector 'xid'"),
        (("--list", "--remove", "1"), "give --list, --remove ID, or"),
        (("--list", "--node", "n"), "give --list, --remove ID, or"),
        (("--remove", "9"), "no silence 9 in"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    store: Path, args: tuple[str, ...], message: str
) -> None:
    done = silence(store, *args)
    assert done.exit_code == 2, done.output
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert held(store) == []  # nothing was added


def test_no_store_is_said_and_none_is_made(tmp_path: Path) -> None:
    done = silence(tmp_path / "typo.db", "--node", "n", "--for", "1h", "--reason", "x")
    assert done.exit_code == 2 and "no store at" in done.stderr
    assert not (tmp_path / "typo.db").exists()


def test_add_list_and_remove_and_what_came_from_input_stays_data(store: Path) -> None:
    before = time.time()
    added = silence(store, "--node", "gpu-node-7", "--gpu", "3", "--for", "2h",
                    "--reason", "[red]fan swap\x1b[2J\nticket 4711")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert added.stdout.startswith("silence 1: node=gpu-node-7 gpu=3 until ")
    assert len(added.stdout.splitlines()) == 1
    listed = silence(store, "--list", "--output", "jsonl")
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["id"], row["node"], row["gpu"], row["detector"]) == (1, "gpu-node-7", 3, None)
    assert before + 7200 <= row["until"] <= time.time() + 7200
    assert row["reason"] == "[red]fan swap\x1b[2J\nticket 4711"
    assert listed.stderr == f"fleetwatch: 1 silence(s) holding in {store}\n"
    # a table shows the reason as it is: no markup read, no escape sent, one line
    table = silence(store, "--list", "--output", "table", columns=160)
    assert "[red]fan swap\\x1b[2J\\nticket 4711" in table.stdout
    assert "\x1b" not in table.stdout and len(table.stdout.splitlines()) == 2
    narrow = silence(store, "--list", "--output", "table", columns=80).stdout
    assert "gpu-node-7" in narrow and f"{time.gmtime(row['until']).tm_year}-" in narrow
    assert silence(store, "--detector", "thermal_throttle", "--for", "30m",
                   "--reason", "HVAC").exit_code == 0  # fmt: skip
    removed = silence(store, "--remove", "1")
    assert removed.exit_code == 0 and removed.stdout == f"silence 1 removed from {store}\n"
    assert held(store) == [2]  # the thermal_throttle one


def records(jsonl: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in jsonl.read_text().splitlines()] if jsonl.exists() else []


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
@pytest.mark.slow
def test_a_running_watch_takes_up_silences_as_they_are_added_end_and_are_removed(
    tmp_path: Path,
) -> None:
    logs, store, jsonl = tmp_path / "logs", tmp_path / "w.db", tmp_path / "f.jsonl"
    w = Watcher("--follow", str(logs), "--store", str(store), "--jsonl", str(jsonl))

    def operator(*args: str) -> None:  # in this process; the watch runs in its own
        done = silence(store, *args)
        assert done.exit_code == 0, done.output

    def logged(text: str) -> bool:
        return any(text in line for line in w.lines)

    def of(node: str) -> list[tuple[object, object]]:
        return [(r["transition"], r.get("quiet")) for r in records(jsonl) if r["node"] == node]

    def incident_of(node: str) -> list[str]:  # the log lines of the node's incident
        return [ln for ln in w.lines if " incident inc-" in ln and f" of {node}" in ln]

    try:
        operator("--node", "gpu-node-17", "--for", "1h", "--reason", "reseating GPU 3")
        operator("--node", "gpu-node-18", "--for", "1s", "--reason", "a short one")
        wait_for(lambda: logged("silence 1 holds: node=gpu-node-17 until"), what="silence 1")
        (logs / "gpu-node-17").mkdir(parents=True)
        (logs / "gpu-node-17" / "kern.log").write_text(XID79)
        wait_for(lambda: len(of("gpu-node-17")) == 2, what="gpu-node-17's findings")
        assert of("gpu-node-17") == [("new", "silenced")] * 2  # recorded, not announced
        (quiet,) = wait_for(lambda: incident_of("gpu-node-17"), what="the silenced incident")
        assert " INFO fleetwatch: " in quiet and " new (hardware_on_gpu, 2 findings, " in quiet
        assert "reboot_node; silenced): " in quiet  # no warning for what the operator silenced
        # silence 2 ends by the clock, read or not: the watch checks its until at each match
        wait_for(lambda: held(store) == [1], what="the short silence's end")
        (logs / "gpu-node-18").mkdir()
        (logs / "gpu-node-18" / "kern.log").write_text(XID79)
        wait_for(lambda: len(of("gpu-node-18")) == 2, what="gpu-node-18's findings")
        assert of("gpu-node-18") == [("new", None)] * 2  # its silence had ended: announced
        (loud,) = wait_for(lambda: incident_of("gpu-node-18"), what="the announced incident")
        assert " WARNING fleetwatch: " in loud and "reboot_node): " in loud
        operator("--remove", "1")
        wait_for(lambda: logged("silence 1 ended"), what="the removal taken up")
    finally:
        assert w.stop() == 0

"""``fleetwatch watch --act slurm`` in a real process, with a fake scontrol on disk."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.actions.fake_scontrol import FakeScontrol
from tests.watch.live import Watcher, transitions, wait_for
from tests.watch.test_watch_trust import xid79

pytestmark = pytest.mark.slow
NODES = [f"gpu-node-{i}" for i in range(10)]  # the fake Slurm's


def outcomes(store: Path) -> dict[str, str]:
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT node, outcome FROM actions").fetchall())


def start(tmp_path: Path, fake: FakeScontrol, *extra: str) -> Watcher:
    config = tmp_path / "fw.toml"
    config.write_text(
        f"[watch.slurm]\nscontrol = {json.dumps(str(fake.path))}\n"
        "[watch.breaker]\nmax_nodes = 2\nmax_percent = 100.0\n"
    )
    return Watcher("--config", str(config), "--follow", str(tmp_path / "kern.log"),
                   "--store", str(tmp_path / "w.db"), "--jsonl", str(tmp_path / "f.jsonl"),
                   *extra)  # fmt: skip


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_flood_drains_two_nodes_holds_the_rest_and_a_restart_keeps_the_count(
    tmp_path: Path,
) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    log = tmp_path / "kern.log"
    log.write_text("")
    jsonl = tmp_path / "f.jsonl"
    w = start(tmp_path, fake, "--act", "slurm")
    try:
        with log.open("a") as out:
            out.writelines(xid79(f"gpu-node-{i}", "0000:41:00.0") for i in range(5))
        opened = wait_for(
            lambda: [i for i, kind in transitions(jsonl) if i.startswith("breaker-")],
            what="breaker_open",
        )
        assert len(opened) == 1
    finally:
        assert w.stop() == 0
    calls = fake.updates()
    assert len(calls) == 2 and all(c[:1] == ["update"] and c[2] == "state=drain" for c in calls)
    assert all(c[3].startswith("reason=fleetwatch xid_correlation-") for c in calls)
    got = outcomes(tmp_path / "w.db")
    assert sorted(got.values()) == ["acted", "acted", "held", "held", "held"]

    w = start(tmp_path, fake, "--act", "slurm")  # a restart: nothing repeated, the count kept
    try:
        with log.open("a") as out:
            out.write(xid79("gpu-node-9", "0000:41:00.0"))
        wait_for(lambda: outcomes(tmp_path / "w.db").get("gpu-node-9") == "held",
                 what="the sixth node held back")  # fmt: skip
    finally:
        assert w.stop() == 0
    assert fake.updates() == calls


def test_without_act_the_watch_only_says_what_it_would_do(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    (tmp_path / "kern.log").write_text("")
    jsonl = tmp_path / "f.jsonl"
    w = start(tmp_path, fake)
    try:
        with (tmp_path / "kern.log").open("a") as out:
            out.writelines(xid79(f"gpu-node-{i}", "0000:41:00.0") for i in (1, 2, 3))
        wait_for(lambda: [i for i, _ in transitions(jsonl) if i.startswith("breaker-")],
                 what="the breaker_open a dry run reports")  # fmt: skip
    finally:
        assert w.stop() == 0
    assert any("dry run: would run" in line for line in w.lines)
    assert fake.calls() == []
    assert sorted(outcomes(tmp_path / "w.db").values()) == ["would_act", "would_act", "would_hold"]
    (breaker,) = [
        r for r in map(json.loads, jsonl.read_text().splitlines()) if r["detector"] == "breaker"
    ]
    assert breaker["summary"].startswith("breaker_open (dry run): would hold back 1 action(s)")

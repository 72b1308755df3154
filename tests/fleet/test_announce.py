"""Announcers on a real redis-server: the fleet's output stream told once per
transition, shared by a consumer group, a repeat dropped, a crash told again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from prometheus_client import generate_latest

from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.fleet.announce import Announcer, open_sinks
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.metrics import Metrics


def told(finding_id: str, kind: str, quiet: str | None = None) -> dict[str, Any]:
    f = Finding(finding_id, "hbm_ecc", Severity.ERROR, Action.RESET_GPU, "s\n$(reboot)", 1.0, 2.0)
    return Transition(kind, f, quiet is None, quiet).to_json()


def lines(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [(r["id"], r["transition"]) for r in map(json.loads, path.read_text().splitlines())]


def drain(*announcers: Announcer) -> None:
    for _ in range(20):
        if sum(a.step() for a in announcers) == 0:
            return


def test_two_announcers_tell_each_transition_once(redis_url: str, tmp_path: Path) -> None:
    client: Any = redis.Redis.from_url(redis_url)  # replies: Any
    ledger = Ledger(client)
    ledger.tell([told("f1", "new"), told("f2", "new"), told("f3", "new", "silenced")])
    ledger.tell([told("f1", "new")])  # a live agent sent it again
    ledger.tell([told("f2", "resolved")])
    client.xadd("fleetwatch:out", {"transition": b"{not json"})
    metrics = Metrics()
    sinks = [
        open_sinks(
            str(tmp_path / f"{name}.jsonl"), None, "", False, metrics if name == "a" else None
        )
        for name in ("a", "b")
    ]
    a = Announcer(client, "g", "a", sinks[0])
    b = Announcer(client, "g", "b", sinks[1])
    for announcer in (a, b):
        announcer.start()
    drain(a, b)
    got = lines(tmp_path / "a.jsonl") + lines(tmp_path / "b.jsonl")
    assert sorted(got) == [("f1", "new"), ("f2", "new"), ("f2", "resolved"), ("f3", "new")]
    assert a.repeats + b.repeats == 1 and a.bad + b.bad == 1
    assert client.xpending("fleetwatch:out", "g")["pending"] == 0  # all acknowledged
    exposed = generate_latest(metrics.registry).decode()
    # open: f1 and f3 (silenced, still open); f2 resolved: the hash's, fleet-wide
    assert 'fleetwatch_findings_open{detector="hbm_ecc",severity="error"} 2.0' in exposed


def test_an_announcer_killed_before_telling_tells_on_its_restart(
    redis_url: str, tmp_path: Path
) -> None:
    client: Any = redis.Redis.from_url(redis_url)  # replies: Any
    Ledger(client).tell([told("f1", "new")])
    first = Announcer(client, "g", "a", open_sinks(None, None, "", False, None))
    first.start()
    # read (pending to "a") and claimed, then killed before telling or acknowledging
    entries = client.xreadgroup("g", "a", {"fleetwatch:out": ">"}, count=10)
    entry_id = entries[0][1][0][0]
    transition = Transition("new", Finding.from_json(told("f1", "new")), True)
    assert first._claim(transition, entry_id)
    other = Announcer(
        client, "g", "b", open_sinks(str(tmp_path / "b.jsonl"), None, "", False, None)
    )
    drain(other)
    again = Announcer(
        client, "g", "a", open_sinks(str(tmp_path / "a.jsonl"), None, "", False, None)
    )
    again.start()
    drain(again)
    assert lines(tmp_path / "a.jsonl") == [("f1", "new")] and lines(tmp_path / "b.jsonl") == []

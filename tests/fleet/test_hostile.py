"""What the fleet reads from Redis is data: hostile entries, states and transitions on a
real redis-server are counted and skipped, never a crash, and shown escaped."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from fleetwatch import config
from fleetwatch.events import BatchBuilder
from fleetwatch.fleet.announce import Announcer, Sinks, open_sinks
from fleetwatch.fleet.codec import encode
from fleetwatch.fleet.correlate import Correlator, Settings
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.transport import RedisStreams
from fleetwatch.sinks.console import ConsoleSink


def xid(ts: float) -> bytes:
    builder = BatchBuilder()
    builder.add({"kind": "xid", "node": "n1", "pci": "0000:3b:00.0", "code": 79, "ts": ts})
    return encode(builder.seal())


def test_hostile_entries_and_state_cost_only_themselves(redis_url: str) -> None:
    client: Any = redis.Redis.from_url(redis_url)
    transport, ledger = RedisStreams(client), Ledger(client)
    good = {"family": b"cluster", "batch": xid(1.7e9)}
    transport.publish(
        [
            (0, {"family": b"cluster", "source": b"a/1", "seq": b"9" * 400, "batch": b"x"}),
            (0, {"family": b"cluster", "source": b"a/1", "seq": b"-5", "batch": b"x"}),
            (0, {"family": b"$(reboot)", "batch": b"FWB\x01"}),
            (0, {"family": b"cluster", "batch": xid(float("nan"))}),  # untimed: applied
            (0, good),
        ]
    )
    worker = Correlator("c1", transport, ledger, config.load(None), Settings(1))
    for _ in range(5):
        worker.step()
    assert worker.bad == 3 and ledger.counter("bad") == 3
    assert any(f["detector"] == "xid_correlation" for f in ledger.findings())
    # a state no fleetwatch wrote: the next owner starts the shard afresh from its offset
    worker.close()
    states = (
        b"not json",
        b"[1]",
        b'{"offset": "0-0", "lifecycle": {"open": [[{}, 0, 0, 0]]}}',
        b'{"offset": "zzz"}',
        b'{"offset": "0-0", "families": {"cluster": {"xid_correlation": {"gpu": 5}}}}',
    )
    for state in states:
        client.set("fleetwatch:state:0", state)
        again = Correlator("c2", transport, ledger, config.load(None), Settings(1))
        again.step()
        assert 0 in again.owned
        transport.publish([(0, good)])  # what a detector restored from it meets
        again.step()
        assert 0 in again.owned
        again.close()


def test_hostile_transitions_are_counted_and_shown_escaped(redis_url: str, tmp_path: Path) -> None:
    client: Any = redis.Redis.from_url(redis_url)
    base = {"severity": "critical", "action": "reboot_node", "first_ts": 1, "last_ts": 1}
    bad = [
        {**base, "id": "e1", "detector": "x", "summary": 12345, "transition": "new"},
        {**base, "id": "e2", "detector": "x", "summary": "s", "node": ["a"], "transition": "new"},
        {
            **base,
            "id": "e3",
            "detector": "x",
            "summary": "s",
            "first_ts": float("nan"),
            "transition": "new",
        },
    ]
    for t in bad:
        client.xadd("fleetwatch:out", {"transition": json.dumps(t)})
    client.xadd("fleetwatch:out", {"transition": b"[" * 100_000})
    huge = {**base, "id": "e5", "detector": "x", "summary": "s", "transition": "new"}
    text = json.dumps(huge).replace('"first_ts": 1,', '"first_ts": 1' + "0" * 400 + ",")
    client.xadd("fleetwatch:out", {"transition": text})  # an int no column holds
    evil = {
        **base,
        "id": "e4",
        "detector": "\x1b[2J\nFAKE",
        "summary": "$(reboot)\n",
        "transition": "new",
    }
    client.xadd("fleetwatch:out", {"transition": json.dumps(evil)})
    shown = io.StringIO()
    jsonl = tmp_path / "out.jsonl"
    sinks = open_sinks(str(jsonl), None, "", False, None)
    sinks = Sinks(sinks.jsonl, ConsoleSink(Console(file=shown, width=200)))
    announcer = Announcer(client, "g", "a", sinks)
    announcer.start()
    for _ in range(3):
        announcer.step()
    announcer.close()
    assert announcer.bad == 5 and announcer.told == 1
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["id"] == "e4"  # strict JSON: no NaN
    printed = shown.getvalue()
    assert "\x1b" not in printed and printed.count("\n") == 1 and "FAKE" in printed

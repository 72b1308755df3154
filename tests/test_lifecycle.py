"""Finding lifecycle: transitions only, resolution, flapping and silences."""

from __future__ import annotations

import dataclasses
import json

from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Lifecycle, LifecycleConfig, Silence


def finding(fid: str = "xid_correlation-1", **kw: object) -> Finding:
    base = Finding(
        id=fid,
        detector="xid_correlation",
        severity=Severity.WARNING,
        action=Action.INVESTIGATE,
        summary="Xid 13 on GPU 3",
        first_ts=100.0,
        last_ts=100.0,
        node="gpu-node-7",
        gpu=3,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def kinds(transitions: list) -> list[tuple[str, bool]]:  # type: ignore[type-arg]
    return [(t.kind, t.announce) for t in transitions]


def test_repeats_are_updates_and_only_growth_is_announced() -> None:
    life = Lifecycle(LifecycleConfig())
    assert kinds(life.update([finding()], now=0)) == [("new", True)]
    assert life.update([finding(count=5, last_ts=160.0)], now=10) == []  # a repeat: no news
    grown = life.update([finding(severity=Severity.CRITICAL, action=Action.DRAIN_NODE)], now=20)
    assert kinds(grown) == [("escalated", True)]
    assert life.update([finding(severity=Severity.CRITICAL, action=Action.DRAIN_NODE)], 30) == []


def test_a_quiet_finding_resolves_after_the_period() -> None:
    life = Lifecycle(LifecycleConfig(resolve_after_s=600))
    life.update([finding()], now=0)
    assert life.tick(now=599) == []
    resolved = life.tick(now=600)
    assert kinds(resolved) == [("resolved", True)]
    assert resolved[0].finding.status == "resolved"
    assert resolved[0].to_json()["transition"] == "resolved"
    assert life.open == {}


def test_a_flapping_entity_is_recorded_but_not_announced_again() -> None:
    life = Lifecycle(LifecycleConfig(resolve_after_s=10, flap_window_s=3600, flap_threshold=3))
    seen = []
    for i in range(4):  # the same GPU opens a new incident four times within the hour
        seen += life.update([finding(f"xid_correlation-{i}", first_ts=100.0 + i)], now=i * 100)
        seen += life.tick(now=i * 100 + 50)
    news = [(t.kind, t.announce, t.why_quiet) for t in seen if t.kind == "new"]
    assert news == [
        ("new", True, None),
        ("new", True, None),
        ("new", False, "flapping"),
        ("new", False, "flapping"),
    ]
    # quiet for a whole window: announced again
    later = life.update([finding("xid_correlation-9", first_ts=9000.0)], now=10_000)
    assert kinds(later) == [("new", True)]


def test_a_silence_matches_node_gpu_detector_until_a_time() -> None:
    life = Lifecycle(LifecycleConfig(), [Silence(node="gpu-node-7", gpu=3, until=1000.0)])
    quiet = life.update([finding()], now=0)
    assert [(t.announce, t.why_quiet) for t in quiet] == [(False, "silenced")]
    assert quiet[0].to_json()["quiet"] == "silenced"
    other = life.update([finding("xid_correlation-2", gpu=4)], now=0)
    assert kinds(other) == [("new", True)]
    after = life.update([finding("xid_correlation-3", first_ts=5.0)], now=1000)
    assert kinds(after) == [("new", True)]  # the silence has ended


def test_the_lifecycle_survives_a_restart_as_json() -> None:
    life = Lifecycle(LifecycleConfig())
    life.update([finding()], now=0)
    again = Lifecycle(LifecycleConfig())
    again.restore(json.loads(json.dumps(life.state())))
    assert again.update([finding(count=3)], now=5) == []  # not new again after a restart
    assert kinds(again.tick(now=1000)) == [("resolved", True)]

"""The actor over a real store: a flood, a restart, a sliding window, a dry run."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from fleetwatch.actions.actor import Actor, requests
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.slurm import SlurmConfig
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Transition
from fleetwatch.store import Commit, Store
from tests.actions.fake_scontrol import FakeScontrol

NODES = [f"gpu-node-{i:02d}" for i in range(50)]
T0 = 1_800_000_000.0


def fault(node: str, action: Action = Action.DRAIN_NODE, n: int = 0) -> Finding:
    return Finding(
        id=f"xid_correlation-{node}-{n}",
        detector="xid_correlation",
        severity=Severity.CRITICAL,
        action=action,
        summary="fault",
        first_ts=T0,
        last_ts=T0,
        node=node,
        gpu=0,
    )


def ask(store: Store, findings: list[Finding], nodes: list[str] = NODES, kind: str = "new") -> None:
    """Commit the requests of ``findings``' transitions, as the watch does."""
    transitions = [Transition(kind, f, True) for f in findings]
    store.commit(Commit([], {}, {}, [], {}, requests(transitions), nodes))


def actor(store: Store, fake: FakeScontrol, act: str = "slurm", **kw: float) -> Actor:
    config = BreakerConfig(**kw)  # type: ignore[arg-type]
    said: list[str] = []
    made = Actor(store, config, act, SlurmConfig(scontrol=str(fake.path)), CollectorRegistry(),
                 lambda line, level: said.append(line))  # fmt: skip
    made.said = said  # type: ignore[attr-defined]
    return made


def drained(fake: FakeScontrol) -> list[str]:
    return [call[1].removeprefix("nodename=") for call in fake.updates()]


def test_a_flood_on_50_nodes_acts_on_the_limit_and_reports_the_rest(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    ask(store, [fault(n) for n in NODES])
    a = actor(store, fake)
    found = a.run(T0, set())
    assert drained(fake) == NODES[:2]
    outcomes = [r.outcome for r in store.actions()]
    assert outcomes.count("acted") == 2 and outcomes.count("held") == 48
    (breaker,) = found
    assert breaker.detector == "breaker" and breaker.severity == Severity.CRITICAL
    assert breaker.action == Action.INVESTIGATE and breaker.count == 48
    assert "held back 48 action(s) on 48 node(s)" in breaker.summary
    assert "at most 2 node(s) per 3600 s of 50 in Slurm" in breaker.summary
    assert breaker.evidence[0] == (
        "held back: drain_node of gpu-node-02 for xid_correlation-gpu-node-02-0 (xid_correlation)"
    )


def test_metrics_count_outcomes_and_show_the_breaker_open(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    registry = CollectorRegistry()
    a = Actor(store, BreakerConfig(), "slurm", SlurmConfig(scontrol=str(fake.path)), registry)
    assert registry.get_sample_value("fleetwatch_actions_total", {"outcome": "held"}) == 0
    assert registry.get_sample_value("fleetwatch_breaker_open") == 0
    ask(store, [fault(n) for n in NODES[:5]])
    a.run(T0, set())
    assert registry.get_sample_value("fleetwatch_actions_total", {"outcome": "acted"}) == 2
    assert registry.get_sample_value("fleetwatch_actions_total", {"outcome": "held"}) == 3
    assert registry.get_sample_value("fleetwatch_breaker_open") == 1


def test_a_restart_neither_repeats_an_action_nor_forgets_the_count(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    ask(store, [fault(n) for n in NODES[:1]])
    actor(store, fake).run(T0, set())
    store.close()

    store = Store(tmp_path / "w.db")  # a new process: only the store is left
    ask(store, [fault(NODES[0])])  # the same finding asks again (escalated): one request
    again = actor(store, fake)
    assert again.nodes == set(NODES)
    assert again.run(T0 + 10, set()) == []
    assert drained(fake) == NODES[:1]
    ask(store, [fault(n) for n in NODES[1:4]])
    found = again.run(T0 + 20, set())
    assert drained(fake) == NODES[:2]  # one more fits: the first still counts
    assert found[0].count == 2 and found[0].first_ts == T0 + 20


def test_the_window_slides(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    a = actor(store, fake, window_s=3600.0)
    ask(store, [fault(n) for n in NODES[:3]])
    a.run(T0, set())
    assert drained(fake) == NODES[:2]
    ask(store, [fault(NODES[3])])
    a.run(T0 + 3599, set())
    assert drained(fake) == NODES[:2]  # both still in the window
    ask(store, [fault(n) for n in NODES[4:7]])
    a.run(T0 + 3601, set())
    assert drained(fake) == NODES[:2] + NODES[4:6]  # they left it: two more
    held = [r.node for r in store.actions("held")]
    assert held == [NODES[2], NODES[3], NODES[6]]  # held back stays held back


def test_the_breaker_finding_continues_while_open_and_restarts_once_resolved(
    tmp_path: Path,
) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    a = actor(store, fake)
    ask(store, [fault(n) for n in NODES[:3]])
    (first,) = a.run(T0, set())
    ask(store, [fault(NODES[3])])
    (grown,) = a.run(T0 + 5, {first.id})  # still open: the same finding, grown
    assert grown.id == first.id and grown.count == 2
    ask(store, [fault(NODES[4])])
    (fresh,) = a.run(T0 + 900, set())  # the lifecycle resolved it: a new one
    assert fresh.id != first.id and fresh.count == 1


def test_a_dry_run_logs_what_it_would_do_and_runs_nothing(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    a = actor(store, fake, act="")
    ask(store, [fault(n) for n in NODES[:2]])
    assert a.run(T0, set()) == []  # within the breaker's limit: no breaker_open
    assert fake.calls() == []
    assert [r.outcome for r in store.actions()] == ["would_act", "would_act"]
    said = a.said  # type: ignore[attr-defined]
    assert any("dry run: would run" in line and "nodename=gpu-node-00" in line for line in said)


def test_a_dry_run_reports_the_breaker_open_it_would_cause(tmp_path: Path) -> None:
    # Someone trying the dry run on a flood must see that the breaker would trip.
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    registry = CollectorRegistry()
    a = Actor(store, BreakerConfig(), "", SlurmConfig(scontrol=str(fake.path)), registry)
    ask(store, [fault(n) for n in NODES])
    (breaker,) = a.run(T0, set())
    assert fake.calls() == []
    outcomes = [r.outcome for r in store.actions()]
    assert outcomes.count("would_act") == 2 and outcomes.count("would_hold") == 48
    assert breaker.detector == "breaker" and breaker.severity == Severity.CRITICAL
    assert breaker.summary.startswith(
        "breaker_open (dry run): would hold back 48 action(s) on 48 node(s) (gpu-node-02, "
    )
    assert breaker.evidence[0] == (
        "would hold back: drain_node of gpu-node-02 for xid_correlation-gpu-node-02-0"
        " (xid_correlation)"
    )
    assert registry.get_sample_value("fleetwatch_breaker_open") == 1
    ask(store, [fault(NODES[2], n=1)])  # more in the same window: the same finding, grown
    (grown,) = a.run(T0 + 5, {breaker.id})
    assert grown.id == breaker.id and grown.count == 49


def test_what_is_not_acted_on(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    weak = fault("gpu-node-00", Action.INVESTIGATE)
    quiet = Transition("new", fault("gpu-node-01"), False, "silenced")
    done = Transition("resolved", fault("gpu-node-02"), True)
    assert requests([Transition("new", weak, True), quiet, done]) == []
    ask(store, [fault("bad;name"), fault("ALL"), fault("gpu-node-03", Action.RESET_GPU)])
    actor(store, fake).run(T0, set())
    assert drained(fake) == ["gpu-node-03"]  # a GPU reset drains its node: Slurm has no less
    rows = {r.node: r for r in store.actions()}
    assert rows["bad;name"].outcome == "refused"
    assert (rows["ALL"].outcome, rows["ALL"].detail) == (
        "refused",
        "node name is not a Slurm node name (Slurm reads ALL, in any case, as every node)",
    )


def test_a_failed_drain_is_recorded_and_counted(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    fake.fail_with(1)
    store = Store(tmp_path / "w.db")
    ask(store, [fault(n) for n in NODES[:3]])
    actor(store, fake).run(T0, set())
    rows = store.actions()
    assert [r.outcome for r in rows] == ["failed", "failed", "held"]
    assert "Invalid node name" in rows[0].detail


@pytest.mark.parametrize("act", ["slurm", ""])
def test_all_in_any_case_is_refused_before_slurm_is_asked_about_it(
    tmp_path: Path, act: str
) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    ask(store, [fault(n) for n in ("all", "ALL", "All")])
    assert actor(store, fake, act=act, max_nodes=50, max_percent=100.0).run(T0, set()) == []
    assert [r.outcome for r in store.actions()] == ["refused"] * 3
    assert fake.calls() == [] and set(fake.reasons().values()) == {""}  # no node drained


def test_a_name_slurm_does_not_know_as_one_node_is_refused_and_costs_no_slot(
    tmp_path: Path,
) -> None:
    # a-gpus is a NodeSet: `nodename=a-gpus` would drain all of NODES; Slurm's
    # `show node` knows no node of that name, nor of the unknown one (both decided first)
    fake = FakeScontrol(tmp_path / "bin", NODES, {"a-gpus": NODES})
    store = Store(tmp_path / "w.db")
    ask(store, [fault("a-gpus"), fault("a-not-in-slurm"), fault(NODES[7]), fault(NODES[8])])
    assert actor(store, fake).run(T0, set()) == []
    rows = {r.node: r for r in store.actions()}
    assert rows["a-gpus"].outcome == rows["a-not-in-slurm"].outcome == "refused"
    assert rows["a-gpus"].detail == "Slurm knows no node 'a-gpus': not drained"
    assert drained(fake) == [NODES[7], NODES[8]]  # the refusals took no slot of two
    assert [n for n, why in fake.reasons().items() if why] == [NODES[7], NODES[8]]


def test_drains_fleetwatch_made_elsewhere_in_the_window_count_toward_the_limit(
    tmp_path: Path,
) -> None:
    # other nodes' own fleetwatch (slurm-health) drained two nodes in the last hour:
    # Slurm's reasons say so, and this store, which saw none of it, holds the third back
    fake = FakeScontrol(tmp_path / "bin", NODES)
    fake.set_reason(NODES[0], "fleetwatch xid_correlation-a: xid_correlation reboot_node", T0 - 60)
    fake.set_reason(NODES[1], "fleetwatch xid_correlation-b: xid_correlation reboot_node", T0 - 900)
    fake.set_reason(NODES[2], "fleetwatch xid_correlation-c: older", T0 - 3700)  # outside
    fake.set_reason(NODES[3], "operator: fan swap", T0 - 60)  # not fleetwatch's
    store = Store(tmp_path / "w.db")
    ask(store, [fault(NODES[9])], nodes=[NODES[9]])  # a store that has seen its node alone
    (breaker,) = actor(store, fake).run(T0, set())
    assert drained(fake) == []
    (row,) = store.actions()
    assert (row.outcome, row.detail) == (
        "held",
        "2 of 2 node(s) drained by fleetwatch in the last 3600 s (50 in Slurm)",
    )
    assert breaker.summary.endswith("at most 2 node(s) per 3600 s of 50 in Slurm")


def test_this_stores_drains_and_slurms_count_once_each_node(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    a = actor(store, fake)
    ask(store, [fault(NODES[0])])
    a.run(T0, set())  # drained: in this store and, with our reason, in Slurm
    fake.set_reason(NODES[0], fake.reasons()[NODES[0]], T0)  # as the fake's clock is not T0
    ask(store, [fault(NODES[1])])
    assert a.run(T0 + 10, set()) == []
    assert drained(fake) == NODES[:2]  # NODES[0] counted once: room for NODES[1]
    ask(store, [fault(NODES[2])])
    assert a.run(T0 + 20, set())[0].count == 1


@pytest.mark.parametrize("trouble", ["fails", "hangs"])
def test_when_slurm_cannot_be_asked_nothing_is_drained_blind(tmp_path: Path, trouble: str) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    fake.sinfo_fails() if trouble == "fails" else fake.sinfo_hangs()
    store = Store(tmp_path / "w.db")
    ask(store, [fault(n) for n in NODES[:2]])
    said: list[str] = []
    a = Actor(store, BreakerConfig(), "slurm", SlurmConfig(scontrol=str(fake.path), timeout_s=0.3),
              CollectorRegistry(), lambda line, level: said.append(line))  # fmt: skip
    (breaker,) = a.run(T0, set())
    assert fake.calls() == []  # neither a check nor a drain
    rows = store.actions()
    assert [r.outcome for r in rows] == ["held", "held"]
    assert all(
        r.detail.startswith("Slurm could not be asked for the fleet's drains (") for r in rows
    )
    assert rows[0].detail.endswith("): nothing drained blind")
    assert "held back 2 action(s)" in breaker.summary
    assert "; Slurm could not be asked for the fleet's drains (" in breaker.summary
    assert any(line.startswith("breaker: held back drain_node of gpu-node-00") for line in said)


def test_a_dry_run_asks_slurm_nothing(tmp_path: Path) -> None:
    fake = FakeScontrol(tmp_path / "bin", NODES)
    store = Store(tmp_path / "w.db")
    ask(store, [fault(NODES[0])])
    actor(store, fake, act="").run(T0, set())
    assert fake.calls() == [] and fake.sinfo_calls() == []

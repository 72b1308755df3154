"""``fleetwatch watch --kube-conditions --act kubernetes`` in a real process, against the
loopback stand-in API server (``tests/inputs/fake_kube_api.py``: no real one runs here)."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetwatch.actions.kube_nodes import KubeNodeSettings
from fleetwatch.watch import load_plan
from tests.inputs.fake_kube_api import FakeApiServer
from tests.watch.live import SECRET, Watcher, transitions, wait_for
from tests.watch.test_watch_trust import xid79

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "watch.toml"


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_finding_becomes_a_condition_an_event_a_taint_and_clears(
    api: FakeApiServer, tmp_path: Path
) -> None:
    uid = api.nodes.add("gpu-node-1")
    log, jsonl, store = tmp_path / "kern.log", tmp_path / "f.jsonl", tmp_path / "w.db"
    log.write_text("")
    config = tmp_path / "fw.toml"
    config.write_text(
        "[watch]\nresolve_after_s = 1.0\n[watch.breaker]\nmax_percent = 100.0\n"
        f"[watch.kube_nodes]\nkubeconfig = '{api.kubeconfig(tmp_path)}'\n"
    )
    # the kubeconfig in the file, not --kubeconfig: that would watch Events too, whose
    # stop waits out a watch request
    w = Watcher("--config", str(config), "--follow", str(log), "--store", str(store),
                "--jsonl", str(jsonl), "--kube-conditions", "--act", "kubernetes")  # fmt: skip
    try:
        with log.open("a") as out:
            out.write(xid79("gpu-node-1", "0000:3b:00.0"))
        wait_for(lambda: (api.nodes.condition("gpu-node-1", "GPUXidFault") or {}).get("status")
                 == "True", what="the condition True")  # fmt: skip
        wait_for(lambda: api.nodes.taints("gpu-node-1"), what="the taint")
        wait_for(lambda: "resolved" in {k for _, k in transitions(jsonl)}, what="resolved")
        wait_for(lambda: (api.nodes.condition("gpu-node-1", "GPUXidFault") or {}).get("status")
                 == "False", what="the condition False")  # fmt: skip
        wait_for(lambda: len(api.nodes.events) == 2, what="the two Events")
    finally:
        assert w.stop() == 0
    (fid, _), *_ = transitions(jsonl)
    node = api.nodes.node("gpu-node-1")
    assert node["spec"]["unschedulable"] is True  # reboot_node: cordon and taint, kept
    assert node["spec"]["taints"] == [
        {"key": "fleetwatch.io/gpu-fault", "value": "xid_correlation", "effect": "NoSchedule"}
    ]
    opened, resolved = api.nodes.events
    assert (opened["reason"], opened["type"], opened["involvedObject"]["uid"]) == (
        "Xid79", "Warning", uid)  # fmt: skip
    assert opened["message"].startswith(f"fleetwatch {fid} new: Xid 79")
    assert (resolved["reason"], resolved["type"]) == ("GPUXidFaultResolved", "Normal")
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT finding_id, outcome FROM actions").fetchall() == [(fid, "acted")]


def test_a_kubeconfig_that_does_not_load_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("clusters: [")
    done = subprocess.run(
        [sys.executable, "-m", "fleetwatch", "watch", "--follow", str(tmp_path / "k.log"),
         "--store", str(tmp_path / "w.db"), "--act", "kubernetes"],
        env={"KUBECONFIG": str(tmp_path / "bad"), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot load the kubeconfig" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_example_names_every_kube_nodes_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETWATCH_WEBHOOK_SECRET", SECRET)
    plan = load_plan(EXAMPLE, {})
    assert plan.kube_nodes == KubeNodeSettings()
    text = EXAMPLE.read_text()
    for field in dataclasses.fields(KubeNodeSettings):
        assert f"\n{field.name} = " in text, f"examples/watch.toml lacks {field.name}"
    assert load_plan(None, {"follow": ["x"]}).kube_nodes is None  # off unless asked
    asked = load_plan(None, {"follow": ["x"], "kube_conditions": True, "kubeconfig": "k"})
    assert asked.kube_nodes == KubeNodeSettings(kubeconfig="k")
    acting = load_plan(None, {"follow": ["x"], "act": "kubernetes"})
    assert acting.kube_nodes == KubeNodeSettings()

"""deploy/kubernetes/rbac.yaml grants exactly the requests fleetwatch makes, and no more.

Each service account's grants are read from the manifest (its bindings, their roles'
rules, a RoleBinding only within its namespace); the requests are the ones the code
really sent to the loopback stand-in API server (``tests/inputs/fake_kube_api.py``),
each turned into the (verb, resource, namespace) the API server authorizes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # PyYAML, the kubernetes client's

from fleetwatch.actions.kube_nodes import KubeNodes, KubeNodeSettings
from fleetwatch.events import EventBatch
from fleetwatch.findings import Action
from fleetwatch.inputs.kube_watch import KubeSettings, KubeSource
from fleetwatch.lifecycle import Transition
from fleetwatch.sources import ReadOptions
from tests.actions.test_kube_nodes import xid
from tests.inputs.fake_kube_api import FakeApiServer, evicted
from tests.watch.live import wait_for

RBAC = Path(__file__).parent.parent.parent / "deploy" / "kubernetes" / "rbac.yaml"
Grant = tuple[str, str, str]  # verb, resource (with subresource), namespace ("*": any)


def grants(account: str, namespace: str = "fleetwatch") -> set[Grant]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}  # fmt: skip
    out: set[Grant] = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        subject = {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        if subject not in binding["subjects"]:
            continue
        where = binding["metadata"].get("namespace") or "*"
        ref = binding["roleRef"]
        role_ns = where if ref["kind"] == "Role" else None
        for rule in roles[(ref["kind"], role_ns, ref["name"])]["rules"]:
            assert rule["apiGroups"] == [""]  # core/v1 only
            out |= {(v, r, where) for v in rule["verbs"] for r in rule["resources"]}
    return out


def authorized(method: str, path: str) -> Grant:
    """The (verb, resource, namespace) the API server checks for one request."""
    bare, _, query = path.partition("?")
    if m := re.fullmatch(r"/api/v1/nodes/[^/]+(/status)?", bare):
        resource = "nodes/status" if m[1] else "nodes"
        return {"GET": "get", "PATCH": "patch"}[method], resource, "*"
    if m := re.fullmatch(r"/api/v1/namespaces/([^/]+)/events", bare):
        assert method == "POST"
        return "create", "events", m[1]
    assert bare == "/api/v1/events" and method == "GET", path
    return ("watch" if "watch=true" in query else "list"), "events", "*"


def allows(held: set[Grant], wanted: Grant) -> bool:
    verb, resource, _ = wanted
    return (verb, resource, "*") in held or wanted in held


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    yield server
    server.close()


def test_the_node_agent_may_do_what_it_does_and_nothing_more(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.nodes.add("gpu-node-1")
    settings = KubeNodeSettings(kubeconfig=str(api.kubeconfig(tmp_path)))
    nodes = KubeNodes(settings, "watcher-1")
    nodes.start()
    try:
        f = xid()
        nodes.report([Transition("new", f, True), Transition("resolved", f, True)])
        nodes.take_out(f.id, "gpu-node-1", f.detector, Action.REBOOT_NODE)
        wait_for(lambda: api.nodes.taints("gpu-node-1"), what="the take-out")
    finally:
        nodes.stop()
    used = {authorized(r.method, r.path) for r in api.nodes.requests}
    held = grants("fleetwatch-agent")
    assert all(allows(held, u) for u in used), used - held
    assert held == used  # each rule is needed
    assert ("patch", "nodes", "*") in held  # the act binding, deletable without --act


def test_the_events_watcher_may_list_and_watch_events_and_nothing_more(
    api: FakeApiServer, tmp_path: Path
) -> None:
    api.add(evicted("trainer-0", "u0"))
    source = KubeSource(KubeSettings(kubeconfig=str(api.kubeconfig(tmp_path)), watch_timeout_s=1),
                        ReadOptions(), None)  # fmt: skip
    stop = threading.Event()
    got: list[EventBatch] = []

    def deliver(batches: list[EventBatch], position: Any) -> None:
        got.extend(batches)

    thread = threading.Thread(target=source.run, args=(deliver, stop))
    thread.start()
    try:
        wait_for(lambda: any("watch=true" in p for p in api.event_reads), what="the watch")
    finally:
        stop.set()
        api.compact()  # ends the open watch at once
        thread.join(timeout=10)
    used = {authorized("GET", p) for p in api.event_reads}
    assert used == grants("fleetwatch-events") == {("list", "events", "*"),
                                                   ("watch", "events", "*")}  # fmt: skip
    assert grants("nobody") == set()

"""A real Prometheus scrapes a real ``fleetwatch watch``: a fault appended to the followed
file fires the shipped alert, and every query of the shipped dashboard runs.

The rules are deploy/prometheus/rules.yml as shipped, but for one transform: each
``for:`` (5 and 15 minutes) becomes 1 s, so that a stopped watch's FleetwatchDown
fires within a test. Prometheus scrapes and evaluates every second.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.deploy import dashboard
from tests.deploy.servers import (
    DEPLOY,
    FAULT,
    PROMETHEUS,
    Prometheus,
    get_json,
    missing,
)
from tests.watch.live import Watcher, caught_up, wait_for

pytestmark = pytest.mark.e2e

LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


def rules_for_a_test() -> dict[str, Any]:
    """rules.yml with every ``for:`` cut to 1 s (see the module docstring)."""
    rules: dict[str, Any] = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    return rules


@dataclass
class Stack:
    prometheus: Prometheus
    watcher: Watcher
    instance: str


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = missing(PROMETHEUS)
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("prometheus")
    logs = folder / "logs"
    log = logs / "gpu-node-17" / "kern.log"
    log.parent.mkdir(parents=True)
    log.touch()
    store = folder / "w.db"
    watcher = Watcher(
        "--follow", str(log), "--node", "gpu-node-17", "--store", str(store), "--metrics-port", "0"
    )
    instance = f"127.0.0.1:{watcher.metrics_port}"
    prometheus = Prometheus(folder, [instance], rules_for_a_test())
    try:
        prometheus.start()
        wait_for(lambda: caught_up(store, logs), what="the watch to stand at the file's end")
        with log.open("a") as out:
            out.write(FAULT)
        yield Stack(prometheus, watcher, instance)
    finally:
        prometheus.stop()
        if watcher.proc.poll() is None:
            watcher.stop()


def test_a_fault_appended_to_a_followed_file_fires_the_paging_alert(stack: Stack) -> None:
    (alert,) = wait_for(
        lambda: stack.prometheus.alerts("FleetwatchCriticalOutOfService"),
        timeout=25,
        what="FleetwatchCriticalOutOfService to fire",
    )
    labels = alert["labels"]
    assert labels == {
        "alertname": "FleetwatchCriticalOutOfService",
        "urgency": "page",
        "job": "fleetwatch",
        "instance": stack.instance,
        "node": "gpu-node-17",
        "pci": "0000:3b:00.0",
        "detector": "xid_correlation",
        "severity": "critical",
        "action": "reboot_node",
    }
    assert alert["annotations"]["summary"].startswith("gpu-node-17 GPU  0000:3b:00.0:")
    for quiet in ("FleetwatchCritical", "FleetwatchBreakerOpen", "FleetwatchDown"):
        assert stack.prometheus.alerts(quiet) == []
        assert stack.prometheus.alerts(quiet, "pending") == []


def test_every_dashboard_query_runs_and_the_finding_panels_show_the_finding(
    stack: Stack,
) -> None:
    board = dashboard.load()
    values = {"job": "fleetwatch", "instance": stack.instance}  # a regex that matches itself
    prometheus = stack.prometheus
    # scraped once at least, whichever test ran first (or alone)
    finding_series = ("fleetwatch_finding", "fleetwatch_findings_open")
    wait_for(
        lambda: prometheus.api("query", query='fleetwatch_finding{node="gpu-node-17"}')["result"],
        timeout=25,
        what="the finding to be scraped",
    )
    # Grafana's label_values(...) variables, through the labels API it uses
    for name in ("job", "instance"):
        query = dashboard.variables(board)[name]["query"]["query"]
        matched = LABEL_VALUES.match(dashboard.substitute(query, values))
        assert matched, query
        series, label = matched.groups()
        found = prometheus.api(f"label/{label}/values", **{"match[]": series})
        assert found == [{"job": "fleetwatch", "instance": stack.instance}[name]]
    for title, expr in dashboard.queries(board, values):
        answer = get_json(
            f"{prometheus.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        )
        assert answer["status"] == "success" and "error" not in answer, (title, expr, answer)
        if any(name in expr for name in finding_series):
            assert answer["data"]["result"], f"{title!r} shows nothing for an open finding: {expr}"
    now = time.time()
    for panel in dashboard.panels(board):  # what a time series panel asks: a range
        for target in panel["targets"]:
            if target.get("range"):
                expr = dashboard.substitute(target["expr"], values)
                span = {"query": expr, "start": f"{now - 60:.3f}", "end": f"{now:.3f}", "step": "1"}
                answer = get_json(
                    f"{prometheus.url}/api/v1/query_range?" + urllib.parse.urlencode(span)
                )
                assert answer["status"] == "success", (panel["title"], expr, answer)
    table = dict(dashboard.queries(board, values))["Open findings per GPU"]
    (row,) = prometheus.api("query", query=table)["result"]
    assert row["metric"]["detector"] == "xid_correlation"
    assert row["metric"]["pci"] == "0000:3b:00.0"
    assert "gpu" not in row["metric"]  # an Xid names a PCI address, no index


def test_a_watch_that_stops_answering_fires_fleetwatch_down(stack: Stack) -> None:
    assert stack.watcher.stop() == 0
    (alert,) = wait_for(
        lambda: stack.prometheus.alerts("FleetwatchDown"), timeout=25, what="FleetwatchDown"
    )
    assert alert["labels"]["instance"] == stack.instance and alert["labels"]["urgency"] == "ticket"

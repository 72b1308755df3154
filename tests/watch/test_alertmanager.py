"""The Alertmanager sink against a loopback receiver that records what it is posted
(``tests/deploy/test_alertmanager_e2e.py`` runs it against a real Alertmanager)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.config import ConfigError
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Lifecycle, LifecycleConfig, Silence, Transition
from fleetwatch.sinks.alertmanager import (
    ALERTNAME,
    API_PATH,
    Alert,
    Alertmanager,
    AlertmanagerConfig,
    endpoint,
)
from fleetwatch.store import Commit, Outbox, Store
from fleetwatch.watch import load_plan
from fleetwatch.watch.daemon import _announced_open
from tests.watch.live import wait_for

pytestmark = pytest.mark.slow  # servers and threads: not in `make verify`

XID = Finding(
    id="xid_correlation-1",
    detector="xid_correlation",
    severity=Severity.ERROR,
    action=Action.RESET_GPU,
    summary="gpu-node-17 0000:3b:00.0: Xid 79 (GPU has fallen off the bus)",
    first_ts=1_717_496_983.25,
    last_ts=1_717_496_983.25,
    clock="wall",
    node="gpu-node-17",
    pci="0000:3b:00.0",
    gpu=3,
    evidence=("NVRM: Xid (PCI:0000:3b:00): 79, pid=2761",),
)


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class FakeAlertmanager:
    """Answers POST /api/v2/alerts with the next status of ``statuses`` (then 200)."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.posts: list[list[dict[str, Any]]] = []  # taken
        self.tried: list[list[dict[str, Any]]] = []  # every POST, taken or not
        self.statuses = list(statuses)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = outer.statuses.pop(0) if outer.statuses else 200
                outer.tried.append(json.loads(body))
                if status == 200 and self.path == API_PATH:
                    outer.posts.append(json.loads(body))
                self.send_response(status if self.path == API_PATH else 404)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def alerts(self) -> list[dict[str, Any]]:
        return [alert for post in self.posts for alert in post]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def am() -> Iterator[FakeAlertmanager]:
    fake = FakeAlertmanager()
    yield fake
    fake.close()


def queue(store: Path, *transitions: Transition) -> None:
    db = Store(store)
    db.commit(Commit([], {}, {}, [("alertmanager", t.to_json()) for t in transitions], {}))
    db.close()


def running(store: Path, *urls: str, **settings: Any) -> Alertmanager:
    settings.setdefault("resend_s", 3600.0)
    settings.setdefault("ends_after_s", 7200.0)
    still_open = settings.pop("open", ())
    sink = Alertmanager(AlertmanagerConfig(urls=urls, **settings), store, still_open)
    sink.start()
    return sink


def test_an_alert_carries_the_findings_labels_summary_evidence_and_first_time() -> None:
    body = Alert.of(XID, now=1_717_497_000.0).body(ends_at=1_717_497_240.0)
    assert body == {
        "labels": {
            "alertname": ALERTNAME,
            "node": "gpu-node-17",
            "gpu": "3",
            "pci": "0000:3b:00.0",
            "detector": "xid_correlation",
            "severity": "error",
            "action": "reset_gpu",
            "finding_id": "xid_correlation-1",
        },
        "annotations": {
            "summary": XID.summary,
            "evidence": "NVRM: Xid (PCI:0000:3b:00): 79, pid=2761",
        },
        "startsAt": "2024-06-04T10:29:43.250Z",
        "endsAt": "2024-06-04T10:34:00.000Z",
    }
    # a boot-clock time is no wall time: the alert starts when the watch saw it
    boot = dataclasses.replace(XID, clock="boot", first_ts=42.0, node=None, gpu=None, pci=None)
    alert = Alert.of(boot, now=1_717_497_000.0).body(ends_at=0.0)
    assert alert["startsAt"] == alert["endsAt"] == "2024-06-04T10:30:00.000Z"  # never before
    assert {"node", "gpu", "pci"}.isdisjoint(alert["labels"])  # none rather than empty


def test_a_label_from_a_log_is_one_line_of_valid_utf8() -> None:
    odd = dataclasses.replace(XID, node="gpu\n17\udcff", summary="a\x1b[31mb")
    body = Alert.of(odd, now=1.0e9).body(ends_at=1.0e9)
    assert body["labels"]["node"] == "gpu\\n17\\udcff"
    assert body["annotations"]["summary"] == "a\\x1b[31mb"
    json.dumps(body, ensure_ascii=False).encode()  # would raise on a lone surrogate


def test_the_endpoint_is_the_v2_alerts_api_whether_given_as_base_or_whole() -> None:
    assert endpoint("http://am:9093") == "http://am:9093/api/v2/alerts"
    assert endpoint("http://am:9093/") == "http://am:9093/api/v2/alerts"
    assert endpoint("http://am:9093/api/v2/alerts") == "http://am:9093/api/v2/alerts"


def test_new_fires_until_after_the_next_resend_and_resolved_ends_it(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    sink = running(store, am.url, ends_after_s=240.0)
    try:
        wait_for(lambda: am.alerts(), what="the firing alert")
        queue(store, Transition("resolved", dataclasses.replace(XID, status="resolved"), True))
        sink.wake()
        wait_for(lambda: len(am.alerts()) == 2, what="the resolved alert")
    finally:
        sink.stop()
    fired, resolved = am.alerts()
    assert fired["labels"] == resolved["labels"] and fired["startsAt"] == resolved["startsAt"]
    assert epoch(fired["endsAt"]) - epoch(fired["startsAt"]) > 240  # open: ends in the future
    assert epoch(resolved["endsAt"]) < epoch(fired["endsAt"])  # resolved: ended at commit
    assert sink.active == {} and Outbox(store, "alertmanager").pending() == []


def test_open_alerts_are_posted_again_with_a_later_end(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    sink = running(store, am.url, resend_s=0.2, ends_after_s=1.0)
    try:
        wait_for(lambda: len(am.alerts()) >= 4, what="re-posts")
    finally:
        sink.stop()
    ends = [epoch(a["endsAt"]) for a in am.alerts()]
    assert ends == sorted(ends) and ends[-1] > ends[0]
    assert {a["labels"]["finding_id"] for a in am.alerts()} == {XID.id}
    assert sink.resent >= 2


def test_quiet_findings_are_not_posted_but_a_posted_one_is_followed_to_its_end(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    store = tmp_path / "w.db"
    other = dataclasses.replace(XID, id="xid_correlation-2", gpu=4)
    queue(
        store,
        Transition("new", other, False, "silenced"),  # never told: never posted
        Transition("resolved", other, False, "silenced"),
        Transition("new", XID, True),
        # flapping by now: not announced, but Alertmanager holds it and must hear of it
        Transition("escalated", dataclasses.replace(XID, count=5), False, "flapping"),
        Transition("resolved", XID, False, "flapping"),
    )
    sink = running(store, am.url)
    try:
        wait_for(lambda: Outbox(store, "alertmanager").pending() == [], what="delivery")
    finally:
        sink.stop()
    assert {a["labels"]["finding_id"] for a in am.alerts()} == {XID.id}
    assert len(am.alerts()) == 3 and sink.active == {}


def test_an_escalation_to_other_labels_fires_the_new_alert_and_ends_the_old(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    store = tmp_path / "w.db"
    worse = dataclasses.replace(XID, severity=Severity.CRITICAL, action=Action.REBOOT_NODE)
    queue(store, Transition("new", XID, True), Transition("escalated", worse, True))
    sink = running(store, am.url)
    try:
        wait_for(lambda: Outbox(store, "alertmanager").pending() == [], what="delivery")
    finally:
        sink.stop()
    first, ended, fired = am.alerts()
    assert ended["labels"] == first["labels"] and ended["labels"]["severity"] == "error"
    assert fired["labels"]["severity"] == "critical" and fired["labels"]["action"] == "reboot_node"
    assert epoch(ended["endsAt"]) < epoch(fired["endsAt"])
    assert fired["startsAt"] == first["startsAt"]  # the same incident, from its start


def test_a_failed_post_is_retried_with_backoff_and_an_end_still_ahead(tmp_path: Path) -> None:
    am = FakeAlertmanager(statuses=(503,))
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    clock = itertools.count(1_800_000_000, 1000).__next__  # each reading 1000 s later
    sink = Alertmanager(AlertmanagerConfig(urls=(am.url,), ends_after_s=240.0), store, (), clock)
    sink.start()
    try:
        wait_for(lambda: sink.delivered == 1, what="the retried delivery")
    finally:
        sink.stop()
        am.close()
    assert sink.failed_attempts == 1
    (refused,), (taken,) = am.tried[:2]  # (then re-posts: this clock runs fast)
    # written afresh for the retry: its end is 240 s past the retry, not past the first try
    assert epoch(taken["endsAt"]) - epoch(refused["endsAt"]) >= 1000


def test_a_refused_post_goes_to_the_dead_letter_file_and_the_alert_is_still_resent(
    tmp_path: Path,
) -> None:
    am = FakeAlertmanager(statuses=(400,))
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    sink = running(store, am.url, dead_letter="dead.jsonl", resend_s=0.2, ends_after_s=1.0)
    try:
        wait_for(lambda: am.alerts(), what="the re-post")
    finally:
        sink.stop()
        am.close()
    (letter,) = [json.loads(x) for x in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert letter["failed"].endswith("HTTP 400") and letter["alerts"][0]["labels"]["gpu"] == "3"
    assert Outbox(store, "alertmanager").pending() == []


def test_with_three_alertmanagers_one_down_the_others_take_it(
    tmp_path: Path, am: FakeAlertmanager
) -> None:
    down = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    closed = f"http://127.0.0.1:{down.server_port}"
    down.server_close()  # nothing listens there now
    peer = FakeAlertmanager()
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    sink = running(store, closed, am.url, peer.url)
    try:
        wait_for(lambda: sink.delivered == 1, what="delivery")
    finally:
        sink.stop()
        peer.close()
    assert sink.failed_attempts >= 1 and len(am.alerts()) == 1
    assert peer.alerts() == am.alerts()  # every peer that is up hears every alert


def test_stopping_while_retrying_keeps_the_transition_for_the_next_start(tmp_path: Path) -> None:
    store = tmp_path / "w.db"
    queue(store, Transition("new", XID, True))
    sink = running(store, "http://127.0.0.1:9")
    wait_for(lambda: sink.failed_attempts >= 1, what="a failed try")
    sink.stop()
    assert [p.body["id"] for p in Outbox(store, "alertmanager").pending()] == [XID.id]


def test_what_was_open_at_start_is_posted_at_once(tmp_path: Path, am: FakeAlertmanager) -> None:
    sink = running(tmp_path / "w.db", am.url, open=[XID])
    try:
        wait_for(lambda: am.alerts(), what="the open alert")
    finally:
        sink.stop()
    assert am.alerts()[0]["labels"]["finding_id"] == XID.id


@pytest.mark.parametrize(
    ("toml", "urls", "message"),
    [
        ("", ("ftp://am",), r"is not an http\(s\) URL"),
        ("[watch.alertmanager]\ntimeout_s = 2.0\n", (), "needs urls"),
        ("[watch.alertmanager]\nurls = 'http://am'\n", (), "must be a list of URLs"),
        ("[watch.alertmanager]\nresend_s = 60.0\nends_after_s = 60.0\n", ("http://am",), "more"),
        ("[watch.alertmanager]\nurl = 'http://am'\n", (), "unknown setting"),
    ],
)
def test_bad_alertmanager_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, urls: tuple[str, ...], message: str
) -> None:
    config = tmp_path / "w.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_plan(config, {"follow": ["x"], "alertmanager": urls})


def test_the_command_lines_urls_replace_the_files(tmp_path: Path) -> None:
    config = tmp_path / "w.toml"
    config.write_text("[watch.alertmanager]\nurls = ['http://a:9093']\nresend_s = 30.0\n")
    plan = load_plan(config, {"follow": ["x"], "alertmanager": ("http://b:9093",)})
    assert plan.alertmanager == AlertmanagerConfig(urls=("http://b:9093",), resend_s=30.0)
    assert load_plan(None, {"follow": ["x"]}).alertmanager is None


def test_the_example_config_names_every_alertmanager_setting_and_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = Path(__file__).parent.parent.parent / "examples" / "watch.toml"
    monkeypatch.setenv("FLEETWATCH_WEBHOOK_SECRET", "s")
    plan = load_plan(example, {})
    assert plan.alertmanager == AlertmanagerConfig(urls=("http://127.0.0.1:9093",))
    assert plan.metrics is not None and plan.metrics.max_finding_series == 1000
    text = example.read_text()
    for field in dataclasses.fields(AlertmanagerConfig):
        assert f"\n{field.name} = " in text, f"examples/watch.toml lacks {field.name}"


def test_after_a_restart_the_open_findings_an_announcement_would_tell_are_posted() -> None:
    silenced = dataclasses.replace(XID, id="xid_correlation-2", node="gpu-node-2")
    flapping = dataclasses.replace(XID, id="xid_correlation-3", node="gpu-node-3")
    lifecycle = Lifecycle(LifecycleConfig(flap_threshold=2), [Silence(node="gpu-node-2")])
    for n, finding in enumerate((flapping, XID, silenced)):
        lifecycle.update([finding], now=100.0 + n)
    lifecycle.update([dataclasses.replace(flapping, id="xid_correlation-4")], now=110.0)
    told = [f.id for f in _announced_open(lifecycle, now=120.0)]
    assert told == [XID.id]  # not the silenced one, nor the flapping entity's two

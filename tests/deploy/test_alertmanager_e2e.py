"""``fleetwatch watch --alertmanager`` against a real Alertmanager: the alert arrives with
the finding's labels, stays firing past its first ``endsAt`` because it is re-posted,
and ends when the finding resolves, which Alertmanager tells its receiver.

The watch resolves a finding after ``resolve_after_s`` without new evidence (6 s here,
600 s by default); it re-posts open alerts every second, each ending 3 s after the post.
Alertmanager's receiver is a loopback webhook of this test (``send_resolved``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.servers import ALERTMANAGER, FAULT, Alertmanager, missing
from tests.watch.live import Watcher, caught_up, transitions, wait_for

pytestmark = pytest.mark.e2e

CONFIG = """\
[watch]
resolve_after_s = 6.0

[watch.alertmanager]
resend_s = 1.0
ends_after_s = 3.0
"""


def epoch(stamp: str) -> float:
    """An RFC 3339 time as Alertmanager writes it (nanoseconds cut to what Python reads)."""
    stamp = stamp.replace("Z", "+00:00")
    whole, _, rest = stamp.partition(".")
    if rest:
        digits = rest[: len(rest) - len("+00:00")]
        stamp = f"{whole}.{digits[:6]:0<6}+00:00"
    return datetime.fromisoformat(stamp).timestamp()


class Receiver:
    """Alertmanager's webhook receiver: keeps each notification's alerts."""

    def __init__(self) -> None:
        self.notified: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.notified += body["alerts"]
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/notify"

    def of(self, status: str) -> list[dict[str, Any]]:
        return [a for a in self.notified if a["status"] == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[tuple[Alertmanager, Receiver]]:
    reason = missing(ALERTMANAGER)
    if reason:
        pytest.skip(reason)
    receiver = Receiver()
    server = Alertmanager(tmp_path, receiver.url)
    try:
        server.start()
        yield server, receiver
    finally:
        server.stop()
        receiver.close()


def test_an_alert_is_posted_kept_firing_and_resolved_with_its_finding(
    tmp_path: Path, alertmanager: tuple[Alertmanager, Receiver]
) -> None:
    server, receiver = alertmanager
    log = tmp_path / "logs" / "kern.log"
    log.parent.mkdir()
    log.touch()
    (tmp_path / "watch.toml").write_text(CONFIG)
    store, jsonl = tmp_path / "w.db", tmp_path / "w.jsonl"
    watcher = Watcher("--config", str(tmp_path / "watch.toml"), "--follow", str(log),
                      "--node", "gpu-node-17", "--store", str(store), "--jsonl", str(jsonl),
                      "--alertmanager", server.url)  # fmt: skip
    try:
        wait_for(lambda: caught_up(store, log.parent), what="the watch to stand at the end")
        with log.open("a") as out:
            out.write(FAULT)
        (alert,) = wait_for(server.alerts, what="the alert in Alertmanager")
        finding_id = transitions(jsonl)[0][0]
        assert alert["labels"] == {
            "alertname": "FleetwatchFinding",
            "node": "gpu-node-17",
            "pci": "0000:3b:00.0",
            "detector": "xid_correlation",
            "severity": "critical",
            "action": "reboot_node",
            "finding_id": finding_id,
        }
        assert "Xid 79" in alert["annotations"]["summary"]
        assert "xid code=79" in alert["annotations"]["evidence"]
        assert alert["status"]["state"] == "active"
        first_end = epoch(alert["endsAt"])
        (fired,) = wait_for(lambda: receiver.of("firing"), what="the firing notification")
        assert fired["labels"]["finding_id"] == finding_id
        (resolved,) = wait_for(
            lambda: receiver.of("resolved"), timeout=25, what="the resolved notification"
        )
    finally:
        assert watcher.stop() == 0
    assert [t for _, t in transitions(jsonl)] == ["new", "resolved"]
    assert resolved["labels"] == fired["labels"]
    # it lived past the end of its first post (re-posted), and ended when it resolved
    assert epoch(resolved["endsAt"]) > first_end + 1.0
    assert len(receiver.of("firing")) == 1  # never lapsed and fired again in between
    assert server.alerts() == []  # Alertmanager holds it as resolved: not listed as active

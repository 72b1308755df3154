"""The webhook: signatures with a time stamp, dead letters for refusals and for a receiver
that stays down."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fleetwatch.sinks.webhook import Webhook, WebhookConfig, sign
from fleetwatch.store import Commit, Outbox, Store
from tests.watch.live import SECRET, TOLERANCE_S, verify, wait_for

pytestmark = pytest.mark.slow  # real processes and servers: not in `make verify`


def test_the_signature_is_hmac_sha256_of_the_time_stamp_a_dot_and_the_exact_body() -> None:
    body = b'{"id": "xid_correlation-1"}'
    expected = hmac.new(b"k", b"1717496983." + body, hashlib.sha256).hexdigest()
    assert sign(b"k", body, 1717496983) == f"t=1717496983,v1={expected}"


def test_a_receiver_refuses_a_changed_time_stamp_a_changed_body_and_an_old_request() -> None:
    body = b'{"id": "xid_correlation-1", "transition": "new"}'
    now = 1_717_496_983
    header = sign(SECRET.encode(), body, now)
    assert verify(header, body, now=now)
    assert not verify(header.replace(f"t={now}", f"t={now + 60}"), body, now=now)  # t is signed
    assert not verify(header, body.replace(b"new", b"resolved"), now=now)
    assert not verify(header, body, now=now + TOLERANCE_S + 1)  # a replay, too late


@pytest.fixture
def flaky() -> Iterator[tuple[ThreadingHTTPServer, list[tuple[str, bytes]]]]:
    """Answers 503 to the first POST and 200 after; records each POST's signature and body."""
    seen: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append((self.headers["X-Fleetwatch-Signature"], body))
            self.send_response(503 if len(seen) == 1 else 200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, seen
    server.shutdown()
    server.server_close()


def test_each_attempt_is_signed_with_the_time_it_was_sent(
    tmp_path: Path, flaky: tuple[ThreadingHTTPServer, list[tuple[str, bytes]]]
) -> None:
    server, seen = flaky
    store = queued(tmp_path, "a")
    clock = itertools.count(1_717_496_983, 1000).__next__  # each reading 1000 s later
    url = f"http://127.0.0.1:{server.server_port}/hook"
    hook = Webhook(WebhookConfig(url=url), store, SECRET.encode(), clock=clock)
    hook.start()
    try:
        wait_for(lambda: hook.delivered == 1, what="the retried delivery")
    finally:
        hook.stop()
    (first, body), (retry, again) = seen
    assert body == again
    assert first.startswith("t=1717496983,") and retry.startswith("t=1717497983,")
    assert verify(first, body, now=1_717_496_983) and verify(retry, body, now=1_717_497_983)
    assert not verify(first, body, now=1_717_497_983)  # the first one's time is past


@pytest.fixture
def refusing() -> Iterator[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(400)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def queued(tmp_path: Path, *ids: str) -> Path:
    store = Store(tmp_path / "w.db")
    outbox = [("webhook", {"id": i, "transition": "new"}) for i in ids]
    store.commit(Commit([], {}, {}, outbox, {}))
    store.close()
    return tmp_path / "w.db"


def dead_letters(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_refused_finding_goes_to_the_dead_letter_file(
    tmp_path: Path, refusing: ThreadingHTTPServer
) -> None:
    store = queued(tmp_path, "a", "b")
    url = f"http://127.0.0.1:{refusing.server_port}/hook"
    hook = Webhook(WebhookConfig(url=url, dead_letter="dead.jsonl"), store, b"secret")
    hook.start()
    try:
        wait_for(lambda: len(dead_letters(tmp_path / "dead.jsonl")) == 2, what="dead letters")
    finally:
        hook.stop()
    letters = dead_letters(tmp_path / "dead.jsonl")
    assert [d["finding"]["id"] for d in letters] == ["a", "b"]
    assert letters[0]["failed"] == "refused with HTTP 400"
    assert Outbox(store, "webhook").pending() == []  # delivered or buried: nothing lost


@pytest.mark.e2e  # a real watch process for seconds: make test-e2e
def test_a_receiver_that_stays_down_past_the_limit_gets_a_dead_letter(tmp_path: Path) -> None:
    store = queued(tmp_path, "a")
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_port
    server.server_close()  # nothing listens there now
    config = WebhookConfig(
        url=f"http://127.0.0.1:{port}/hook", give_up_after_s=1.0, dead_letter="dead.jsonl"
    )
    hook = Webhook(config, store, b"secret")
    hook.start()
    try:
        wait_for(lambda: dead_letters(tmp_path / "dead.jsonl"), what="a dead letter")
    finally:
        hook.stop()
    (letter,) = dead_letters(tmp_path / "dead.jsonl")
    assert letter["finding"]["id"] == "a" and letter["failed"].startswith("gave up after 1 s")
    assert hook.failed_attempts >= 2  # it was retried before giving up


def test_stopping_while_retrying_keeps_the_finding_for_the_next_start(tmp_path: Path) -> None:
    store = queued(tmp_path, "a")
    hook = Webhook(WebhookConfig(url="http://127.0.0.1:9/hook"), store, b"secret")
    hook.start()
    wait_for(lambda: hook.failed_attempts >= 1, what="a failed try")
    hook.stop()
    assert [p.body["id"] for p in Outbox(store, "webhook").pending()] == ["a"]
    assert not (tmp_path / "fleetwatch-dead-letter.jsonl").exists()

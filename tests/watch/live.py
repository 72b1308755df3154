"""Real processes for the watch tests: ``fleetwatch watch`` itself and a webhook receiver.

``Watcher`` runs the command in a child process (``kill -9`` is a real SIGKILL);
``Receiver`` is an HTTP server on 127.0.0.1 that checks each request's signature and
can go down and come back on the same port.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SECRET = "test-secret-0123"  # noqa: S105  # the tests sign with it


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


TOLERANCE_S = 300  # a receiver refuses a signature older than this (replay protection)


def verify(header: str, body: bytes, secret: str = SECRET, now: float | None = None) -> bool:
    """``X-Fleetwatch-Signature: t=<unix s>,v1=<hex>`` as a receiver checks it.

    Written from the documented scheme (docs/findings.md), not from fleetwatch's code.
    """
    fields = {key: value for key, _, value in (part.partition("=") for part in header.split(","))}
    if not fields.get("t", "").isdigit() or "v1" not in fields:
        return False
    t = int(fields["t"])
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    fresh = abs((time.time() if now is None else now) - t) <= TOLERANCE_S
    return fresh and hmac.compare_digest(expected, fields["v1"])


class Receiver:
    """A webhook receiver on loopback: records each delivery whose signature is right."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self.arrived: list[float] = []  # when each delivery arrived (time.time())
        self.port = port
        self.delay_s = 0.0  # how long each answer takes
        self.in_flight = 0  # requests being answered now
        self._server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.in_flight += 1
                try:
                    self._answer()
                finally:
                    receiver.in_flight -= 1

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)  # a receiver that takes its time
                if verify(self.headers.get("X-Fleetwatch-Signature", ""), body):
                    receiver.received.append(json.loads(body))
                    receiver.arrived.append(time.time())
                    self.send_response(200)
                else:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_port
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


class Watcher:
    """``fleetwatch watch`` in a child process."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleetwatch", "watch", "--quiet", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "FLEETWATCH_WEBHOOK_SECRET": SECRET, **(env or {})},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        banner = wait_for(self._banner, what="the watch's banner")
        port = re.search(r"127\.0\.0\.1:(\d+)/metrics", banner)
        self.metrics_port = int(port[1]) if port else None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _banner(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"watch exited {self.proc.returncode}: {''.join(self.lines)}")
        return next((ln for ln in self.lines if "watching" in ln), None)

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as {name{labels}: value} for the fleetwatch series."""
        with urllib.request.urlopen(  # loopback, our own server
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        found = {}
        for line in text.splitlines():
            if line.startswith("fleetwatch_") and "_created" not in line:
                name, value = line.rsplit(" ", 1)
                found[name] = float(value)
        return found

    def events_read(self) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith("fleetwatch_events_total"))

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self._ended()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self._ended()

    def _ended(self) -> int:
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


def caught_up(store: Path, logs: Path) -> bool:
    """Every file under ``logs`` is committed as read to its end (in the store)."""
    if not store.exists():
        return False
    with contextlib.closing(sqlite3.connect(store)) as db:
        try:
            rows = db.execute("SELECT position FROM positions").fetchall()
        except sqlite3.OperationalError:
            return False  # created, but its tables not yet (or locked a moment)
    offsets = {p: v["offset"] for (row,) in rows for p, v in json.loads(row).items()}
    files = [f for f in logs.rglob("*") if f.is_file()]
    return bool(files) and all(offsets.get(str(f)) == f.stat().st_size for f in files)


def transitions(jsonl: Path) -> list[tuple[str, str]]:
    """(id, transition) of every line of a watch's JSONL output."""
    if not jsonl.exists():
        return []
    return [(r["id"], r["transition"]) for r in map(json.loads, jsonl.read_text().splitlines())]

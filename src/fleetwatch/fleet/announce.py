"""The fleet's sinks: its output stream told to JSONL, the webhook, the console and
``/metrics``, as a watch tells its own transitions (``fleetwatch announce``).

Correlators and live agents append every transition to ``P:out``. An announcer reads
it through a consumer group (``XREADGROUP``), so several announcers share the stream
and each entry goes to one of them; an entry is acknowledged (``XACK``) only once it
was told, so an announcer killed mid-way reads its own pending entries again when it
starts under the same ``--consumer`` name.

The same transition can be on the stream twice (a live agent that sent it again:
``uplink``). Each is told once: before telling, the announcer claims it in Redis,
``SET P:told:<group>:<key> <entry id> NX`` with a time to live, where the key is the
finding's id, the transition and the severity and action it announces (an escalation
to each level is its own). A claim by another entry is a repeat, dropped and counted;
a claim by the same entry is one read again after an announcer was killed between
claiming and acknowledging: told again (at least once, never lost).

What each sink gets is what a watch gives it: the JSONL file every transition, the
console and webhook the announced ones (not silenced or flapping), ``/metrics`` the
count of announcements and the open findings (``fleetwatch_finding``), read from the
findings hash (the fleet's, not this announcer's share) every few seconds.
The webhook sends from an outbox in a local store, with the watch's retries and
signatures (``sinks/webhook.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis

from fleetwatch.findings import Finding
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.transport import REDIS_DOWN, Outage
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.console import ConsoleSink
from fleetwatch.sinks.metrics import Metrics
from fleetwatch.sinks.transition_log import TransitionLog
from fleetwatch.sinks.webhook import SINK as WEBHOOK
from fleetwatch.sinks.webhook import Webhook, WebhookConfig
from fleetwatch.store import Commit, Store

log = logging.getLogger(__name__)

TOLD_TTL_S: Final = 30 * 86400
"""How long a told transition's claim is kept (a repeat later than this is told)."""
READ_COUNT: Final = 256
OPEN_REFRESH_S: Final = 5.0
"""``/metrics``' open findings are read again this often (a correlator's transition
may have gone to another announcer of the group)."""


@dataclass
class Sinks:
    """Where an announcer tells what it reads (each optional)."""

    jsonl: TransitionLog | None = None
    console: ConsoleSink | None = None
    webhook: Webhook | None = None
    outbox: Store | None = None  # the webhook's outbox
    metrics: Metrics | None = None


class Announcer:
    """One consumer of the fleet's output stream (see the module docstring)."""

    def __init__(self, client: redis.Redis, group: str, consumer: str, sinks: Sinks) -> None:
        self.client: Any = client  # replies as Any: see ``transport.RedisStreams``
        self.ledger = Ledger(client)
        self.group = group
        self.consumer = consumer
        self.sinks = sinks
        self.stream = self.ledger.key("out")
        self.told = 0
        self.repeats = 0
        self.bad = 0
        self._mine_first = True  # read what this consumer left pending first
        self._refreshed = 0.0

    def start(self) -> None:
        """Create the group (from the stream's start) and learn the open findings."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._refresh_open()

    def _refresh_open(self) -> None:
        """``/metrics``' open findings, from the findings hash: the whole fleet's, which
        this announcer's share of the stream would not give."""
        if self.sinks.metrics is None:
            return
        rows = (r for r in self.ledger.findings() if r.get("status", "open") == "open")
        found = [f for f in map(_finding, rows) if f is not None]
        self.sinks.metrics.set_open(found)
        self._refreshed = time.monotonic()

    def run(self, stop: Callable[[], bool], block_ms: int = 1000) -> None:
        """Tell until ``stop()``; Redis down or restarting: wait and read on."""
        outage = Outage(f"announcer {self.consumer}", log)
        while not stop():
            try:
                self.step(block_ms)
                outage.answered()
            except REDIS_DOWN as exc:
                self._mine_first = True  # what was read and not acknowledged: again
                outage.failed(exc, stop)

    def step(self, block_ms: int = 0) -> int:
        """Read, tell and acknowledge one batch of entries; return how many were read."""
        entries = self._read("0", 0) if self._mine_first else []
        if not entries:
            self._mine_first = False  # nothing of ours pending: new entries from now on
            entries = self._read(">", block_ms)
        told: list[Transition] = []
        for entry_id, fields in entries:
            transition = _transition(fields)
            if transition is None:
                self.bad += 1
                shown = entry_id.decode(errors="replace")
                log.warning("announce: entry %s of %s is not a transition", shown, self.stream)
            elif self._claim(transition, entry_id):
                told.append(transition)
            else:
                self.repeats += 1
        self._tell(told)
        if time.monotonic() - self._refreshed >= OPEN_REFRESH_S:
            self._refresh_open()
        if entries:
            self.client.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        return len(entries)

    def _read(self, after: str, block_ms: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Entries of the group: ``"0"`` this consumer's pending ones, ``">"`` new ones."""
        replies = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: after},
            count=READ_COUNT,
            block=block_ms or None,
        )
        return list(replies[0][1]) if replies else []

    def _claim(self, t: Transition, entry_id: bytes) -> bool:
        """True: tell ``t`` (its first entry, or that same entry read again)."""
        f = t.finding
        ident = f"{f.id}|{t.kind}|{f.severity}|{f.action}"
        digest = hashlib.blake2b(ident.encode(), digest_size=16).hexdigest()
        key = self.ledger.key("told", self.group, digest)
        if self.client.set(key, entry_id, nx=True, ex=TOLD_TTL_S):
            return True
        return bool(self.client.get(key) == entry_id)

    def _tell(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        sinks = self.sinks
        announced = [t for t in transitions if t.announce]
        if sinks.jsonl is not None:
            sinks.jsonl.write([t.to_json() for t in transitions])
        if sinks.outbox is not None and sinks.webhook is not None and announced:
            rows = [(WEBHOOK, t.to_json()) for t in announced]
            sinks.outbox.commit(Commit([], {}, {}, rows, {}))
            sinks.webhook.wake()
        if sinks.console is not None and announced:
            sinks.console.announce(announced)
        if sinks.metrics is not None:
            for t in announced:
                sinks.metrics.announcements.labels(t.kind).inc()
        self.told += len(transitions)

    def close(self) -> None:
        sinks = self.sinks
        if sinks.webhook is not None:
            sinks.webhook.stop()
        if sinks.outbox is not None:
            sinks.outbox.close()
        if sinks.jsonl is not None:
            sinks.jsonl.close()


def _finding(row: dict[str, Any]) -> Finding | None:
    try:
        return Finding.from_json(row)  # keys it does not know (transition, quiet) ignored
    except (KeyError, ValueError, TypeError, AttributeError):
        return None


def _transition(fields: dict[bytes, bytes]) -> Transition | None:
    """The transition of one output entry (None: not one this version can read)."""
    try:
        data = json.loads(fields[b"transition"])
        kind = data["transition"] if isinstance(data, dict) else None
    except (KeyError, ValueError, TypeError, RecursionError):
        return None
    if kind not in ("new", "escalated", "resolved"):
        return None
    finding = _finding(data)
    if finding is None:
        return None
    quiet = data.get("quiet")
    return Transition(kind, finding, quiet is None, quiet if isinstance(quiet, str) else None)


def open_sinks(
    jsonl: str | None,
    webhook: WebhookConfig | None,
    store: str,
    console: bool,
    metrics: Metrics | None,
) -> Sinks:
    """The sinks asked for, started; the webhook's outbox in ``store``.

    The webhook signs with the secret in its ``secret_env`` (checked by the caller)."""
    sinks = Sinks(
        TransitionLog(Path(jsonl), None) if jsonl else None,
        ConsoleSink() if console else None,
        metrics=metrics,
    )
    if webhook is not None:
        sinks.outbox = Store(store)
        secret = os.environ[webhook.secret_env].encode()
        sinks.webhook = Webhook(webhook, sinks.outbox.path, secret)
        sinks.webhook.start()
    return sinks

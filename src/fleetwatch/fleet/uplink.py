"""A live agent's way to the fleet: what it sends, kept in its store until Redis has it.

A live agent is a watch (``watch/``) that runs the node family's detectors itself
(``shards.ROUTES``: the raw dcgm samples stay on the node) and hands the rest to the
fleet through this ``Uplink``, the watch's ``Relay``:

* every batch the watch reads is split by family and shard (``shards.split``, label
  samples thinned: ``thin``) and gathered, in memory, per (family, shard);
* at the watch's commit (``rows``; within ``COMMIT_WITHIN_S`` once anything is
  gathered, not the watch's usual interval), each gathered part becomes **one**
  stream entry (many events per entry) and every transition the agent's own
  detectors made becomes one entry for the fleet's output, and they are written in
  the same SQLite transaction as the watch's findings and source positions (the
  store's ``uplink`` table). After ``kill -9`` the agent re-reads exactly what its
  store had not committed, so nothing is sent twice from a re-read and nothing is
  skipped;
* a sender thread sends the table's rows in order (``seq``), pipelined, and deletes
  them once Redis took them. Redis down or restarting: the rows wait in the store and
  go when it answers again, with a growing pause between tries.

A row sent but not yet deleted (the agent killed in between, or a reply lost) is sent
again: every entry names its sender (``source``: the agent's name and its store's
random epoch) and its ``seq``, and a correlator drops an entry whose ``seq`` it has
already applied from that sender (``correlate``), so each event is applied once. A
transition sent twice reaches the output stream twice; ``announce`` tells it once
(by id, transition, severity and action), and the findings hash is overwritten with
the same value.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Final

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge

from fleetwatch.events import EventBatch, concat
from fleetwatch.fleet.codec import encode
from fleetwatch.fleet.ledger import Ledger
from fleetwatch.fleet.shards import split
from fleetwatch.fleet.thin import LabelFilter
from fleetwatch.fleet.transport import Transport
from fleetwatch.lifecycle import Transition
from fleetwatch.store import UPLINK_OUT

log = logging.getLogger(__name__)

COMMIT_WITHIN_S: Final = 0.05
"""The watch commits what the fleet waits for this soon (its own interval is for the
node's state; what goes to the fleet is rare on a healthy node and worth a commit)."""
SENT_PER_ROUND: Final = 256
"""Rows sent per round trip."""
_FIRST_PAUSE_S: Final = 0.2
_LAST_PAUSE_S: Final = 10.0
REDIS_DOWN: Final = (redis.ConnectionError, redis.TimeoutError, OSError)


class Uplink:
    """Gathers what an agent sends (watch thread) and sends it (its own thread)."""

    def __init__(
        self,
        transport: Transport,
        ledger: Ledger,
        shards: int,
        agent: str,
        families: Collection[str],
        cluster: str = "cluster",
    ) -> None:
        self.transport = transport
        self.ledger = ledger
        self.shards = shards
        self.agent = agent
        self.families = frozenset(families)
        self.cluster = cluster
        self.labels = LabelFilter()
        self.commit_within_s = COMMIT_WITHIN_S
        self._parts: dict[tuple[str, int], list[EventBatch]] = defaultdict(list)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.source = agent  # with the store's epoch once started
        self.sent = 0
        """Rows Redis took (this run)."""
        self.failures = 0
        """Rounds that found Redis unreachable (this run)."""
        self.kept = 0
        """Rows the store held for Redis at the last round."""
        self._sent_total: Counter | None = None
        self._failures_total: Counter | None = None

    # -- the watch's thread ----------------------------------------------------------------

    def register(self, registry: CollectorRegistry) -> None:
        """The uplink's metrics on the agent's ``/metrics``: what waits for Redis, what
        went, and how often Redis could not be reached."""
        pending = Gauge(
            "fleetwatch_uplink_pending_rows",
            "Entries and transitions kept in the agent's store for Redis.",
            registry=registry,
        )
        pending.set_function(lambda: self.kept)
        self._sent_total = Counter(
            "fleetwatch_uplink_sent_rows",
            "Entries and transitions Redis took from this agent.",
            registry=registry,
        )
        self._failures_total = Counter(
            "fleetwatch_uplink_failures",
            "Rounds of sending that found Redis unreachable.",
            registry=registry,
        )

    def take(self, batch: EventBatch) -> None:
        """Gather the events of ``batch`` that the fleet's families read."""
        for family, shard, part in split(
            batch, self.shards, self.cluster, self.labels, self.families
        ):
            self._parts[(family, shard)].append(part)

    def waiting(self) -> bool:
        """Events gathered for the fleet, not yet committed."""
        return bool(self._parts)

    def rows(self, transitions: Sequence[Transition]) -> list[tuple[int, str, bytes]]:
        """What to commit with the watch's next commit: one entry per (family, shard),
        one per transition. Asked again after a failed commit: it gathers on."""
        out = [
            (shard, family, encode(concat(parts)))
            for (family, shard), parts in sorted(self._parts.items())
        ]
        for t in transitions:
            out.append((UPLINK_OUT, "", json.dumps(t.to_json(), separators=(",", ":")).encode()))
        return out

    def committed(self) -> None:
        """The rows are in the store: forget them here and wake the sender."""
        self._parts.clear()
        self._wake.set()

    # -- the sender ---------------------------------------------------------------------------

    def start(self, store: Path) -> None:
        """Send the store's uplink rows from a thread of its own, until ``stop``."""
        db = sqlite3.connect(store, timeout=30, check_same_thread=False, isolation_level=None)
        with db:  # one random epoch per store: a new store is a new sender
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('uplink_epoch', ?)",
                (secrets.token_hex(8),),
            )
        epoch = db.execute("SELECT value FROM meta WHERE key = 'uplink_epoch'").fetchone()[0]
        self.source = f"{self.agent}/{epoch}"
        self._thread = threading.Thread(target=self._run, args=(db,), name="uplink", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """One last round for what is committed, then stop (what is left waits in the store)."""
        self._wake.set()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self, db: sqlite3.Connection) -> None:
        pause = _FIRST_PAUSE_S
        down = False
        try:
            while True:
                stopping = self._stop.is_set()
                try:
                    more = self._send_round(db)
                except REDIS_DOWN as exc:
                    self.failures += 1
                    if self._failures_total is not None:
                        self._failures_total.inc()
                    self.kept = _count(db)
                    if not down:
                        log.warning("uplink: redis unavailable (%s); keeping rows, retrying", exc)
                        down = True
                    if stopping or self._stop.wait(pause):
                        return
                    pause = min(pause * 2, _LAST_PAUSE_S)
                    continue
                if down:
                    log.warning("uplink: redis answers again; sending what was kept")
                    down, pause = False, _FIRST_PAUSE_S
                if stopping and not more:
                    return
                if not more:
                    self._wake.wait(1.0)
                    self._wake.clear()
        finally:
            db.close()

    def _send_round(self, db: sqlite3.Connection) -> bool:
        """Send up to ``SENT_PER_ROUND`` rows in order; True: there may be more."""
        rows = db.execute(
            "SELECT seq, shard, family, body FROM uplink ORDER BY seq LIMIT ?", (SENT_PER_ROUND,)
        ).fetchall()
        if not rows:
            return False
        entries: list[tuple[int, dict[str, bytes]]] = []
        told: list[dict[str, Any]] = []
        for seq, shard, family, body in rows:
            if shard == UPLINK_OUT:
                told.append(json.loads(body))
                continue
            fields = {
                "family": family.encode(),
                "agent": self.agent.encode(),
                "source": self.source.encode(),
                "seq": str(seq).encode(),
                "batch": bytes(body),
            }
            entries.append((shard, fields))
        if entries:
            self.transport.publish(entries)
        if told:
            self.ledger.tell(told)
        with db:
            db.execute("DELETE FROM uplink WHERE seq <= ?", (rows[-1][0],))
        self.sent += len(rows)
        if self._sent_total is not None:
            self._sent_total.inc(len(rows))
        more = len(rows) == SENT_PER_ROUND
        self.kept = _count(db) if more else 0  # (rows committed since: counted next round)
        return more

    def pending(self, store: Path) -> int:
        """Rows the store still holds (for tests)."""
        with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
            return _count(db)


def _count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM uplink").fetchone()[0])

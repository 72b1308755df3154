"""A correlator: owns shards by lease, runs an engine per shard, commits per read.

Each loop the worker

1. says it is alive (``Ledger.heartbeat``) and learns how many workers are;
2. renews the leases it holds; a lease it could not renew is gone (another worker
   may own the shard by now), so it drops the shard and everything not committed;
3. takes free shards up to its fair share, ``ceil(S / live workers)``, and gives back
   shards above it, so a new worker gets work and a dead one's shards (its leases
   expired) are taken by the living;
4. reads each owned shard after what it has applied, feeds the entries to the shard's
   engines (one per family: ``shards.ROUTES``), and commits the result in one script
   (``Ledger.commit``): state and offset, changed findings, transitions. A refused
   commit means the lease was lost while working: the shard is dropped, its new owner
   redoes the work from the last commit. What is committed is trimmed from the
   stream: Redis holds only what is not yet applied.

When a shard is caught up (a read gave it fewer entries than asked), it commits at
once, so a quiet fleet's transitions leave within one read. A shard that is behind
commits every ``commit_ms`` instead of after every read: a commit writes the shard's
whole detector state, which costs as much as applying the entries (a profile: 46 %
of a backlogged correlator's time), so a backlog drains several times faster. Nothing
leaves before its commit, so this changes when a transition is told, not whether.

An entry ``{"type": "end"}`` says the input ended (``fleetwatch agent --end``): the
shard's engines close every window, as ``replay`` does at the end of its files.

A live agent may send an entry twice (``uplink``: killed between sending and
forgetting it); its entries carry the agent's ``source`` and a ``seq`` that grows, and
the shard's state keeps the last ``seq`` applied per source, committed with the rest,
so a repeat is dropped (and counted), never applied twice.

Taking a shard restores its state as committed: detectors (their JSON ``state()``),
lifecycle and offset. So a worker killed anywhere loses nothing: its shards' next
owner starts at the last commit, and entries read since are read again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from fleetwatch.config import build
from fleetwatch.engine import Engine
from fleetwatch.findings import Finding
from fleetwatch.fleet.codec import CodecError, decode
from fleetwatch.fleet.ledger import Ledger, finding_row
from fleetwatch.fleet.shards import families
from fleetwatch.fleet.transport import BEGINNING, REDIS_DOWN, Entry, Outage, Transport
from fleetwatch.lifecycle import Lifecycle, LifecycleConfig

log = logging.getLogger("fleetwatch.correlate")

_STREAM_ID: Final = re.compile(r"\d{1,20}-\d{1,20}")
FORGET_SENDER_S: Final = 7 * 86400.0
"""A live agent not heard from for this long is forgotten (its repeats are older)."""


@dataclass
class Settings:
    """How a correlator runs."""

    shards: int
    lease_ms: int = 5000
    """A lease's time to live; renewed every loop, which is at most a third of it."""
    read_count: int = 64
    """Entries read per shard per loop."""
    commit_ms: int = 250
    """A shard that is behind commits at least this often (one caught up: at once),
    and at least every third of a lease."""


@dataclass
class ShardWork:
    """One owned shard: its lease token, engines, lifecycle and committed offset."""

    token: str
    offset: str
    engines: dict[str, Engine]
    lifecycle: Lifecycle
    changed: dict[str, Finding] = field(default_factory=dict)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    seen: dict[str, list[int | float]] = field(default_factory=dict)
    """Live agent (``source``) -> [the last ``seq`` applied from it, wall time then]."""
    applied: int = 0
    """Entries applied since the last commit."""
    committed_at: float = field(default_factory=time.monotonic)

    def state(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "families": {
                family: {d.name: d.state() for d in engine.detectors}
                for family, engine in self.engines.items()
            },
            "lifecycle": self.lifecycle.state(),
            "seen": self.seen,
        }


class Correlator:
    """One worker of a fleet's correlators (see the module docstring)."""

    def __init__(
        self,
        name: str,
        transport: Transport,
        ledger: Ledger,
        configs: dict[str, Any],
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.transport = transport
        self.ledger = ledger
        self.configs = configs
        self.settings = settings
        self.clock = clock
        self.owned: dict[int, ShardWork] = {}
        self.refused = 0
        self.bad = 0
        self.repeated = 0
        """Entries dropped as repeats of what a live agent sent before."""
        self.entries = 0

    # -- the loop --------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool]) -> None:
        """Work until ``stop()`` says so; then commit nothing more and give shards back.

        Redis unreachable (down, restarting): every shard is let go (its lease cannot
        be renewed, and a commit would be refused anyway), and the worker tries again
        with a growing pause; once Redis answers it takes shards afresh from their
        last commit. A Redis that keeps its data (AOF) thus loses nothing.
        """
        outage = Outage(self.name, log)
        try:
            while not stop():
                try:
                    self.step(block_ms=self.settings.lease_ms // 3)
                    outage.answered()
                except REDIS_DOWN as exc:
                    self.owned.clear()
                    outage.failed(exc, stop)
        finally:
            with contextlib.suppress(*REDIS_DOWN):  # down: the leases expire by themselves
                self.close()

    def step(self, block_ms: int = 0) -> int:
        """One loop: keep leases, balance, read and commit; return entries applied."""
        self.balance()
        return self.work(block_ms)

    def balance(self) -> None:
        lease = self.settings.lease_ms
        alive = self.ledger.heartbeat(self.name, lease)
        for shard in list(self.owned):
            if not self.ledger.renew(shard, self.owned[shard].token, lease):
                log.warning("%s: lost the lease of shard %d", self.name, shard)
                del self.owned[shard]
        share = math.ceil(self.settings.shards / max(alive, 1))
        while len(self.owned) > share:  # give back the highest first (others take them)
            shard = max(self.owned)
            if self.owned[shard].applied:
                self._commit(shard, self.owned[shard])
            if shard in self.owned:  # a refused commit dropped it already
                self.ledger.release(shard, self.owned.pop(shard).token)
        if len(self.owned) >= share:
            return
        start = sum(self.name.encode()) % self.settings.shards  # spread first tries
        for i in range(self.settings.shards):
            shard = (start + i) % self.settings.shards
            if shard in self.owned:
                continue
            token = Ledger.token(self.name)
            if self.ledger.acquire(shard, token, lease):
                self.owned[shard] = self._restore(shard, token)
                if len(self.owned) >= share:
                    return

    def work(self, block_ms: int = 0) -> int:
        """Read and apply every owned shard's new entries; commit the shards that are
        caught up or due; return the entries committed."""
        count = self.settings.read_count
        offsets = {shard: w.offset for shard, w in self.owned.items()}
        # a shard with work not yet committed must not wait in a blocking read
        pending = any(w.applied for w in self.owned.values())
        read = self.transport.read(offsets, count, 0 if pending else block_ms)
        now = time.monotonic()
        # well inside a lease, which is renewed once a loop
        due = min(self.settings.commit_ms, self.settings.lease_ms // 3) / 1000
        committed = 0
        for shard, work in list(self.owned.items()):
            entries = read.get(shard, [])
            if entries:
                try:
                    work.transitions += self._apply(work, entries)
                except REDIS_DOWN:
                    raise
                except Exception as exc:
                    work = self._poisoned(shard, work, entries, exc)
                work.applied += len(entries)
            behind = len(entries) >= count
            if work.applied and (not behind or now - work.committed_at >= due):
                committed += self._commit(shard, work)
        return committed

    def _poisoned(
        self, shard: int, work: ShardWork, entries: list[Entry], exc: Exception
    ) -> ShardWork:
        """A detector failed on these entries (a state that restored but is not what a
        detector wrote, say): they are skipped and counted, and the shard goes on afresh
        after them, rather than every worker dying on it in turn."""
        log.error(
            "%s: shard %d failed on entries up to %s (%s: %s); they are skipped and its "
            "state starts afresh",
            self.name,
            shard,
            entries[-1].id,
            type(exc).__name__,
            str(exc)[:200],
        )
        self.bad += len(entries)
        self.ledger.count_bad(len(entries))
        fresh = self._fresh(work.token, entries[-1].id)
        fresh.applied = work.applied
        self.owned[shard] = fresh
        return fresh

    def _commit(self, shard: int, work: ShardWork) -> int:
        """Commit what ``work`` applied since its last commit; return its entries."""
        rows = {f.id: {**f.to_json(), "status": "open"} for f in work.changed.values()}
        for t in work.transitions:
            if t["transition"] == "resolved":
                rows[t["id"]] = finding_row(t)
        findings = list(rows.values())
        if not self.ledger.commit(shard, work.token, work.state(), findings, work.transitions):
            self.refused += 1
            log.warning("%s: commit to shard %d refused (lease lost)", self.name, shard)
            del self.owned[shard]
            return 0
        self.transport.trim(shard, work.offset)  # committed: never read again
        applied, work.applied = work.applied, 0
        work.changed.clear()
        work.transitions = []
        work.committed_at = time.monotonic()
        self.entries += applied
        return applied

    def close(self) -> None:
        """Commit what was applied, then give every shard back."""
        for shard, work in list(self.owned.items()):
            if work.applied:
                self._commit(shard, work)
        for shard, work in self.owned.items():
            self.ledger.release(shard, work.token)
        self.owned.clear()
        self.ledger.leave(self.name)

    # -- one shard ---------------------------------------------------------------------------

    def _fresh(self, token: str, offset: str) -> ShardWork:
        """A shard's work with nothing applied yet: an engine per family."""
        engines = {
            family: Engine(build({n: c for n, c in self.configs.items() if n in names}))
            for family, names in sorted(families().items())
        }
        return ShardWork(token, offset, engines, Lifecycle(LifecycleConfig()))

    def _restore(self, shard: int, token: str) -> ShardWork:
        work = self._fresh(token, BEGINNING)
        try:
            saved = self.ledger.load(shard)
            if saved is None:
                return work
            offset = str(saved.get("offset", BEGINNING))
            if not _STREAM_ID.fullmatch(offset):
                raise ValueError(f"offset {offset[:40]!r} is no stream id")
            work.offset = offset
            for family, states in saved.get("families", {}).items():
                for detector in work.engines[family].detectors:
                    if detector.name in states:
                        detector.restore(states[detector.name])
            work.lifecycle.restore(saved.get("lifecycle", {}))
            work.seen = {str(k): [int(v[0]), float(v[1])] for k, v in saved.get("seen", {}).items()}
        except Exception as exc:
            # state this version cannot read: the shard goes on from its offset without
            # it (its open windows are lost), rather than every worker dying on it
            log.error("%s: shard %d's state is unreadable (%s); afresh", self.name, shard, exc)
            self.ledger.count_bad()
            return self._fresh(token, work.offset)
        return work

    def _apply(self, work: ShardWork, entries: list[Entry]) -> list[dict[str, Any]]:
        """Feed ``entries`` to the shard's engines; return the transitions they made."""
        now = self.clock()
        changed: list[Finding] = []
        for entry in entries:
            work.offset = entry.id
            if entry.fields.get(b"type") == b"end":
                for engine in work.engines.values():
                    before = dict(engine.findings)
                    changed += [f for f in engine.finish() if before.get(f.id) != f]
                continue
            family = entry.fields.get(b"family", b"").decode(errors="replace")
            target = work.engines.get(family)
            try:
                batch = decode(entry.fields.get(b"batch", b""))
                if target is None:
                    raise CodecError(f"unknown family {family!r}")
                if self._repeated(work, entry, now):  # a batch it can read: then its seq
                    continue
            except CodecError as exc:
                self.bad += 1
                self.ledger.count_bad()
                log.warning("%s: entry %s skipped: %s", self.name, entry.id, exc)
                continue
            changed += target.process(batch)
        for engine in work.engines.values():
            changed += engine.flush(now)
        for source in [s for s, (_, at) in work.seen.items() if now - at > FORGET_SENDER_S]:
            del work.seen[source]
        for finding in changed:
            work.changed[finding.id] = finding
        transitions = work.lifecycle.update(changed, now) + work.lifecycle.tick(now)
        return [t.to_json() for t in transitions]

    def _repeated(self, work: ShardWork, entry: Entry, now: float) -> bool:
        """True for an entry a live agent sent again (its ``seq`` from that ``source``
        was applied already); remembers the newest ``seq`` of each source otherwise.
        Entries of file agents carry no ``source``: they are never repeats."""
        source = entry.fields.get(b"source")
        if source is None:
            return False
        try:
            seq = int(entry.fields.get(b"seq", b""))
        except ValueError:
            raise CodecError("a live agent's entry without a numeric seq") from None
        if not 0 < seq < 1 << 63:  # SQLite's rowid: what an agent's uplink numbers with
            raise CodecError(f"a live agent's seq out of range ({str(seq)[:20]})")
        name = source.decode(errors="replace")
        last = work.seen.get(name)
        if last is not None and seq <= last[0]:
            self.repeated += 1
            return True
        work.seen[name] = [seq, now]
        return False

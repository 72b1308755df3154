"""``fleetwatch slurm-health``: Slurm's ``HealthCheckProgram`` for GPU faults, one run.

What Slurm does with the program (22.05: ``man slurm.conf``, and slurmd as the tests run
it): slurmd runs it as root every ``HealthCheckInterval`` seconds, and once when it
starts, before the node registers; with no arguments (``HealthCheckProgram`` is a path
and nothing else) and an environment of ``SLURMD_NODENAME`` alone (no ``PATH``); it
kills it after 60 s. Slurm does nothing with the result but log a non-zero exit, with
what the program printed, in slurmd's log (``health_check failed: rc:1 output:...``):
"any action to be taken must be explicitly performed by the program". So the program
drains its own node with ``scontrol update``, as NHC does.

One run is a watch that reads what is new and stops, over a store of the watch's format
(``store.py``, ``/var/lib/fleetwatch/slurm-health.db`` by default):

1. lock the store (a run that starts while another holds it waits for it);
2. restore the detectors and the lifecycle from the store, as a watch restarting does;
3. read each source once, from its saved position to its end (``once`` sources: log
   files, the kernel log), through the engine;
4. resolve what has been quiet, and commit the findings, state, positions and this
   node's action requests in one transaction;
5. decide the requests through the actor: the breaker, and a dry run unless ``act``;
6. say which open findings take this node out of service: the verdict.

A finding is this node's when it names the node's Slurm name, its host name or its
short host name (the kernel log names the host; Slurm's ``NodeName`` may differ), and
its drain names the Slurm node. A finding that names another node (a shared log) is
reported and never acted on. A finding a dry run decided is asked again by the first
run that acts, so trying a dry run first never keeps a node from being drained later.
``fleetwatch silence --store`` this store keeps a finding from being drained, and from
making the node unhealthy. Nothing is resumed: an operator does that.

The first run reads the kernel log of this boot whole (``kmsg_live``), but a followed
file only from its end unless ``from_start``: a file holds earlier boots too.

Its store sees one node, so the breaker counts the fleet in Slurm (``actor``): before a
drain, the drains fleetwatch made in the window on any node (their reasons, read with
sinfo) and Slurm's node count, so every node's health check shares one limit. When
Slurm cannot be asked the drain is held (fail closed) and the next run that acts asks
again. Two nodes deciding in the same second can both pass a limit that has room for
one; ``HealthCheckNodeState=CYCLE`` spreads the runs over ``HealthCheckInterval``, so
that few do.
"""

from __future__ import annotations

import dataclasses
import fcntl
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from fleetwatch import config as config_file
from fleetwatch.actions import BREAKER, SLURM_HEALTH_STORE
from fleetwatch.actions.actor import UNASKED, Actor, requests
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.slurm import SlurmConfig, reason
from fleetwatch.config import ConfigError, build
from fleetwatch.engine import Engine
from fleetwatch.events import EventBatch
from fleetwatch.findings import Finding
from fleetwatch.hostnames import is_slurm_node_name
from fleetwatch.inputs.kmsg_live import KmsgSettings, KmsgSource
from fleetwatch.inputs.live import FileSettings, FileSource, LiveSource
from fleetwatch.lifecycle import LIFECYCLE_KEY, Lifecycle, LifecycleConfig, Silence, Transition
from fleetwatch.sources.context import ReadOptions, ReadStats
from fleetwatch.store import ActionRow, Commit, Store, StoreError

DRY_RUN: Final = ("would_act", "would_hold")  # outcomes a run that acts asks again

Say = Callable[[str, int], None]


@dataclass(frozen=True)
class HealthCheck:
    """One node's health check: what it reads, where it keeps its place, how it acts."""

    node: str
    """This node's Slurm name (the one drained)."""
    store: str = SLURM_HEALTH_STORE
    follow: tuple[str, ...] = ()
    """Log files or folders to read."""
    kmsg: KmsgSettings | None = None
    """Read this node's kernel log (``/dev/kmsg``, else ``journalctl -k``)."""
    from_start: bool = False
    """First run: read what the followed files already hold (default: from their end)."""
    act: bool = False
    """Drain with scontrol; False: a dry run that says what it would do."""
    detectors: dict[str, Any] = field(default_factory=dict)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class Verdict:
    """What one run found: ``unhealthy`` is empty when the node is healthy."""

    node: str
    unhealthy: list[tuple[Finding, ActionRow | None]]  # with what became of its drain
    silenced: list[Finding]  # this node's, but ``fleetwatch silence`` holds them
    noted: list[Finding]  # this node's, open, but none takes the node out of service
    elsewhere: list[Finding]  # open findings that name other nodes: never acted on
    stats: ReadStats
    failed: dict[str, str]  # source -> why it could not be read

    @property
    def healthy(self) -> bool:
        return not self.unhealthy


def load(
    path: Path | None,
    node: str,
    store: str = SLURM_HEALTH_STORE,
    follow: tuple[str, ...] = (),
    kmsg: bool = False,
    from_start: bool = False,
    act: bool = False,
) -> HealthCheck:
    """The health check a config file (detectors, ``[watch.breaker]``, ``[watch.slurm]``,
    ``[watch.kmsg]``, the lifecycle's ``[watch]`` keys) and the command line describe.

    The config's store, act and sources are the watch's, not this: they come from the
    command line. Raises ``ConfigError`` (one line).
    """
    raw, where = config_file.read(path)
    detectors = config_file.load(path)
    table = raw.get("watch", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [watch] must be a table")
    lifecycle_keys = {f.name for f in dataclasses.fields(LifecycleConfig)}
    lifecycle = config_file.settings(
        LifecycleConfig, {k: v for k, v in table.items() if k in lifecycle_keys}, where, "watch"
    )
    breaker = config_file.settings(BreakerConfig, table.get("breaker", {}), where, "watch.breaker")
    slurm = config_file.settings(SlurmConfig, table.get("slurm", {}), where, "watch.slurm")
    kmsg_settings = None
    if kmsg:
        kmsg_settings = config_file.settings(
            KmsgSettings, table.get("kmsg", {}), where, "watch.kmsg"
        )
    if not is_slurm_node_name(node):
        raise ConfigError(
            f"slurm-health: node name {node!r} is not a Slurm node name "
            "(a host name, not ALL: Slurm reads ALL as every node)"
        )
    if not (follow or kmsg):
        raise ConfigError("slurm-health: nothing to read: give --kmsg and/or --follow PATH")
    return HealthCheck(
        node, store, follow, kmsg_settings, from_start, act, detectors, lifecycle, breaker, slurm
    )


def names_of(node: str) -> frozenset[str]:
    """The names a log may give this node: its Slurm name, host name, short host name."""
    host = socket.gethostname()
    return frozenset({node, host, host.split(".", 1)[0]})


def run(check: HealthCheck, say: Say) -> Verdict:
    """One health check (see the module docstring); ``StoreError``, ``SourceError`` at start."""
    with _locked(check.store):
        store = Store(check.store)
        try:
            return _Run(check, store, say).verdict()
        finally:
            store.close()


@contextmanager
def _locked(store: str) -> Iterator[None]:
    """Hold ``<store>.lock``: two runs at once would read the same lines twice."""
    lock = Path(f"{store}.lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a")
    except OSError as exc:
        raise StoreError(f"cannot lock store {store}: {exc.strerror or exc}") from exc
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


class _Run:
    """The state of one run, from restoring to the verdict."""

    def __init__(self, check: HealthCheck, store: Store, say: Say) -> None:
        self.check = check
        self.store = store
        self.say = say
        self.names = names_of(check.node)
        self.engine = Engine(build(check.detectors))
        self.lifecycle = Lifecycle(check.lifecycle)
        self.now = time.time()
        self.lifecycle.silences = [  # ``fleetwatch silence --store`` this store
            Silence(row.node, row.gpu, row.detector, row.until) for row in store.silences(self.now)
        ]
        store.restore({d.name: d for d in self.engine.detectors} | {LIFECYCLE_KEY: self.lifecycle})
        self.positions: dict[str, Any] = store.positions()
        self.pending: list[Transition] = []
        self.changed: dict[str, Finding] = {}
        self.sources = self._sources()
        for source in self.sources:
            source.check()  # SourceError: one line, before anything is read

    def _sources(self) -> list[LiveSource]:
        options = ReadOptions(node=self.check.node)
        made: list[LiveSource] = []
        for path in self.check.follow:
            settings = FileSettings(path=path, from_start=self.check.from_start)
            saved = self.positions.get(f"file:{path}")
            made.append(FileSource(settings, options, saved, once=True))
        if self.check.kmsg is not None:
            saved = self.positions.get("kmsg")
            made.append(KmsgSource(self.check.kmsg, self.check.node, options, saved, once=True))
        return made

    def verdict(self) -> Verdict:
        failed = self._read()
        now = time.time()
        self._found(self.engine.flush(now), now)
        self.pending += self.lifecycle.tick(now)
        mine = [
            {**request, "node": self.check.node}
            for request in requests(self.pending)
            if request["node"] in self.names
        ]
        self._commit(mine)
        actor = Actor(
            self.store,
            self.check.breaker,
            "slurm" if self.check.act else "",
            self.check.slurm,
            say=self.say,
        )
        actor.resume_open(t.finding for t in self.lifecycle.open.values())
        if self.check.act:
            self._ask_again()
        self._found(actor.run(now, self.lifecycle.open), now)
        if self.pending:  # the breaker_open finding
            self._commit([])
        return self._verdict(failed)

    def _read(self) -> dict[str, str]:
        """Each source once, to its end; what could not be read, by source."""
        failed: dict[str, str] = {}
        stop = threading.Event()
        for source in self.sources:
            try:
                source.run(self._deliver_from(source.name), stop)
            except Exception as exc:  # a source that fails: the others are still read
                failed[source.name] = f"{type(exc).__name__}: {exc}"
        return failed

    def _deliver_from(self, name: str) -> Callable[[list[EventBatch], Any], None]:
        def deliver(batches: list[EventBatch], position: Any) -> None:
            for batch in batches:
                self._found(self.engine.process(batch), time.time())
            if position is not None:
                self.positions[name] = position

        return deliver

    def _found(self, found: list[Finding], now: float) -> None:
        self.engine.findings.clear()  # the lifecycle keeps what is open
        self.changed.update((f.id, f) for f in found)
        self.pending += self.lifecycle.update(found, now)

    def _commit(self, asked: list[dict[str, Any]]) -> None:
        rows = {f.id: {**f.to_json(), "status": "open"} for f in self.changed.values()}
        for t in self.pending:
            if t.kind == "resolved":
                rows[t.finding.id] = {**t.finding.to_json(), "status": "resolved"}
        checkpoints: dict[str, Any] = {d.name: d.state() for d in self.engine.detectors}
        checkpoints[LIFECYCLE_KEY] = self.lifecycle.state()
        self.store.commit(
            Commit(
                list(rows.values()),
                checkpoints,
                self.positions,
                [],
                {},
                asked,
                [self.check.node],
            )
        )
        self.pending, self.changed = [], {}

    def _ask_again(self) -> None:
        """Open findings of this node that a dry run decided, or held back because Slurm
        could not be asked: pending again, to act on."""
        for row in self.store.actions():
            unasked = row.outcome == "held" and row.detail.startswith(UNASKED)
            if (row.outcome in DRY_RUN or unasked) and row.finding_id in self.lifecycle.open:
                finding = self.lifecycle.open[row.finding_id].finding
                self.store.decide(row.finding_id, "pending", reason(finding), time.time())

    def _verdict(self, failed: dict[str, str]) -> Verdict:
        rows = {row.finding_id: row for row in self.store.actions()}
        unhealthy: list[tuple[Finding, ActionRow | None]] = []
        silenced: list[Finding] = []
        noted: list[Finding] = []
        elsewhere: list[Finding] = []
        for tracked in self.lifecycle.open.values():
            finding = tracked.finding
            if finding.detector == BREAKER:
                continue
            if finding.node not in self.names:
                elsewhere.append(finding)
            elif not finding.action.takes_out_of_service:
                noted.append(finding)
            elif any(s.matches(finding, self.now) for s in self.lifecycle.silences):
                silenced.append(finding)
            else:
                unhealthy.append((finding, rows.get(finding.id)))
        stats = ReadStats()
        for source in self.sources:
            stats.files += source.stats.files
            stats.lines += source.stats.lines
            stats.events += source.stats.events
            stats.unreadable.update(source.stats.unreadable)
        return Verdict(self.check.node, unhealthy, silenced, noted, elsewhere, stats, failed)

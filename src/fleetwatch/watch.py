"""Watch: the live sources, through the same engine, into a store that survives restarts.

Each source (``sources/live.py``) runs on its own thread and delivers batches with its
position. The watch loop feeds the batches to the engine, turns what the detectors
report into transitions (``lifecycle.py``), and commits, in one SQLite transaction
(``store.py``): the findings, every detector's state, every source's position, and
the announcements the webhook still has to send. Only then does anyone hear of it:
the JSONL file (exactly once: its committed length is part of the commit), the
console, the webhook and Alertmanager (at least once, from the outbox) and ``/metrics``.

A commit happens as soon as there is a transition to tell, else at most every
``commit_interval_s`` while events flow. After ``kill -9`` the next start restores
the last commit: detectors and sources describe the same moment, so the events after
it are read exactly once more. A commit that finds no room (a full disk) keeps
everything it would have written, cuts the JSONL back, says so once and is tried again
with backoff; a store that went bad mid-run stops the watch with one line.

After each commit that had transitions, the open findings are linked into incidents
again (``incidents.Tracker``): an incident that links several findings is logged when
it is new, when it grew (a finding joined it, or its severity or action rose) and when
it resolved; as a warning, unless all its findings are silenced or flapping (INFO,
saying so). Incidents are recomputed, not stored: ``fleetwatch findings --output
incidents`` lists them from the store.

A transition whose finding takes its node out of service commits an action request
with it; after the commit the actor (``actions/actor.py``) decides it through the
blast-radius breaker and, with ``--act slurm``, drains the node (``--act kubernetes``:
cordons and taints it); without ``--act`` it only logs what it would do.

With a Kubernetes API for nodes (``--kube-conditions``, ``[watch.kube_nodes]``, or
``--act kubernetes``), committed transitions also become node conditions and Events
(``actions/kube_nodes.py``), written on the writer's own thread: reporting, not acting,
so not through the breaker.

A fleet agent (``fleet/agent.py``) is a watch with a ``Relay``: each batch read is
also handed to it, and what it will send to the fleet is written in the same commit
as the findings and positions, so a restart neither skips nor re-reads any of it.

A source that fails is restarted with exponential backoff (tenacity) and counted in
``fleetwatch_source_failures_total``; the others go on.

Silences come from the config file and the command line (for this run), and from the
store's ``silences`` table, which ``fleetwatch silence`` writes from another process:
the watch reads that table again every second, so a silence added or removed there
holds from the next second on, without a restart, and ends at its ``until``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import tenacity
from prometheus_client import CollectorRegistry

from fleetwatch import config as config_file
from fleetwatch.actions.actor import TOOLS, Actor, requests
from fleetwatch.actions.breaker import BreakerConfig
from fleetwatch.actions.kube_api import KubeConfigError
from fleetwatch.actions.kube_nodes import KubeNodes, KubeNodeSettings
from fleetwatch.actions.slurm import SlurmConfig
from fleetwatch.config import ConfigError, build
from fleetwatch.engine import Engine
from fleetwatch.events import EventBatch
from fleetwatch.findings import Finding
from fleetwatch.incidents import Tracker
from fleetwatch.lifecycle import (
    LIFECYCLE_KEY,
    Lifecycle,
    LifecycleConfig,
    Silence,
    Transition,
    entity,
)
from fleetwatch.sinks.alertmanager import SINK as ALERTMANAGER
from fleetwatch.sinks.alertmanager import Alertmanager, AlertmanagerConfig
from fleetwatch.sinks.console import ConsoleSink
from fleetwatch.sinks.metrics import MAX_FINDING_SERIES, Metrics
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.table import when
from fleetwatch.sinks.transition_log import TransitionLog
from fleetwatch.sinks.webhook import SINK as WEBHOOK
from fleetwatch.sinks.webhook import Webhook, WebhookConfig
from fleetwatch.sources.context import ReadOptions
from fleetwatch.sources.kmsg_live import KmsgSettings, KmsgSource
from fleetwatch.sources.kube_watch import KubeSettings, KubeSource
from fleetwatch.sources.live import FileSettings, FileSource, LiveSource
from fleetwatch.sources.nvml import NvmlSettings, NvmlSource
from fleetwatch.sources.scrape import ScrapeSettings, ScrapeSource
from fleetwatch.store import Commit, SilenceRow, Store, StoreError, StoreFull

log = logging.getLogger(__name__)  # the command sets where it goes (cli: stderr, with time)
RETAIN_EVERY_S = 600.0


@dataclass(frozen=True)
class WatchSettings:
    """``[watch]``: the store, commits and retention."""

    store: str = "fleetwatch-watch.db"
    """The SQLite store: findings, checkpoints, positions."""
    jsonl: str = ""
    """A JSONL file of transitions (empty: none)."""
    commit_interval_s: float = 1.0
    """Longest time between commits while events flow."""
    retention_days: float = 30.0
    """Resolved findings older than this leave the store."""
    max_store_bytes: int = 1 << 30
    """Past this size the oldest resolved findings leave the store first."""
    node: str = ""
    """The node name for records that name none (default: from file names)."""
    act: str = ""
    """Act on findings with this tool ("slurm", "kubernetes"); empty: dry run, log only."""


@dataclass(frozen=True)
class MetricsSettings:
    """``[watch.metrics]``: Prometheus ``/metrics``."""

    address: str = "127.0.0.1"
    """The address to bind (loopback by default)."""
    port: int = 9108
    """The port."""
    max_finding_series: int = MAX_FINDING_SERIES
    """At most this many ``fleetwatch_finding`` series, the most severe first."""


class Relay(Protocol):
    """Sends what a watch commits onward: a fleet agent's ``fleet.uplink.Uplink``.

    It adds its metrics to the watch's ``/metrics`` (``register``). The watch hands it
    each batch it read (``take``), asks it at each commit for the
    rows to write in the same transaction (``rows``; asked again if the commit failed),
    and tells it when they are in the store (``committed``); ``start`` and ``stop``
    run its sender."""

    commit_within_s: float
    """While it holds something for the fleet (``waiting``), commit at least this often."""

    def register(self, registry: CollectorRegistry) -> None: ...
    def take(self, batch: EventBatch) -> None: ...
    def waiting(self) -> bool: ...
    def rows(self, transitions: Sequence[Transition]) -> list[tuple[int, str, bytes]]: ...
    def committed(self) -> None: ...
    def start(self, store: Path) -> None: ...
    def stop(self, timeout_s: float = 5.0) -> None: ...


@dataclass(frozen=True)
class WatchPlan:
    """Everything a watch runs: built from the config file and the command line."""

    settings: WatchSettings
    lifecycle: LifecycleConfig
    sources: Callable[[dict[str, Any]], list[LiveSource]]  # saved positions -> sources
    detectors: dict[str, Any]
    metrics: MetricsSettings | None = None
    webhook: WebhookConfig | None = None
    alertmanager: AlertmanagerConfig | None = None
    silences: list[Silence] = field(default_factory=list)
    console: bool = True
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    kube_nodes: KubeNodeSettings | None = None  # None: no node conditions, Events, taints
    relay: Relay | None = None  # a fleet agent: what goes on to the fleet


def _backoff_runner(
    source: LiveSource,
    deliver: Callable[[list[EventBatch], Any], None],
    stop: threading.Event,
    failed: Callable[[str, BaseException], None],
) -> threading.Thread:
    """A thread that runs ``source``, restarting it with backoff when it fails."""

    def run_once() -> None:
        source.run(deliver, stop)
        if not stop.is_set():
            raise RuntimeError("stopped by itself")

    def report(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        failed(source.name, error or RuntimeError("failed"))

    retrying = tenacity.Retrying(
        wait=tenacity.wait_exponential_jitter(multiplier=0.5, max=60.0, jitter=0.5),
        stop=lambda _: stop.is_set(),
        before_sleep=report,
        sleep=stop.wait,  # type: ignore[arg-type]  # returns a bool, which tenacity ignores
        retry=tenacity.retry_if_exception_type(Exception),
        reraise=False,
    )

    def body() -> None:
        with contextlib.suppress(tenacity.RetryError):  # raised when stopping
            retrying(run_once)

    return threading.Thread(target=body, name=source.name, daemon=True)


class Watch:
    """One running watch."""

    def __init__(self, plan: WatchPlan) -> None:
        self.plan = plan
        self.store = Store(plan.settings.store)
        self.engine = Engine(build(plan.detectors))
        self.lifecycle = Lifecycle(plan.lifecycle, plan.silences)
        self._stored_silences: dict[int, SilenceRow] = {}  # the store's, as last read
        self.store.restore(
            {d.name: d for d in self.engine.detectors} | {LIFECYCLE_KEY: self.lifecycle}
        )
        self.positions: dict[str, Any] = self.store.positions()
        self.sources = plan.sources(self.positions)
        for source in self.sources:
            source.check()  # SourceError: one line, before any thread runs
        self.metrics = Metrics(
            plan.metrics.max_finding_series if plan.metrics else MAX_FINDING_SERIES
        )
        for detector in self.engine.detectors:  # absent never stands for 0
            self.metrics.detector_seconds.labels(detector.name)
        if plan.relay is not None:
            plan.relay.register(self.metrics.registry)
        self.metrics_port: int | None = None
        self.kube: KubeNodes | None = None
        if plan.kube_nodes is not None:
            instance = plan.settings.node or socket.gethostname()
            try:
                self.kube = KubeNodes(plan.kube_nodes, instance, self.metrics.registry, self._say)
            except KubeConfigError as exc:
                raise ConfigError(str(exc)) from exc
        self.actor = Actor(
            self.store,
            plan.breaker,
            plan.settings.act,
            plan.slurm,
            self.metrics.registry,
            self._say,
            self.kube,
        )
        self.actor.resume_open(t.finding for t in self.lifecycle.open.values())
        self.incidents = Tracker()
        self.incidents.update(t.finding for t in self.lifecycle.open.values())  # told before
        self.jsonl = self._transition_log(plan.settings.jsonl)
        self.webhook: Webhook | None = None
        if plan.webhook is not None:
            secret = os.environ[plan.webhook.secret_env].encode()
            self.webhook = Webhook(plan.webhook, self.store.path, secret)
        self.alertmanager: Alertmanager | None = None
        if plan.alertmanager is not None:
            self.alertmanager = Alertmanager(
                plan.alertmanager, self.store.path, _announced_open(self.lifecycle, time.time())
            )
        self.console = ConsoleSink() if plan.console else None
        self._queue: queue.Queue[tuple[str, list[EventBatch], Any]] = queue.Queue(maxsize=256)
        self._failures: queue.Queue[tuple[str, str]] = queue.Queue()
        self._pending: list[Transition] = []  # transitions since the last commit
        self._changed: dict[str, Finding] = {}  # findings changed since the last commit
        self._moved = False  # a source's position moved since the last commit
        self._exported_seconds: dict[str, float] = {}
        self._full_since: float | None = None  # commits have found no room since then
        self._retry_at = 0.0
        # the chaos harness widens the window between the JSONL write and the commit
        self._pause_in_commit_s = _env_seconds("FLEETWATCH_CHAOS_COMMIT_PAUSE_S")

    def _transition_log(self, path: str) -> TransitionLog | None:
        if not path:
            return None
        committed = self.store.meta("jsonl_bytes")
        log = TransitionLog(Path(path), int(committed) if committed is not None else None)
        if committed is None:  # what the file holds now is history: commit its length first
            self.store.commit(Commit([], {}, {}, [], {"jsonl_bytes": str(log.size)}))
        return log

    def _deliver_from(self, name: str) -> Callable[[list[EventBatch], Any], None]:
        def deliver(batches: list[EventBatch], position: Any) -> None:
            self._queue.put((name, batches, position))

        return deliver

    def _failed(self, name: str, error: BaseException) -> None:
        self._failures.put((name, f"{type(error).__name__}: {error}"))

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set; commit what was read before returning."""
        if self.plan.metrics is not None:
            self.metrics_port = self.metrics.serve(
                self.plan.metrics.address, self.plan.metrics.port
            )
        if self.webhook is not None:
            self.webhook.start()
        if self.alertmanager is not None:
            self.alertmanager.start()
        if self.plan.relay is not None:
            self.plan.relay.start(self.store.path)
        self.metrics.set_open(t.finding for t in self.lifecycle.open.values())
        runners = [
            _backoff_runner(s, self._deliver_from(s.name), stop, self._failed) for s in self.sources
        ]
        for runner in runners:
            runner.start()
        if self.kube is not None:
            self.kube.start(t.finding for t in self.lifecycle.open.values())
        self._say(self._banner())
        self._read_silences(time.time())
        self._act()  # what the last run committed and did not decide
        dirty = broken = False
        relay = self.plan.relay
        last_commit = last_tick = last_retain = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    self._apply(*self._queue.get(timeout=0.05))
                    while True:
                        self._apply(*self._queue.get_nowait())
                except queue.Empty:
                    pass
                dirty = dirty or bool(self._changed) or self._moved
                self._report_failures()
                now = time.monotonic()
                if now - last_tick >= 1.0:
                    self._tick(time.time())
                    last_tick = now
                interval = self.plan.settings.commit_interval_s
                if relay is not None and relay.waiting():  # the fleet waits for it
                    interval = min(interval, relay.commit_within_s)
                due = self._pending or (dirty and now - last_commit >= interval)
                if due and now >= self._retry_at and self._try_commit(now):
                    dirty, last_commit = False, now
                if now - last_retain >= RETAIN_EVERY_S:
                    with contextlib.suppress(StoreFull):  # room is what it makes: next time
                        self.store.retain(
                            self.plan.settings.retention_days, self.plan.settings.max_store_bytes
                        )
                    last_retain = now
        except StoreError:
            broken = True  # the store went bad: nothing more can be committed
            raise
        finally:
            stop.set()
            for runner in runners:
                runner.join(timeout=5)
            try:
                if not broken:
                    while not self._queue.empty():  # what the sources delivered while stopping
                        self._apply(*self._queue.get_nowait())
                    with contextlib.suppress(StoreFull):  # no room: the next start reads it
                        self._commit()
                        if self._pending:  # what acting just found (breaker_open) as well
                            self._commit()
            finally:
                if self.kube is not None:
                    self.kube.stop()  # what it was handed, one more try each
                    if not broken:
                        with contextlib.suppress(StoreError):  # the next start sees "acted"
                            self.actor.settle(time.time())
                if self.webhook is not None:
                    self.webhook.stop()
                if self.alertmanager is not None:
                    self.alertmanager.stop()
                if self.plan.relay is not None:
                    self.plan.relay.stop()
                if self.jsonl is not None:
                    self.jsonl.close()
                self.store.close()

    def _apply(self, name: str, batches: list[EventBatch], position: Any) -> None:
        """Feed one delivery to the engine; keep its transitions for the next commit."""
        for batch in batches:
            self.metrics.count_events(batch)
            named = np.unique(batch["node"]).tolist()
            self.actor.saw(s for s in map(batch.string, named) if s is not None)
            if self.plan.relay is not None:
                self.plan.relay.take(batch)
            found = self.engine.process(batch)
            self.engine.findings.clear()  # the lifecycle keeps what is open
            self._changed.update((f.id, f) for f in found)
            self._pending += self.lifecycle.update(found, time.time())
        if position is not None:
            self.positions[name] = position
            self._moved = True

    def _tick(self, wall: float) -> None:
        """Once a second: detectors forget what their keep times end, quiet findings resolve.

        The detectors age their state on this clock, not on the events' stamps (a
        boot-clock dmesg and an old backlog are both read now).
        """
        self._read_silences(wall)
        found = self.engine.flush(wall)
        self.engine.findings.clear()  # the lifecycle keeps what is open
        self._changed.update((f.id, f) for f in found)
        self._pending += self.lifecycle.update(found, wall)
        self._pending += self.lifecycle.tick(wall)
        self.actor.settle(wall)  # take-outs the Kubernetes writer gave up

    def _read_silences(self, wall: float) -> None:
        """The store's silences, as ``fleetwatch silence`` left them, beside the plan's."""
        rows = {row.id: row for row in self.store.silences(wall)}
        if rows.keys() == self._stored_silences.keys():
            return
        for row in rows.values():
            if row.id not in self._stored_silences:
                self._say(f"silence {row.id} holds: {_described(row)}")
        for gone in self._stored_silences.keys() - rows.keys():
            self._say(f"silence {gone} ended")
        self._stored_silences = rows
        self.lifecycle.silences = [
            *self.plan.silences,
            *(Silence(r.node, r.gpu, r.detector, r.until) for r in rows.values()),
        ]

    def _try_commit(self, now: float) -> bool:
        """Commit; on a full disk, keep it all for a later try (True: committed)."""
        try:
            self._commit()
        except StoreFull as exc:
            if self._full_since is None:
                self._full_since = now
                self._say(
                    f"cannot commit ({exc}); keeping what was read, trying again", logging.ERROR
                )
            self.metrics.source_failures.labels("store").inc()
            waited = now - self._full_since
            self._retry_at = now + min(30.0, max(0.5, waited))  # backoff, up to 30 s
            return False
        if self._full_since is not None:
            self._say("committing again")
            self._full_since = None
        return True

    def _commit(self) -> None:
        """One transaction; ``StoreFull`` leaves everything as it was, to try again."""
        transitions, changed = self._pending, self._changed
        records = [t.to_json() for t in transitions]
        rows = {f.id: {**f.to_json(), "status": "open"} for f in changed.values()}
        for t in transitions:
            if t.kind == "resolved":
                rows[t.finding.id] = {**t.finding.to_json(), "status": "resolved"}
        meta = {}
        committed_jsonl = self.jsonl.size if self.jsonl is not None else 0
        if self.jsonl is not None:
            try:
                meta["jsonl_bytes"] = str(self.jsonl.write(records))
            except OSError as exc:
                raise StoreFull(f"JSONL {self.jsonl.path}: {exc.strerror or exc}") from exc
            if self._pause_in_commit_s:
                time.sleep(self._pause_in_commit_s)
        # a detector that read nothing since the last commit has the state stored already
        ran = {n for n, s in self.engine.seconds.items() if s > self._exported_seconds.get(n, 0.0)}
        checkpoints: dict[str, Any] = {
            d.name: d.state() for d in self.engine.detectors if d.name in ran
        }
        checkpoints[LIFECYCLE_KEY] = self.lifecycle.state()
        announced = [t for t in transitions if t.announce]
        outbox = [(WEBHOOK, t.to_json()) for t in announced] if self.webhook else []
        if self.alertmanager is not None:  # it follows what it posted, quiet or not
            outbox += [(ALERTMANAGER, t.to_json()) for t in transitions]
        nodes = sorted(self.actor.unsaved)
        relay = self.plan.relay
        uplink = relay.rows(transitions) if relay is not None else []
        try:
            self.store.commit(
                Commit(
                    list(rows.values()),
                    checkpoints,
                    self.positions,
                    outbox,
                    meta,
                    requests(transitions),
                    nodes,
                    uplink,
                )
            )
        except StoreError:
            if self.jsonl is not None:
                self.jsonl.cut(committed_jsonl)  # its lines are written again next time
            raise
        self._pending, self._changed, self._moved = [], {}, False
        self.actor.unsaved.difference_update(nodes)
        if relay is not None:
            relay.committed()
        if self.webhook is not None and outbox:
            self.webhook.wake()
        if self.kube is not None:
            self.kube.report(transitions)
        if self.alertmanager is not None and transitions:
            self.alertmanager.wake()
        if self.console is not None and announced:
            self.console.announce(announced)
        for t in announced:
            self.metrics.announcements.labels(t.kind).inc()
        self.metrics.set_open(t.finding for t in self.lifecycle.open.values())
        if transitions:
            self._tell_incidents()
        for name in ran:
            seconds = self.engine.seconds[name]
            self.metrics.detector_seconds.labels(name).inc(
                seconds - self._exported_seconds.get(name, 0.0)
            )
            self._exported_seconds[name] = seconds
        unreadable: Counter[tuple[str, str]] = Counter()
        for source in self.sources:
            unreadable.update(source.stats.unreadable)
        self.metrics.count_unreadable(unreadable)
        self._act()

    def _act(self) -> None:
        """Decide the committed action requests; a ``breaker_open`` finding commits next."""
        now = time.time()
        found = self.actor.run(now, self.lifecycle.open)
        self._changed.update((f.id, f) for f in found)
        self._pending += self.lifecycle.update(found, now)

    def _tell_incidents(self) -> None:
        """Log how the incidents of the open findings changed (summaries are escaped).

        An incident whose findings are all quiet (silenced, flapping) is logged at INFO
        and says why, as its findings are recorded but not announced."""
        now = time.time()
        for change in self.incidents.update(t.finding for t in self.lifecycle.open.values()):
            incident = change.incident
            why = {_why_quiet(self.lifecycle, f, now) for f in incident.findings}
            quiet = "" if None in why else "; " + "/".join(sorted(str(w) for w in why))
            self._say(
                f"incident {incident.incident_id} {change.kind} ({incident.rule}, "
                f"{len(incident.findings)} findings, {incident.action}{quiet}): "
                f"{incident.summary}",
                logging.INFO if quiet or change.kind == "resolved" else logging.WARNING,
            )

    def _report_failures(self) -> None:
        while not self._failures.empty():
            name, why = self._failures.get_nowait()
            self.metrics.source_failures.labels(name).inc()
            self._say(f"source {name} failed ({why}); retrying with backoff", logging.WARNING)

    def _banner(self) -> str:
        parts = [f"watching {len(self.sources)} source(s)", f"store {self.plan.settings.store}"]
        if self.metrics_port is not None:
            address = self.plan.metrics.address if self.plan.metrics else "127.0.0.1"
            parts.append(f"metrics on http://{address}:{self.metrics_port}/metrics")
        return "; ".join(parts)

    def _say(self, line: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", line)


_WATCH_KEYS = frozenset(
    {
        "files",
        "metrics",
        "webhook",
        "alertmanager",
        "silence",
        "kmsg",
        "nvml",
        "dcgm",
        "kubernetes",
        "breaker",
        "slurm",
        "kube_nodes",
    }
)


def load_plan(path: Path | None, overrides: dict[str, Any]) -> WatchPlan:
    """The watch the config file describes, with the command line's ``overrides``.

    ``overrides``: ``store``, ``jsonl``, ``node`` (strings), ``follow`` (paths),
    ``from_start``, ``kmsg``, ``nvml``, ``dcgm`` (URLs), ``kubeconfig``, ``metrics``
    (MetricsSettings), ``webhook`` (a URL), ``alertmanager`` (URLs), ``silences``,
    ``act`` (a tool name), ``kube_conditions`` (write node conditions and Events, with
    ``kubeconfig``).
    Raises ``ConfigError`` (one line) for anything wrong, before a thread starts.
    """
    raw, where = config_file.read(path)
    detectors = config_file.load(path)
    table = raw.get("watch", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [watch] must be a table")
    plain = {k: v for k, v in table.items() if k not in _WATCH_KEYS}
    lifecycle_keys = {f.name for f in dataclasses.fields(LifecycleConfig)}
    lifecycle = config_file.settings(
        LifecycleConfig, {k: v for k, v in plain.items() if k in lifecycle_keys}, where, "watch"
    )
    settings = config_file.settings(
        WatchSettings, {k: v for k, v in plain.items() if k not in lifecycle_keys}, where, "watch"
    )
    settings = dataclasses.replace(
        settings,
        **{k: overrides[k] for k in ("store", "jsonl", "node", "act") if overrides.get(k)},
    )
    if settings.act and settings.act not in TOOLS:
        raise ConfigError(f"{where}: watch.act must be one of {', '.join(TOOLS)} or empty")
    breaker = config_file.settings(BreakerConfig, table.get("breaker", {}), where, "watch.breaker")
    slurm = config_file.settings(SlurmConfig, table.get("slurm", {}), where, "watch.slurm")
    kube_nodes = None
    wanted = overrides.get("kube_conditions") or settings.act == "kubernetes"
    if "kube_nodes" in table or wanted:
        kube_nodes = config_file.settings(
            KubeNodeSettings, table.get("kube_nodes", {}), where, "watch.kube_nodes"
        )
        if overrides.get("kubeconfig"):
            kube_nodes = dataclasses.replace(kube_nodes, kubeconfig=overrides["kubeconfig"])
        if overrides.get("kube_conditions"):
            kube_nodes = dataclasses.replace(kube_nodes, conditions=True)
    files = [
        config_file.settings(FileSettings, entry, where, "watch.files")
        for entry in _array(table, "files", where)
    ]
    files += [FileSettings(path=p) for p in overrides.get("follow", ())]
    if overrides.get("from_start"):
        files = [dataclasses.replace(f, from_start=True) for f in files]
    for entry in files:
        if not entry.path:
            raise ConfigError(f"{where}: watch.files needs a path")
    metrics = overrides.get("metrics")
    if "metrics" in table:
        configured = config_file.settings(MetricsSettings, table["metrics"], where, "watch.metrics")
        metrics = (
            configured
            if metrics is None
            else dataclasses.replace(configured, address=metrics.address, port=metrics.port)
        )
    webhook = None
    if "webhook" in table or overrides.get("webhook"):
        webhook = config_file.settings(
            WebhookConfig, table.get("webhook", {}), where, "watch.webhook"
        )
        if overrides.get("webhook"):
            webhook = dataclasses.replace(webhook, url=overrides["webhook"])
        if not webhook.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.webhook.url must be an http(s) URL")
        if not os.environ.get(webhook.secret_env):
            raise ConfigError(
                f"the webhook signs what it sends: set {webhook.secret_env} to a secret"
            )
    alertmanager = _alertmanager(table, overrides.get("alertmanager", ()), where)
    silences = [_silence(entry, where) for entry in _array(table, "silence", where)]
    silences += overrides.get("silences", [])
    options = ReadOptions(node=settings.node or None)

    nvml = kmsg = kube = None
    if "nvml" in table or overrides.get("nvml"):
        nvml = config_file.settings(NvmlSettings, table.get("nvml", {}), where, "watch.nvml")
    if "kmsg" in table or overrides.get("kmsg"):
        kmsg = config_file.settings(KmsgSettings, table.get("kmsg", {}), where, "watch.kmsg")
    if "kubernetes" in table or overrides.get("kubeconfig"):
        kube = config_file.settings(
            KubeSettings, table.get("kubernetes", {}), where, "watch.kubernetes"
        )
        if overrides.get("kubeconfig"):
            kube = dataclasses.replace(kube, kubeconfig=overrides["kubeconfig"])
    scrapes = [
        config_file.settings(ScrapeSettings, entry, where, "watch.dcgm")
        for entry in _array(table, "dcgm", where)
    ]
    scrapes += [ScrapeSettings(url=url) for url in overrides.get("dcgm", ())]
    for scrape in scrapes:
        if not scrape.url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.dcgm.url must be an http(s) URL")
    node = settings.node or socket.gethostname()

    def sources(saved: dict[str, Any]) -> list[LiveSource]:
        made: list[LiveSource] = []
        for entry in files:
            made.append(FileSource(entry, options, saved.get(f"file:{entry.path}")))
        if kmsg is not None:
            made.append(KmsgSource(kmsg, node, options, saved.get("kmsg")))
        if nvml is not None:
            made.append(NvmlSource(nvml, node))
        made += [ScrapeSource(scrape, options) for scrape in scrapes]
        if kube is not None:
            made.append(KubeSource(kube, options, saved.get("kubernetes")))
        return made

    if not (files or nvml or kmsg or kube or scrapes):
        raise ConfigError(
            f"{where}: nothing to watch: give --follow, --kmsg, --nvml, --dcgm, --kubeconfig"
            " or a [watch] source"
        )
    return WatchPlan(
        settings,
        lifecycle,
        sources,
        detectors,
        metrics,
        webhook,
        alertmanager,
        silences,
        breaker=breaker,
        slurm=slurm,
        kube_nodes=kube_nodes,
    )


def _described(row: SilenceRow) -> str:
    """What a stored silence matches, until when, and why: one line, escaped."""
    fields = {"node": row.node, "gpu": row.gpu, "detector": row.detector}
    matched = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None)
    return one_line(f"{matched} until {when(row.until, 'wall')} UTC ({row.reason}; {row.author})")


def _env_seconds(name: str) -> float:
    try:
        return max(0.0, float(os.environ.get(name) or 0))
    except ValueError:
        return 0.0


def _array(table: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: watch.{key} must be an array of tables ([[watch.{key}]])")
    return value


def _alertmanager(
    table: dict[str, Any], urls: Iterable[str], where: str
) -> AlertmanagerConfig | None:
    """``[watch.alertmanager]`` with the command line's URLs (which replace its ``urls``)."""
    if "alertmanager" not in table and not urls:
        return None
    section = table.get("alertmanager", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: [watch.alertmanager] must be a table")
    section = dict(section)
    listed = section.pop("urls", [])
    if not isinstance(listed, list) or not all(isinstance(u, str) for u in listed):
        raise ConfigError(f"{where}: watch.alertmanager.urls must be a list of URLs")
    config = config_file.settings(AlertmanagerConfig, section, where, "watch.alertmanager")
    config = dataclasses.replace(config, urls=tuple(urls) or tuple(listed))
    if not config.urls:
        raise ConfigError(f"{where}: watch.alertmanager needs urls (or --alertmanager URL)")
    for url in config.urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: watch.alertmanager.urls: {url!r} is not an http(s) URL")
    if config.ends_after_s <= config.resend_s:
        raise ConfigError(
            f"{where}: watch.alertmanager.ends_after_s ({config.ends_after_s:g}) must be more"
            f" than resend_s ({config.resend_s:g}), or open alerts end between posts"
        )
    return config


def _announced_open(lifecycle: Lifecycle, now: float) -> list[Finding]:
    """The open findings an announcement would tell now: not silenced, not flapping."""
    return [
        t.finding for t in lifecycle.open.values() if _why_quiet(lifecycle, t.finding, now) is None
    ]


def _why_quiet(lifecycle: Lifecycle, finding: Finding, now: float) -> str | None:
    """Why an announcement would not tell ``finding`` now: silenced, flapping, or None."""
    if any(s.matches(finding, now) for s in lifecycle.silences):
        return "silenced"
    if len(lifecycle.openings.get(entity(finding), ())) >= lifecycle.config.flap_threshold:
        return "flapping"
    return None


def _silence(entry: dict[str, Any], where: str) -> Silence:
    unknown = set(entry) - {"node", "gpu", "detector", "until"}
    if unknown:
        raise ConfigError(f"{where}: unknown setting watch.silence.{sorted(unknown)[0]}")
    until = entry.get("until")
    if isinstance(until, datetime):
        until = (until if until.tzinfo else until.replace(tzinfo=UTC)).timestamp()
    elif until is not None:
        raise ConfigError(f"{where}: watch.silence.until must be a TOML date-time")
    gpu = entry.get("gpu")
    if gpu is not None and (isinstance(gpu, bool) or not isinstance(gpu, int)):
        raise ConfigError(f"{where}: watch.silence.gpu must be a GPU index")
    return Silence(entry.get("node"), gpu, entry.get("detector"), until)

"""Watch: the live sources, through the same engine, into a store that survives restarts.

Each source (``inputs/live.py``) runs on its own thread and delivers batches with its
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
import logging
import os
import queue
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tenacity

from fleetwatch.actions.actor import Actor, requests
from fleetwatch.actions.kube_api import KubeConfigError
from fleetwatch.actions.kube_nodes import KubeNodes
from fleetwatch.config import ConfigError, build
from fleetwatch.engine import Engine
from fleetwatch.events import EventBatch
from fleetwatch.findings import Finding
from fleetwatch.incidents import Tracker
from fleetwatch.inputs.live import LiveSource
from fleetwatch.lifecycle import (
    LIFECYCLE_KEY,
    Lifecycle,
    Silence,
    Transition,
    entity,
)
from fleetwatch.sinks.alertmanager import SINK as ALERTMANAGER
from fleetwatch.sinks.alertmanager import Alertmanager
from fleetwatch.sinks.console import ConsoleSink
from fleetwatch.sinks.metrics import MAX_FINDING_SERIES, Metrics
from fleetwatch.sinks.one_line import one_line
from fleetwatch.sinks.table import when
from fleetwatch.sinks.transition_log import TransitionLog
from fleetwatch.sinks.webhook import SINK as WEBHOOK
from fleetwatch.sinks.webhook import Webhook
from fleetwatch.store import Commit, SilenceRow, Store, StoreError, StoreFull
from fleetwatch.watch.plan import WatchPlan

log = logging.getLogger(__name__)  # the command sets where it goes (cli: stderr, with time)


RETAIN_EVERY_S = 600.0
# The longest the banner waits for the sources to take their place: a file's first
# look is a stat and a seek; reading what it holds (--from-start) may take longer, and
# then nothing written later can be skipped anyway.
_READY_S = 10.0


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
            address, port = self.plan.metrics.address, self.plan.metrics.port
            try:
                self.metrics_port = self.metrics.serve(address, port)
            except OSError as exc:  # taken, or an address this host has not
                raise OSError(f"metrics on {address}:{port}: {exc.strerror or exc}") from exc
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
        self._wait_ready(stop)
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

    def _wait_ready(self, stop: threading.Event) -> None:
        """Wait (a bounded while) for the sources that take their place before they read
        (``LiveSource``'s ``ready``): "watching" then means that a line written after
        it is read."""
        deadline = time.monotonic() + _READY_S
        for source in self.sources:
            ready = getattr(source, "ready", None)
            while isinstance(ready, threading.Event) and not ready.is_set():
                left = deadline - time.monotonic()
                if left <= 0 or stop.is_set():
                    return
                ready.wait(min(left, 0.1))

    def _banner(self) -> str:
        parts = [f"watching {len(self.sources)} source(s)", f"store {self.plan.settings.store}"]
        if self.metrics_port is not None:
            address = self.plan.metrics.address if self.plan.metrics else "127.0.0.1"
            parts.append(f"metrics on http://{address}:{self.metrics_port}/metrics")
        return "; ".join(parts)

    def _say(self, line: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", line)


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

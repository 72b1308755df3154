"""The Kubernetes node writer: conditions, Events, taints and cordons, off the watch loop.

The watch hands it transitions (``report``) and the actor hands it what the breaker
allowed (``take_out``); both only put a message on a queue, so the watch loop never
waits on the API server. One thread does the writing, node by node; a node's pass
reads the Node once (its uid, and the transition times it already shows), writes its
conditions (``node_conditions``), creates its Events, then cordons and taints
(``kubernetes``), in that order.

A failure that a later try may mend (no answer, 409 Conflict, 429, 5xx) ends the pass
and the node is tried again with exponential backoff (``backoff_s`` doubling up to
``backoff_max_s``, with jitter), while the other nodes go on. Conditions are a state:
they are written until written. An Event or a take-out is given up after ``tries``
passes, counted and logged; a take-out given up is handed back (``failures``) so the
actor records it ``failed``. A failure that another try cannot mend (403, 404, 422) is
counted and logged at once. Every ``heartbeat_s`` a written node's conditions are
written again (``lastHeartbeatTime``), as node-problem-detector does, which also
mends a write lost to a crash.

Node names come from logs: one that is not a Kubernetes node name
(``kube_api.is_node_name``) is counted ``refused`` and never sent; a node the API
server does not know (404) is counted ``failed``, and read again a heartbeat later.
Counts: ``fleetwatch_kubernetes_writes_total{write,outcome}``, ``write`` one of
``conditions``, ``event``, ``take_out``; ``outcome`` one of ``done``, ``retried``,
``failed``, ``refused``.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PromCounter

from fleetwatch.actions import kubernetes
from fleetwatch.actions.kube_api import KubeApiError, NodeApi, is_node_name
from fleetwatch.actions.node_conditions import (
    EVENTS_NAMESPACE,
    NodeConditions,
    NodeMap,
    event,
    node_map,
)
from fleetwatch.findings import Action, Finding
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.one_line import one_line

WRITES: Final = ("conditions", "event", "take_out")
OUTCOMES: Final = ("done", "retried", "failed", "refused")
SAID_REFUSED: Final = 100  # distinct refused node names said in the log, at most
_STOP: Final = object()


@dataclass(frozen=True)
class KubeNodeSettings:
    """``[watch.kube_nodes]``: write node conditions and Events; taint and cordon."""

    kubeconfig: str = ""
    """A kubeconfig file (empty: $KUBECONFIG, else ~/.kube/config)."""
    in_cluster: bool = False
    """Use the pod's service account instead of a kubeconfig."""
    conditions: bool = True
    """Write node conditions and Events (false: only --act kubernetes's taints, cordons)."""
    heartbeat_s: float = 300.0
    """Seconds between writes of a node's unchanged conditions (lastHeartbeatTime)."""
    timeout_s: float = 10.0
    """Longest wait for one request."""
    tries: int = 8
    """Passes at an Event, a taint or a cordon before it is given up."""
    backoff_s: float = 0.5
    """Wait before a node's first retry; it doubles with each failure..."""
    backoff_max_s: float = 60.0
    """...up to this."""


class Api(Protocol):
    """What the writer asks of the API server (``kube_api.NodeApi``)."""

    def get_node(self, name: str) -> dict[str, Any]: ...
    def patch_node_status(self, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def patch_node(self, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class _Event:
    transition: Transition
    wall: float
    tries: int = 0


@dataclass
class _TakeOut:
    finding_id: str
    detector: str
    action: Action
    tries: int = 0


@dataclass
class _Node:
    name: str
    conditions: NodeConditions
    events: deque[_Event] = field(default_factory=deque)
    take_outs: deque[_TakeOut] = field(default_factory=deque)
    dirty: bool = False  # conditions to write
    read: bool = False  # the Node was read: it exists
    uid: str | None = None
    heartbeat_at: float | None = None  # monotonic: write the conditions again then
    due: float | None = None  # monotonic: its next pass
    seq: int = 0  # the heap entry that is current (older ones are skipped)
    failures: int = 0  # passes failed in a row

    def busy(self) -> bool:
        return self.dirty or bool(self.events) or bool(self.take_outs)


class KubeNodes:
    """Writes node conditions, Events, taints and cordons on its own thread."""

    def __init__(
        self,
        settings: KubeNodeSettings,
        instance: str,
        registry: CollectorRegistry | None = None,
        say: Callable[[str, int], None] | None = None,
        api: Api | None = None,
    ) -> None:
        self.settings = settings
        self.instance = instance  # reportingInstance: the host this watch runs on
        self.node_map: NodeMap = node_map()
        self.say = say or (lambda line, level: logging.getLogger(__name__).log(level, "%s", line))
        self.api: Api = api or NodeApi(settings.kubeconfig, settings.in_cluster, settings.timeout_s)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.writes: PromCounter | None = None
        if registry is not None:
            self.writes = PromCounter(
                "fleetwatch_kubernetes_writes",
                "Kubernetes writes (node conditions, Events, taints and cordons) by outcome.",
                ["write", "outcome"],
                registry=registry,
            )
            for write in WRITES:  # absent never stands for 0
                for outcome in OUTCOMES:
                    self.writes.labels(write, outcome)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._failed: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._nodes: dict[str, _Node] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._refused_said: set[str] = set()
        self._jitter = random.Random()  # noqa: S311  # spreads retries; not a secret
        self._thread: threading.Thread | None = None

    # -- from the watch's thread --------------------------------------------------------

    def start(self, open_findings: Iterable[Finding] = ()) -> None:
        """Start writing; the open findings (after a restart) set their conditions first."""
        seeded = [Transition("new", f, False) for f in open_findings if f.node]
        if seeded and self.settings.conditions:
            self._inbox.put(("transitions", seeded, time.time()))
        self._thread = threading.Thread(target=self._run, name="kubernetes-nodes", daemon=True)
        self._thread.start()

    def report(self, transitions: list[Transition]) -> None:
        """Committed transitions: their nodes' conditions and Events (never blocks)."""
        if self.settings.conditions and transitions:
            self._inbox.put(("transitions", list(transitions), time.time()))

    def take_out(self, finding_id: str, node: str, detector: str, action: Action) -> None:
        """Cordon and/or taint ``node`` for ``action`` (never blocks; see ``failures``)."""
        self._inbox.put(("take_out", node, _TakeOut(finding_id, detector, action)))

    def would(self, node: str, detector: str, action: Action) -> str:
        """What ``take_out`` would do, in words."""
        if not is_node_name(node):
            return f"refuse {one_line(node)!r}: not a Kubernetes node name"
        return kubernetes.describe(self.node_map, node, detector, action)

    def failures(self) -> list[tuple[str, str]]:
        """Take-outs given up since the last call: (finding id, why)."""
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self._failed.get_nowait())
        return out

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is queued (one more try each, for up to ``timeout_s``), then stop."""
        if self._thread is None:
            return
        self._inbox.put((_STOP, time.monotonic() + timeout_s))
        self._thread.join(timeout=timeout_s + self.settings.timeout_s + 1.0)
        self._thread = None

    # -- on the writer's thread ---------------------------------------------------------

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            wait = min(1.0, max(0.0, self._heap[0][0] - now)) if self._heap else 1.0
            try:
                message = self._inbox.get(timeout=wait)
            except queue.Empty:
                message = None
            if message is not None and message[0] is _STOP:
                self._finish(message[1])
                return
            if message is not None:
                self._take(message)
            self._run_due(time.monotonic())

    def _take(self, message: tuple[Any, ...]) -> None:
        if message[0] == "transitions":
            _, transitions, wall = message
            for t in transitions:
                self._transition(t, wall)
        else:
            _, name, job = message
            node = self._node(name, "take_out")
            if node is None:
                self._failed.put((job.finding_id, "not a Kubernetes node name"))
                return
            node.take_outs.append(job)
            self._hurry(node)

    def _transition(self, t: Transition, wall: float) -> None:
        name = t.finding.node
        if not name or t.finding.detector not in self.node_map.conditions:
            return  # no node, or nothing fleetwatch shows on a node for it (pod_evicted)
        node = self._node(name, "conditions")
        if node is None:
            return
        if node.conditions.apply(t):
            node.dirty = True
        if t.announce:
            node.events.append(_Event(t, wall))
        if node.busy():
            self._hurry(node)

    def _node(self, name: str, write: str) -> _Node | None:
        node = self._nodes.get(name)
        if node is not None:
            return node
        if not is_node_name(name):
            self._count(write, "refused")
            if len(self._refused_said) < SAID_REFUSED and name not in self._refused_said:
                self._refused_said.add(name)
                self.say(
                    f"kubernetes: not writing to node {one_line(name)!r}: "
                    "not a Kubernetes node name",
                    logging.WARNING,
                )
            return None
        node = self._nodes[name] = _Node(name, NodeConditions(self.node_map))
        return node

    def _hurry(self, node: _Node) -> None:
        """Pass over ``node`` now, unless it is waiting out a backoff."""
        if node.failures == 0:
            self._schedule(node, time.monotonic())

    def _schedule(self, node: _Node, due: float) -> None:
        if node.due is not None and node.due <= due:
            return
        node.due = due
        node.seq += 1
        heapq.heappush(self._heap, (due, node.seq, node.name))

    def _run_due(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, seq, name = heapq.heappop(self._heap)
            node = self._nodes[name]
            if seq != node.seq:
                continue  # superseded by a sooner pass
            node.due = None
            try:
                self._pass(node, now)
            except Exception as exc:  # a bug here must not end every later write
                self.say(f"kubernetes: node {name}: {type(exc).__name__}: {exc}", logging.ERROR)
                self._retry_later(node, now, KubeApiError(0, type(exc).__name__, str(exc)))

    def _finish(self, deadline: float) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                message = self._inbox.get_nowait()
                if message[0] is not _STOP:
                    self._take(message)
        for node in list(self._nodes.values()):
            if time.monotonic() >= deadline:
                break
            if node.busy():
                node.failures = 0  # one more try each, backoff or not
                self._pass(node, time.monotonic())

    def _pass(self, node: _Node, now: float) -> None:
        """Read, write conditions, Events, take-outs; on a retryable failure, back off."""
        if node.heartbeat_at is not None and now >= node.heartbeat_at:
            node.dirty = self.settings.conditions
        try:
            if not node.read and not self._read(node):
                return  # read again when there is something to write
            self._write_conditions(node)
            self._post_events(node)
            self._take_outs(node)
        except KubeApiError as exc:
            self._retry_later(node, now, exc)
            return
        node.failures = 0
        if node.heartbeat_at is not None:
            self._schedule(node, node.heartbeat_at)

    def _read(self, node: _Node) -> bool:
        """Read the Node: False when it does not exist (its writes are dropped)."""
        try:
            found = self.api.get_node(node.name)
        except KubeApiError as exc:
            if exc.retryable:
                raise
            if exc.status != 404:  # forbidden, say: write without its uid
                self.say(f"kubernetes: cannot read node {node.name}: {exc}", logging.WARNING)
                node.read = True
                return True
            self._drop_all(node, f"no node {node.name} in the cluster")
            return False
        node.read = True
        node.uid = (found.get("metadata") or {}).get("uid")
        node.conditions.adopt((found.get("status") or {}).get("conditions") or [])
        return True

    def _write_conditions(self, node: _Node) -> None:
        if not (node.dirty and self.settings.conditions):
            return
        patch = {"status": {"conditions": node.conditions.conditions(time.time())}}
        try:
            self.api.patch_node_status(node.name, patch)
        except KubeApiError as exc:
            if exc.retryable:
                raise
            self._count("conditions", "failed")
            self.say(f"kubernetes: node {node.name}'s conditions: {exc}", logging.ERROR)
        else:
            self._count("conditions", "done")
        node.dirty = False
        node.heartbeat_at = time.monotonic() + self.settings.heartbeat_s

    def _post_events(self, node: _Node) -> None:
        while node.events:
            job = node.events[0]
            body = event(self.node_map, job.transition, node.uid, self.instance, job.wall)
            if body is not None:
                try:
                    self.api.create_event(EVENTS_NAMESPACE, body)
                    self._count("event", "done")
                except KubeApiError as exc:
                    if exc.status == 409 and exc.reason == "AlreadyExists":
                        self._count("event", "done")  # an earlier try got there
                    elif exc.retryable:
                        raise
                    else:
                        self._count("event", "failed")
                        self.say(f"kubernetes: an Event on {node.name}: {exc}", logging.ERROR)
            node.events.popleft()

    def _take_outs(self, node: _Node) -> None:
        while node.take_outs:
            job = node.take_outs[0]
            try:
                current = self.api.get_node(node.name)  # fresh: its resourceVersion and taints
                patch = kubernetes.take_out_patch(self.node_map, current, job.detector, job.action)
                if patch is not None:
                    self.api.patch_node(node.name, patch)
            except KubeApiError as exc:
                if exc.retryable:
                    raise
                node.take_outs.popleft()
                self._give_up(job, f"{exc}")
                continue
            node.take_outs.popleft()
            self._count("take_out", "done")
            done = kubernetes.describe(self.node_map, node.name, job.detector, job.action)
            already = "" if patch is not None else " (it already was)"
            self.say(f"kubernetes: {done}{already} ({job.finding_id})", logging.WARNING)

    def _retry_later(self, node: _Node, now: float, exc: KubeApiError) -> None:
        node.failures += 1
        if node.failures == 1:
            self.say(f"kubernetes: node {node.name}: {exc}; trying again", logging.WARNING)
        if node.dirty:
            self._count("conditions", "retried")
        for job in list(node.events):
            job.tries += 1
            self._count("event", "retried")
            if job.tries >= self.settings.tries:
                node.events.remove(job)
                self._count("event", "failed")
                self.say(f"kubernetes: gave up an Event on {node.name}: {exc}", logging.ERROR)
        for take in list(node.take_outs):
            take.tries += 1
            self._count("take_out", "retried")
            if take.tries >= self.settings.tries:
                node.take_outs.remove(take)
                self._give_up(take, f"gave up after {take.tries} tries: {exc}")
        wait = min(self.settings.backoff_max_s, self.settings.backoff_s * 2 ** (node.failures - 1))
        self._schedule(node, now + wait * self._jitter.uniform(0.5, 1.0))

    def _drop_all(self, node: _Node, why: str) -> None:
        for _ in node.events:
            self._count("event", "failed")
        if node.dirty:
            self._count("conditions", "failed")
        node.events.clear()
        node.dirty = False
        while node.take_outs:
            self._give_up(node.take_outs.popleft(), why)
        self.say(f"kubernetes: {why}: nothing written", logging.WARNING)

    def _give_up(self, job: _TakeOut, why: str) -> None:
        self._count("take_out", "failed")
        self._failed.put((job.finding_id, why))
        self.say(f"kubernetes: could not take out for {job.finding_id}: {why}", logging.ERROR)

    def _count(self, write: str, outcome: str) -> None:
        self.counts[(write, outcome)] += 1
        if self.writes is not None:
            self.writes.labels(write, outcome).inc()

"""The actor: takes nodes out of service for the watch, through the breaker.

The watch commits an action request (``Store`` table ``actions``, outcome ``pending``)
in the same transaction as the transition that asked for it: a new or escalated finding
whose action takes its node out of service (``Action.takes_out_of_service``), not
silenced. After the commit, ``Actor.run`` decides each pending request:

=============  ==========================================================================
outcome        what happened
=============  ==========================================================================
``acted``      the breaker allowed it and the tool did it (``--act slurm``), or was
               handed it (``--act kubernetes``: the writer's thread does it, with retries)
``failed``     allowed, but the tool failed (the detail says why); it counts as acted
``held``       the breaker held it back, or Slurm could not be asked (``--act slurm``:
               the detail starts ``Slurm could not be asked``); a ``breaker_open``
               finding names it
``would_act``  dry run (the default): logged as what ``--act`` would do
``would_hold`` dry run: logged as what the breaker would hold back
``refused``    the node name is not a host name (see ``hostnames``); with ``--act slurm``
               or its dry run not a Slurm node name (``ALL``), or with ``--act slurm``
               not exactly one node Slurm knows (``slurm.Slurm.check``); with ``--act
               kubernetes`` not a Kubernetes node name: nothing ran
=============  ==========================================================================

With ``--act slurm`` the breaker counts the fleet, not only this store: each run that
has requests to decide first asks Slurm (``slurm.Slurm.fleet``) for its nodes and the
drains fleetwatch made in the window, wherever it ran, and counts those with this
store's (a node once), against the limit of Slurm's node count. So per-node watches and
``slurm-health`` runs share one limit, with Slurm as the ledger. When Slurm cannot be
asked (sinfo fails or times out), it fails closed: every drain of that run is held,
never made blind. What remains is a race: two nodes that read the ledger in the same
second, before either drain is set, both see room for one more; the limit can be passed
by as many nodes as decide at once. A dry run asks Slurm nothing and counts its store.

``--act kubernetes`` cordons and/or taints the node (``kubernetes``) through the node
writer (``kube_nodes``); a take-out it gives up comes back through ``settle`` and is
recorded ``failed``. A dry run logs what Slurm would run and, when a Kubernetes API is
configured, what Kubernetes would do.

A request is decided once (its finding id is the key): a restart neither repeats it
nor forgets it. The outcome is committed before the tool runs, so a crash in between
loses that one drain rather than repeating it. Nothing here resumes a node.

While the breaker holds requests back, one critical finding ``breaker_open`` (detector
``breaker``, action ``investigate``) names them; it goes through the lifecycle like any
other, so it is announced once and resolves when nothing more was held back for
``resolve_after_s``. A dry run reports it too, its summary starting ``breaker_open
(dry run): would hold back``, so that trying a dry run shows where the breaker trips.
Metrics: ``fleetwatch_actions_total{outcome}`` and ``fleetwatch_breaker_open`` (1 while
the breaker holds actions back, or in a dry run would).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client import Counter as PromCounter

from fleetwatch.actions import BREAKER, TOOLS
from fleetwatch.actions.breaker import Breaker, BreakerConfig
from fleetwatch.actions.kube_api import is_node_name
from fleetwatch.actions.kube_nodes import KubeNodes
from fleetwatch.actions.slurm import (
    Fleet,
    NotASlurmNode,
    Slurm,
    SlurmConfig,
    SlurmError,
    drain_argv,
    reason,
)
from fleetwatch.findings import Action, Finding, Severity, finding_id
from fleetwatch.hostnames import SLURM_EVERY_NODE, is_host_name, is_slurm_node_name
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.one_line import one_line
from fleetwatch.store import ActionRow, Store

OUTCOMES: Final = ("acted", "failed", "held", "would_act", "would_hold", "refused")
_COUNTED: Final = {True: ("acted", "failed"), False: ("would_act",)}  # by acting or not
SHOWN_HELD: Final = 20  # evidence lines naming held-back requests
UNASKED: Final = "Slurm could not be asked"
"""How the detail of a drain held back because Slurm did not answer starts."""
_EVERY_NODE: Final = " (Slurm reads ALL, in any case, as every node)"


def requests(transitions: Iterable[Transition]) -> list[dict[str, str | None]]:
    """The action requests of ``transitions`` (see the module docstring)."""
    out: list[dict[str, str | None]] = []
    for t in transitions:
        f = t.finding
        if t.kind == "resolved" or t.why_quiet == "silenced" or f.detector == BREAKER:
            continue
        if f.node and f.action.takes_out_of_service:
            gpu = f.pci or (None if f.gpu is None else str(f.gpu))
            out.append(
                {
                    "finding_id": f.id,
                    "node": f.node,
                    "detector": f.detector,
                    "action": str(f.action),
                    "gpu": gpu,
                    "reason": reason(f),
                }
            )
    return out


class Actor:
    """Decides and runs the store's pending action requests."""

    def __init__(
        self,
        store: Store,
        breaker: BreakerConfig,
        act: str = "",
        slurm: SlurmConfig | None = None,
        registry: CollectorRegistry | None = None,
        say: Callable[[str, int], None] | None = None,
        kube: KubeNodes | None = None,
    ) -> None:
        if act and act not in TOOLS:
            raise ValueError(f"unknown --act {act!r} (one of {', '.join(TOOLS)})")
        if act == "kubernetes" and kube is None:
            raise ValueError("--act kubernetes needs a Kubernetes API (a kube_nodes writer)")
        self.store = store
        self.breaker = Breaker(breaker)
        self.act = act
        self.acting = bool(act)
        self.kube = kube
        self.slurm = Slurm(slurm or SlurmConfig())
        self.say = say or (lambda line, level: logging.getLogger(__name__).log(level, "%s", line))
        self.nodes = store.nodes()  # every node seen, as committed
        self.unsaved: set[str] = set()  # seen since the last commit
        self.opened_at: float | None = None  # first_ts of the open breaker_open finding
        self.fleet: Fleet | None = None  # what Slurm said of the fleet in this run
        self.unasked = ""  # why Slurm could not be asked in this run: every drain held
        self.outcomes: PromCounter | None = None
        self.open_gauge: Gauge | None = None
        if registry is not None:
            self.outcomes = PromCounter(
                "fleetwatch_actions",
                "Action requests decided, by outcome (held: by the breaker).",
                ["outcome"],
                registry=registry,
            )
            for outcome in OUTCOMES:  # absent never stands for 0
                self.outcomes.labels(outcome)
            self.open_gauge = Gauge(
                "fleetwatch_breaker_open",
                "1 while the blast-radius breaker holds actions back (a dry run: would hold).",
                registry=registry,
            )

    def saw(self, nodes: Iterable[str]) -> None:
        """Nodes read in events: the breaker's percentage is of these."""
        for node in nodes:
            if node not in self.nodes:
                self.nodes.add(node)
                self.unsaved.add(node)

    def resume_open(self, open_findings: Iterable[Finding]) -> None:
        """After a restart: continue the ``breaker_open`` finding the lifecycle holds open."""
        for f in open_findings:
            if f.detector == BREAKER and f.first_ts is not None:
                self.opened_at = f.first_ts
                if self.open_gauge is not None:
                    self.open_gauge.set(1)

    def settle(self, now: float) -> None:
        """Record ``failed`` the take-outs the Kubernetes writer gave up."""
        for fid, why in self.kube.failures() if self.kube is not None else ():
            self._decide(fid, "failed", why, now)

    def run(self, now: float, open_ids: Container[str]) -> list[Finding]:
        """Decide every pending request; return the ``breaker_open`` finding, if any."""
        self.settle(now)
        if self.opened_at is not None and self._breaker_id() not in open_ids:
            self.opened_at = None  # the lifecycle resolved it: the next hold opens a new one
            if self.open_gauge is not None:
                self.open_gauge.set(0)
        pending = self.store.actions("pending")
        if not pending:
            return []
        self.nodes |= self.store.nodes()  # as committed with the requests, by any writer
        since = now - self.breaker.config.window_s
        acted = {
            row.node
            for outcome in _COUNTED[self.acting]
            for row in self.store.actions(outcome, since=since)
        }
        self.fleet, self.unasked = None, ""
        if self.act == "slurm":  # the drains other nodes' fleetwatch made count too
            try:
                self.fleet = self.slurm.fleet(since)
            except SlurmError as exc:
                self.unasked = f"{UNASKED} for the fleet's drains ({exc}): nothing drained blind"
            else:
                acted |= self.fleet.drained
        held = 0
        for row in pending:
            if self._decide_request(row, acted, now) in ("held", "would_hold"):
                held += 1
        if not held:
            return []
        if self.opened_at is None:
            self.opened_at = now
        if self.open_gauge is not None:
            self.open_gauge.set(1)
        return [self._breaker_finding(now)]

    def _seen(self) -> int:
        """The nodes the breaker's percentage is of: Slurm's, when it was asked."""
        return len(self.fleet.nodes) if self.fleet is not None else len(self.nodes)

    def _decide_request(self, row: ActionRow, acted: set[str], now: float) -> str:
        """Refuse, act on or hold back one pending request; its outcome."""
        why = row.detail or f"fleetwatch {row.finding_id}"  # a pending row's detail: why
        refusal = self._refusal(row.node)
        if refusal:
            self._decide(row.finding_id, "refused", f"node name is not {refusal}", now)
            self.say(f"not acting on '{one_line(row.node)}': not {refusal}", logging.WARNING)
            return "refused"
        if self.unasked:
            return self._hold(row, self.unasked, now)
        seen = self._seen()
        if not self.breaker.allows(row.node, acted, seen):
            counted = "drained by fleetwatch" if self.fleet is not None else "acted on"
            where = "in Slurm" if self.fleet is not None else "seen"
            detail = (
                f"{len(acted)} of {self.breaker.limit(seen)} node(s) {counted} in the last "
                f"{self.breaker.config.window_s:g} s ({seen} {where})"
            )
            return self._hold(row, detail, now)
        if self.act == "slurm":
            try:
                self.slurm.check(row.node)  # exactly one node Slurm knows, or nothing runs
            except NotASlurmNode as exc:
                self._decide(row.finding_id, "refused", str(exc), now)
                self.say(f"not draining '{one_line(row.node)}': {exc}", logging.WARNING)
                return "refused"
            except SlurmError as exc:
                self.unasked = f"{UNASKED} about {row.node} ({exc}): nothing drained blind"
                return self._hold(row, self.unasked, now)
        acted.add(row.node)
        self._act(row, why, now)
        return "acted"

    def _hold(self, row: ActionRow, detail: str, now: float) -> str:
        outcome = "held" if self.acting else "would_hold"
        self._decide(row.finding_id, outcome, detail, now)
        verb = "held back" if self.acting else "dry run: would hold back"
        self.say(
            f"breaker: {verb} {row.action} of {row.node} ({row.finding_id}): {detail}",
            logging.WARNING,
        )
        return outcome

    def _refusal(self, node: str) -> str:
        """What ``node`` is not and must be for the tool ("" when it is fit)."""
        if not is_host_name(node):
            return "a host name"
        if self.act == "kubernetes":
            return "" if is_node_name(node) else "a Kubernetes node name"
        if self.kube is None and not is_slurm_node_name(node):  # --act slurm, or its dry run
            return f"a Slurm node name{_EVERY_NODE if node.lower() == SLURM_EVERY_NODE else ''}"
        return ""

    def _act(self, row: ActionRow, why: str, now: float) -> None:
        fid, node = row.finding_id, row.node
        if not self.acting:
            detail = "slurm: not a Slurm node name, would refuse"
            if is_slurm_node_name(node):
                argv = drain_argv(self.slurm.config, node, why)
                detail = " ".join(argv[1:])
                self.say(f"dry run: would run {argv!r} (--act slurm does)", logging.INFO)
            if self.kube is not None:
                plan = self.kube.would(node, row.detector, Action(row.action))
                detail += f"; kubernetes: {plan}"
                self.say(f"dry run: would {plan} (--act kubernetes does)", logging.INFO)
            self._decide(fid, "would_act", detail, now)
            return
        self._decide(fid, "acted", why, now)  # first: a crash after it never repeats the drain
        if self.act == "kubernetes":
            assert self.kube is not None  # checked in __init__
            self.kube.take_out(fid, node, row.detector, Action(row.action))
            return
        try:
            self.slurm.drain(node, why)
        except (SlurmError, ValueError) as exc:
            self._decide(fid, "failed", str(exc), now)
            self.say(f"could not drain {node} ({fid}): {exc}", logging.ERROR)
            return
        self.say(f"drained {node}: {why}", logging.WARNING)

    def _decide(self, fid: str, outcome: str, detail: str, now: float) -> None:
        self.store.decide(fid, outcome, detail, now)
        if self.outcomes is not None:
            self.outcomes.labels(outcome).inc()

    def _breaker_id(self) -> str:
        return finding_id(BREAKER, "breaker_open", self.opened_at)

    def _breaker_finding(self, now: float) -> Finding:
        assert self.opened_at is not None
        held = self.store.actions("held" if self.acting else "would_hold", since=self.opened_at)
        nodes = sorted({row.node for row in held})
        shown = ", ".join(nodes[:5]) + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
        window = self.breaker.config.window_s
        verb = "held back" if self.acting else "would hold back"
        summary = (
            f"breaker_open{'' if self.acting else ' (dry run)'}: {verb} {len(held)} action(s)"
            f" on {len(nodes)} node(s) ({shown}):"
            f" at most {self.breaker.limit(self._seen())} node(s) per {window:g} s"
            f" of {self._seen()} {'in Slurm' if self.fleet is not None else 'seen'}"
        )
        if self.unasked:
            summary += f"; {self.unasked}"
        evidence = tuple(
            f"{verb}: {row.action} of {row.node} for {row.finding_id} ({row.detector})"
            for row in held[:SHOWN_HELD]
        )
        return Finding(
            id=self._breaker_id(),
            detector=BREAKER,
            severity=Severity.CRITICAL,
            action=Action.INVESTIGATE,
            summary=one_line(summary),
            first_ts=self.opened_at,
            last_ts=now,
            count=len(held),
            clock="wall",
            code=None,
            evidence=evidence,
        )

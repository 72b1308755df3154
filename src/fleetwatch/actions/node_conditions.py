"""Node conditions and Events from findings, the node-problem-detector way.

Each detector that finds node problems owns one NodeCondition type on the node
(``catalog/node_conditions.toml``: ``xid_correlation`` -> ``GPUXidFault``, …). A
condition is True while a finding of its detector is open on the node whose action
says so (``condition = true``: a hardware or driver problem), with the reason of the
finding (``Xid79``, ``GPUResetNeeded``) and a message that starts with the finding's
id; it is False with the healthy reason (``NoGPUXidFault``) when none is.
Every condition fleetwatch owns is written on each patch, so a node shows them all,
True or False, as node-problem-detector's do; ``lastTransitionTime`` moves only when
the status changes, ``lastHeartbeatTime`` on every write.

An Event (``involvedObject`` the Node, in namespace ``default`` as the kubelet's and
node-problem-detector's node Events are) tells each announced transition of a finding
on the node: opened or escalated (``Warning``; ``Normal`` for an info finding),
resolved (``Normal``, reason ``<Type>Resolved``). A finding whose action sets no
condition (an application's fault) gets the Events only, like node-problem-detector's
"temporary" problems. An Event's name is derived from the finding and the
transition, so creating it twice is refused by the API server (409 AlreadyExists)
rather than told twice.

This module only computes; ``kube_nodes`` sends.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from fleetwatch.catalog import CatalogError
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.lifecycle import Transition
from fleetwatch.sinks.one_line import one_line

FILE: Final = "node_conditions.toml"
COMPONENT: Final = "fleetwatch"  # source.component and reportingComponent of its Events
EVENTS_NAMESPACE: Final = "default"  # where Events about Nodes go (kubelet, NPD)
MAX_MESSAGE: Final = 1024  # events.k8s.io caps a note at 1 kB; conditions kept alike
SHOWN_IDS: Final = 5  # finding ids a condition's message names
_CAMEL: Final = re.compile(r"[A-Z][A-Za-z0-9]*")
_TEMPLATES: Final = ("{action}", "Xid{code}")
_STEPS: Final = frozenset({"cordon", "taint"})


@dataclass(frozen=True)
class ConditionRule:
    """``[condition.DETECTOR]``: the condition a detector's findings set."""

    type: str
    healthy: str
    reason: str  # "{action}" or "Xid{code}"


@dataclass(frozen=True)
class ActionRule:
    """``[action.ACTION]``: what an action word means on a node."""

    reason: str
    condition: bool
    take_out: tuple[str, ...]


@dataclass(frozen=True)
class NodeMap:
    """The whole of ``node_conditions.toml``."""

    conditions: Mapping[str, ConditionRule]  # by detector
    actions: Mapping[Action, ActionRule]
    taint_key: str
    taint_effect: str

    def reason(self, finding: Finding) -> str:
        """The CamelCase reason a finding gives its condition and its Events."""
        rule = self.conditions.get(finding.detector)
        if rule is not None and rule.reason == "Xid{code}" and finding.code is not None:
            return f"Xid{finding.code}"
        return self.actions[finding.action].reason


@cache
def node_map() -> NodeMap:
    """``catalog/node_conditions.toml``, checked (``CatalogError`` names what is wrong)."""
    text = resources.files("fleetwatch.catalog").joinpath(FILE).read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog/{FILE}: {exc}") from exc
    conditions = {}
    for detector, entry in _table(data, "condition").items():
        where = f"catalog/{FILE} [condition.{detector}]"
        rule = ConditionRule(
            _word(entry, "type", where), _word(entry, "healthy", where), entry.get("reason", "")
        )
        if rule.reason not in _TEMPLATES:
            raise CatalogError(f"{where}: `reason` must be one of {', '.join(_TEMPLATES)}")
        conditions[detector] = rule
    types = [rule.type for rule in conditions.values()]
    if len(set(types)) != len(types):
        raise CatalogError(f"catalog/{FILE}: two detectors own one condition type")
    actions = {}
    for word, entry in _table(data, "action").items():
        where = f"catalog/{FILE} [action.{word}]"
        try:
            action = Action(word)
        except ValueError:
            raise CatalogError(f"{where}: not an action word") from None
        steps = entry.get("take_out")
        if not isinstance(steps, list) or not set(steps) <= _STEPS:
            raise CatalogError(f"{where}: `take_out` must be a list of {sorted(_STEPS)}")
        if not isinstance(entry.get("condition"), bool):
            raise CatalogError(f"{where}: `condition` must be true or false")
        reason = _word(entry, "reason", where)
        actions[action] = ActionRule(reason, entry["condition"], tuple(steps))
    missing = [str(a) for a in Action if a not in actions]
    if missing:
        raise CatalogError(f"catalog/{FILE}: no [action.{missing[0]}]")
    taint = _table(data, "taint")
    key, effect = taint.get("key"), taint.get("effect")
    if not isinstance(key, str) or effect not in ("NoSchedule", "PreferNoSchedule"):
        raise CatalogError(f"catalog/{FILE}: [taint] needs a key and a NoSchedule effect")
    return NodeMap(MappingProxyType(conditions), MappingProxyType(actions), key, effect)


def _table(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    if not isinstance(value, dict):
        raise CatalogError(f"catalog/{FILE}: [{name}] is missing")
    return value


def _word(entry: dict[str, Any], key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or _CAMEL.fullmatch(value) is None:
        raise CatalogError(f"{where}: `{key}` must be a CamelCase word, got {value!r}")
    return value


def timestamp(wall: float) -> str:
    """RFC 3339 in UTC, to the second, as the API server writes times."""
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def message(finding: Finding) -> str:
    """``fleetwatch <id>: <summary>``, one line, at most ``MAX_MESSAGE`` characters."""
    return one_line(f"fleetwatch {finding.id}: {finding.summary}")[:MAX_MESSAGE]


@dataclass
class NodeConditions:
    """The conditions fleetwatch owns on one node, from the findings open on it."""

    node_map: NodeMap
    open: dict[str, dict[str, Finding]] = field(default_factory=dict)  # type -> id -> finding
    since: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (status, time)

    def apply(self, transition: Transition) -> bool:
        """Take one transition of a finding on this node; True if a condition changed."""
        finding = transition.finding
        rule = self.node_map.conditions.get(finding.detector)
        if rule is None:
            return False
        findings = self.open.setdefault(rule.type, {})
        before = self._shown(rule.type)
        if transition.kind == "resolved" or not self.node_map.actions[finding.action].condition:
            findings.pop(finding.id, None)
        else:
            findings[finding.id] = finding
        return self._shown(rule.type) != before

    def adopt(self, conditions: Iterable[dict[str, Any]]) -> None:
        """Keep the transition times the node already shows for the same status."""
        mine = {rule.type for rule in self.node_map.conditions.values()}
        for condition in conditions:
            kind, status = condition.get("type"), condition.get("status")
            when = condition.get("lastTransitionTime")
            if kind in mine and kind not in self.since and isinstance(when, str):
                self.since[kind] = (str(status), when)

    def conditions(self, now: float) -> list[dict[str, str]]:
        """Every condition fleetwatch owns, as ``status.conditions`` entries."""
        stamp = timestamp(now)
        out = []
        for detector, rule in self.node_map.conditions.items():
            findings = self.open.get(rule.type) or {}
            status = "True" if findings else "False"
            seen = self.since.get(rule.type)
            if seen is None or seen[0] != status:
                self.since[rule.type] = seen = (status, stamp)
            if findings:
                ordered = sorted(findings.values(), key=_most_serious)
                reason, text = self.node_map.reason(ordered[0]), message(ordered[0])
                if len(ordered) > 1:
                    ids = ", ".join(f.id for f in ordered[1:SHOWN_IDS])
                    more = len(ordered) - SHOWN_IDS
                    text += f" (and {ids}{f' and {more} more' if more > 0 else ''})"
            else:
                reason, text = rule.healthy, f"fleetwatch: no open {detector} finding"
            out.append(
                {
                    "type": rule.type,
                    "status": status,
                    "reason": reason,
                    "message": text[:MAX_MESSAGE],
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": seen[1],
                }
            )
        return out

    def _shown(self, kind: str) -> tuple[tuple[str, str, str], ...]:
        findings = self.open.get(kind) or {}
        return tuple(sorted((f.id, str(f.severity), str(f.action)) for f in findings.values()))


def _most_serious(finding: Finding) -> tuple[int, int, str]:
    return (-finding.severity, -finding.action.strength, finding.id)


def event(
    node_map: NodeMap, transition: Transition, uid: str | None, instance: str, now: float
) -> dict[str, Any] | None:
    """The Event telling ``transition`` on its finding's node (None: none to tell)."""
    finding = transition.finding
    rule = node_map.conditions.get(finding.detector)
    if rule is None or not finding.node or not transition.announce:
        return None
    if transition.kind == "resolved":
        kind, reason = "Normal", f"{rule.type}Resolved"
        text = f"fleetwatch {finding.id} resolved: {finding.summary}"
    else:
        kind = "Warning" if finding.severity >= Severity.WARNING else "Normal"
        reason = node_map.reason(finding)
        text = f"fleetwatch {finding.id} {transition.kind}: {finding.summary}"
    involved = {"apiVersion": "v1", "kind": "Node", "name": finding.node}
    if uid:
        involved["uid"] = uid
    stamp = timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": event_name(finding, transition.kind),
            "namespace": EVENTS_NAMESPACE,
        },
        "involvedObject": involved,
        "reason": reason,
        "message": one_line(text)[:MAX_MESSAGE],
        "type": kind,
        "source": {"component": COMPONENT, "host": finding.node},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def event_name(finding: Finding, kind: str) -> str:
    """``<node>.<16 hex>``: one name per finding, transition, severity and action."""
    assert finding.node is not None
    key = f"{finding.id}|{kind}|{finding.severity}|{finding.action}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{finding.node[:200].rstrip('-.')}.{digest}"

"""Incidents: findings linked cause -> effect, and the one thing to do about them.

Detectors each see their own pattern: ``xid_correlation`` an Xid 79, ``nccl_hang`` a
job whose ranks timed out, ``pod_evicted`` pods pushed off a node. When the GPU that
fell off the bus ran one of the job's ranks, the three are one story, and the job's
own advice (restart it) is wrong: restarted onto that node it hangs again. ``link``
groups findings into **incidents** by the rules of ``catalog/incident_rules.toml``
(read that file's header for the rule language):

* ``hardware_on_gpu``: one GPU's hardware finding (an Xid of a hardware, memory,
  NVLink, GSP, thermal or driver cause, HBM ECC, PCIe AER, NVLink, GSP, thermal) is
  the root; that GPU's other hardware findings, NCCL hangs of jobs that had a rank on
  its node, and evictions from the node within a window are its effects. The action
  is the strongest of its hardware findings', and at least ``drain_node`` when a job
  hung.
* ``hardware_on_node``, tried first: the same, with hardware findings on two or more
  GPUs of the node within 5 minutes. Several GPUs falling off the bus within seconds
  is the node's fault (power supply, baseboard, PCIe switch, cooling, fabric), not one
  GPU's that the others followed: the summary says "2 GPUs of gpu-node-5 failed
  within 4 s", each GPU's own follow-on findings (a fatal AER on the Xid 79's
  address) after its first fault, and the action is the node's, at least
  ``drain_node``. The root is the first GPU's finding, so the incident keeps its id
  as it grows from one GPU's into the node's.

  Neither yields ``restart_job``: a job restarted onto the node hangs again.
* ``application_xid``: an application Xid (13, 31, 43) of a job is the root; the same
  job's other application Xids and its NCCL hangs are effects; the action is
  ``fix_application``.

A finding belongs to one incident at most: the rules are tried in order, and an
effect that links to several roots goes to the strongest link, then the earliest
root. A finding that can be a rule's root forms that rule's incident even with no
effects; every other finding that nothing links stands alone as a ``single``
incident, so the incidents of a set of findings hold each finding exactly once.

An incident's id is stable: ``inc-`` and a hash of its root finding's id. Its
summary is one paragraph in plain words; names from input (nodes, jobs) are escaped
as ``one_line`` does, so it holds no control character and one line.

``link`` is a pure function of the findings (no I/O, no clock): replay runs it on its
findings, ``fleetwatch findings`` on a store's or a fleet's, watch on its open ones
(``Tracker``). docs/incidents.md documents the JSON form.
"""

from __future__ import annotations

import hashlib
import math
import string
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from fleetwatch.catalog import XID_CAUSES, CatalogError, xid, xid_catalog
from fleetwatch.detectors import REGISTRY
from fleetwatch.findings import Action, Finding, Severity, strongest
from fleetwatch.sinks.one_line import one_line

RULES_FILE: Final = "incident_rules.toml"
HARDWARE: Final = "hardware"
APPLICATION: Final = "application"
UNKNOWN: Final = "unknown"
SINGLE: Final = "single"
"""The rule name of a finding that nothing links and that is no rule's root."""
LINKS: Final = ("gpu", "node", "job")
_NEVER_FOR_HARDWARE: Final = frozenset({Action.RESTART_JOB, Action.FIX_APPLICATION})
_ADVICE_BLANKS: Final = frozenset({"action", "node", "job"})
_WORD_BLANKS: Final = frozenset({"where", "xid", "xid_name", "sxid", "job", "rank"})
_NODES_SHOWN: Final = 3


@dataclass(frozen=True)
class Effect:
    """Which findings follow from a root, and how they are linked to it."""

    detectors: frozenset[str]
    link: str  # one of LINKS
    before_s: float
    after_s: float
    xid_causes: frozenset[str] | None = None  # for xid_correlation findings
    action_at_least: Action | None = None


@dataclass(frozen=True)
class Rule:
    """One way findings group: what can be the root, and what follows from it."""

    name: str
    root_cause: str  # HARDWARE or APPLICATION
    root_detectors: tuple[str, ...]  # in the order that breaks a tie between roots
    root_min_severity: Severity
    root_xid_causes: frozenset[str] | None
    effects: tuple[Effect, ...]
    advice: str
    advice_without_job: str
    min_gpus: int = 1  # an incident naming fewer GPUs of its node is left to later rules
    action_at_least: Action | None = None


@dataclass(frozen=True)
class Rules:
    """The rules in the order they are tried, and how findings are named."""

    rules: tuple[Rule, ...]
    words: Mapping[str, tuple[str, ...]]
    sxid_codes_from: int


@dataclass(frozen=True)
class Incident:
    """Findings linked cause -> effect (see the module docstring)."""

    incident_id: str
    rule: str
    root_cause: str  # HARDWARE, APPLICATION or UNKNOWN (a single finding)
    root: Finding
    effects: tuple[Finding, ...]  # in time order
    action: Action
    severity: Severity
    nodes: tuple[str, ...]
    gpus: tuple[str, ...]  # "node/pci" (or "node/index")
    first_ts: float | None
    last_ts: float | None
    clock: str | None
    summary: str
    status: str  # "open" while any of its findings is open, else "resolved"

    @property
    def findings(self) -> tuple[Finding, ...]:
        """The root, then its effects."""
        return (self.root, *self.effects)

    def to_json(self) -> dict[str, Any]:
        """The incident as ``--output incidents`` prints it (docs/incidents.md)."""
        return {
            "incident_id": self.incident_id,
            "rule": self.rule,
            "root_cause": self.root_cause,
            "root": self.root.id,
            "effects": [f.id for f in self.effects],
            "finding_ids": [f.id for f in self.findings],
            "action": str(self.action),
            "severity": str(self.severity),
            "nodes": list(self.nodes),
            "gpus": list(self.gpus),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "clock": self.clock,
            "summary": self.summary,
            "status": self.status,
            "detectors": [f.detector for f in self.findings],
        }


def incident_id(root: Finding) -> str:
    """``inc-`` and 16 hex digits of a hash of the root finding's id: stable."""
    return "inc-" + hashlib.sha256(root.id.encode()).hexdigest()[:16]


def incident_order(incident: Incident) -> tuple[int, float, str]:
    """How incidents are listed: most severe first, then oldest, then by id."""
    first = incident.first_ts if incident.first_ts is not None else 0.0
    return (-incident.severity, first, incident.incident_id)


# -- the rules file ------------------------------------------------------------------


@cache
def shipped_rules() -> Rules:
    """The rules of ``catalog/incident_rules.toml``; ``CatalogError`` when malformed."""
    text = resources.files("fleetwatch.catalog").joinpath(RULES_FILE).read_text("utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog/{RULES_FILE}: {exc}") from exc
    return rules_from(data, f"catalog/{RULES_FILE}")


def rules_from(data: Mapping[str, Any], where: str) -> Rules:
    """Rules from the parsed TOML ``data``; ``CatalogError`` naming ``where`` and the
    entry when something does not match the schema (see the shipped file's header)."""
    rules: list[Rule] = []
    for i, entry in enumerate(_list_of_tables(data, "rule", where)):
        rules.append(_rule(entry, f"{where}: rule[{i}]"))
    names = [rule.name for rule in rules]
    if not rules or len(set(names)) != len(names):
        raise CatalogError(f"{where}: no rules, or two rules of one name")
    if SINGLE in names:
        raise CatalogError(f"{where}: {SINGLE!r} names the findings no rule links")
    words_table = data.get("words")
    if not isinstance(words_table, dict):
        raise CatalogError(f"{where}: [words] must be a table")
    words: dict[str, tuple[str, ...]] = {}
    for detector, phrases in words_table.items():
        at = f"{where}: words.{detector}"
        _known_detector(detector, at)
        if not isinstance(phrases, list) or not phrases:
            raise CatalogError(f"{at}: must be a list of phrases")
        words[detector] = tuple(_template(p, _WORD_BLANKS, at) for p in phrases)
    sxid_from = data.get("sxid_codes_from")
    if not isinstance(sxid_from, int) or isinstance(sxid_from, bool) or sxid_from <= 0:
        raise CatalogError(f"{where}: sxid_codes_from must be a positive number")
    return Rules(tuple(rules), MappingProxyType(words), sxid_from)


def _rule(entry: dict[str, Any], where: str) -> Rule:
    name = entry.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise CatalogError(f"{where}: name must be a word, got {name!r}")
    cause = entry.get("root_cause")
    if cause not in (HARDWARE, APPLICATION):
        raise CatalogError(f"{where}: root_cause must be {HARDWARE} or {APPLICATION}")
    detectors = _detectors(entry.get("root_detectors"), f"{where}: root_detectors")
    try:
        severity = Severity.parse(str(entry.get("root_min_severity", "info")))
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    effects = tuple(
        _effect(e, f"{where}: effect[{i}]", cause)
        for i, e in enumerate(_list_of_tables(entry, "effect", where))
    )
    advice = _template(entry.get("advice"), _ADVICE_BLANKS, f"{where}: advice")
    bare = _template(entry.get("advice_without_job"), _ADVICE_BLANKS - {"job"}, where)
    min_gpus = entry.get("min_gpus", 1)
    if not isinstance(min_gpus, int) or isinstance(min_gpus, bool) or min_gpus < 1:
        raise CatalogError(f"{where}: min_gpus must be a number of GPUs, 1 or more")
    return Rule(
        name,
        cause,
        tuple(detectors),
        severity,
        _causes(entry.get("root_xid_causes"), f"{where}: root_xid_causes"),
        effects,
        advice,
        bare,
        min_gpus,
        _floor(entry.get("action_at_least"), where, cause),
    )


def _effect(entry: dict[str, Any], where: str, cause: str) -> Effect:
    link = entry.get("link")
    if link not in LINKS:
        raise CatalogError(f"{where}: link must be one of {', '.join(LINKS)}, got {link!r}")
    seconds = []
    for key in ("before_s", "after_s"):
        value = entry.get(key)
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value < 0
        ):
            raise CatalogError(f"{where}: {key} must be seconds, 0 or more, got {value!r}")
        seconds.append(float(value))
    return Effect(
        frozenset(_detectors(entry.get("detectors"), f"{where}: detectors")),
        link,
        seconds[0],
        seconds[1],
        _causes(entry.get("xid_causes"), f"{where}: xid_causes"),
        _floor(entry.get("action_at_least"), where, cause),
    )


def _floor(value: Any, where: str, cause: str) -> Action | None:
    """An ``action_at_least``: an action a hardware root may take, or None."""
    if value is None:
        return None
    try:
        action = Action(value)
    except ValueError:
        raise CatalogError(f"{where}: unknown action_at_least {value!r}") from None
    if cause == HARDWARE and action in _NEVER_FOR_HARDWARE:
        raise CatalogError(f"{where}: a hardware root never yields {action}")
    return action


def _list_of_tables(data: Mapping[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise CatalogError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return value


def _known_detector(name: Any, where: str) -> str:
    if name not in REGISTRY:
        raise CatalogError(f"{where}: unknown detector {name!r}")
    return str(name)


def _detectors(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise CatalogError(f"{where}: must be a list of detector names")
    return [_known_detector(name, where) for name in value]


def _causes(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not set(value) <= XID_CAUSES:
        raise CatalogError(f"{where}: must be a list of {', '.join(sorted(XID_CAUSES))}")
    return frozenset(value)


def _template(value: Any, blanks: frozenset[str], where: str) -> str:
    """A phrase with ``{blanks}``: checked here, so filling it in never fails."""
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: must be a phrase")
    try:
        used = {name for _, name, spec, conv in string.Formatter().parse(value) if name}
        bad = [spec for _, name, spec, conv in string.Formatter().parse(value) if spec or conv]
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    if not used <= blanks or bad:
        raise CatalogError(f"{where}: blanks are {{{'}, {'.join(sorted(blanks))}}} only")
    return value


# -- linking -------------------------------------------------------------------------


def link(findings: Iterable[Finding], rules: Rules | None = None) -> list[Incident]:
    """Every finding in exactly one incident, most severe first (``incident_order``).

    Of findings with one id, the last given wins (the latest version).
    """
    rules = rules or shipped_rules()
    pool = list({f.id: f for f in findings}.values())
    claimed: set[str] = set()
    out: list[Incident] = []
    for rule in rules.rules:
        out += _apply(rule, pool, claimed, rules)
    out += [_single(f, rules) for f in sorted(pool, key=_time_order) if f.id not in claimed]
    return sorted(out, key=incident_order)


def _time_order(f: Finding) -> tuple[bool, float, str]:
    return (f.first_ts is None, f.first_ts or 0.0, f.id)


def _apply(rule: Rule, pool: list[Finding], claimed: set[str], rules: Rules) -> list[Incident]:
    """The incidents of one rule over the findings no earlier rule claimed."""
    priority = {name: i for i, name in enumerate(rule.root_detectors)}
    candidates = sorted(  # at one time, a GPU's finding before one of the whole node's,
        # which sums them up: the root, and so the incident's id, is the same as it grows
        (f for f in pool if f.id not in claimed and _can_root(rule, f, rules)),
        key=lambda f: (
            f.first_ts is None,
            f.first_ts or 0.0,
            _device(f) is None,
            priority[f.detector],
            f.id,
        ),
    )
    # Pass 1, in time order: a candidate an earlier root links to is that root's effect.
    roots: list[Finding] = []
    near = _Near()
    for f in candidates:
        if _best_root(rule, f, near.roots_for(f), rules) is None:
            roots.append(f)
            near.add(f)
    # Pass 2: every other finding goes to the root it links to best, if any.
    chosen = {r.id for r in roots}
    effects: dict[str, list[tuple[Finding, Effect]]] = {r.id: [] for r in roots}
    for f in pool:
        if f.id in claimed or f.id in chosen:
            continue
        best = _best_root(rule, f, near.roots_for(f), rules)
        if best is not None:
            effects[best[0].id].append((f, best[1]))
    out = []
    for root in roots:
        linked = sorted(effects[root.id], key=lambda pair: _time_order(pair[0]))
        found = [f for f, _ in linked]
        if rule.min_gpus > 1 and len(_gpus(rule, root, found, rules)) < rule.min_gpus:
            continue  # too few GPUs for this rule: its findings are the next rules'
        claimed.add(root.id)
        claimed.update(f.id for f, _ in linked)
        out.append(_incident(rule, root, linked, rules))
    return out


class _Near:
    """The roots chosen so far, by node and by job name: which could link a finding."""

    def __init__(self) -> None:
        self.by_node: dict[str, list[Finding]] = {}
        self.by_job: dict[str, list[Finding]] = {}

    def add(self, root: Finding) -> None:
        for node in _nodes(root):
            self.by_node.setdefault(node, []).append(root)
        for name in _job_names(root):
            self.by_job.setdefault(name, []).append(root)

    def roots_for(self, f: Finding) -> list[Finding]:
        found: dict[str, Finding] = {}
        for node in _nodes(f):
            found.update((r.id, r) for r in self.by_node.get(node, ()))
        for name in _job_names(f):
            found.update((r.id, r) for r in self.by_job.get(name, ()))
        return list(found.values())


def _best_root(
    rule: Rule, f: Finding, roots: Sequence[Finding], rules: Rules
) -> tuple[Finding, Effect] | None:
    """The root ``f`` links to best (strongest link, then earliest root), and how."""
    best: tuple[tuple[int, float, str], Finding, Effect] | None = None
    for root in roots:
        if root.id == f.id:
            continue
        for effect in rule.effects:
            strength = _strength(effect, root, f, rules)
            if not strength:
                continue
            key = (-strength, root.first_ts or 0.0, root.id)
            if best is None or key < best[0]:
                best = (key, root, effect)
    return None if best is None else (best[1], best[2])


def _can_root(rule: Rule, f: Finding, rules: Rules) -> bool:
    if f.detector not in rule.root_detectors or f.severity < rule.root_min_severity:
        return False
    if rule.root_cause == HARDWARE and f.action in _NEVER_FOR_HARDWARE:
        return False  # a finding that blames the job is no hardware root
    return _cause_fits(f, rule.root_xid_causes, rules)


def _cause_fits(f: Finding, causes: frozenset[str] | None, rules: Rules) -> bool:
    """Whether an xid_correlation finding's cause is one of ``causes`` (others: yes)."""
    if causes is None or f.detector != "xid_correlation":
        return True
    return _xid_cause(f, rules) in causes


def _xid_cause(f: Finding, rules: Rules) -> str:
    """The catalog's cause of an xid_correlation finding: an SXid is the fabric's; a
    finding without a code (fatal Xids escalated to an RMA) is the GPU's."""
    if f.code is None:
        return HARDWARE
    if _is_sxid(f, rules):
        return "nvlink"
    return xid(f.code).cause


def _is_sxid(f: Finding, rules: Rules) -> bool:
    """Whether an xid_correlation finding is an NVSwitch's SXid, not a GPU's Xid."""
    return f.code is not None and f.code >= rules.sxid_codes_from and f.code not in xid_catalog()


def _strength(effect: Effect, root: Finding, f: Finding, rules: Rules) -> int:
    """How strongly ``effect`` links ``f`` to ``root``: 0 not at all, 3 the most."""
    if f.detector not in effect.detectors or not _cause_fits(f, effect.xid_causes, rules):
        return 0
    if not _in_window(root, f, effect):
        return 0
    if effect.link == "gpu":  # the root's GPU; a finding naming none, on the root's node
        if root.node is None or f.node != root.node:
            return 0
        same = _same_gpu(root, f)
        return 3 if same else 2 if same is None else 0
    if effect.link == "node":
        if root.node is None:
            return 0
        if f.node == root.node:
            return 3 if _same_gpu(root, f) else 2
        if f.rank is not None and f.node is not None:
            return 0  # a job's hang whose culprit rank ran elsewhere is that node's
        return 1 if root.node in (f.nodes or ()) else 0
    # "job": by name, else a node in common
    if _job_names(root) & _job_names(f):
        return 3
    return 1 if _nodes(root) & _nodes(f) else 0


def _in_window(root: Finding, f: Finding, effect: Effect) -> bool:
    """Whether ``f`` began within the effect's window around ``root``, on one clock."""
    if root.first_ts is None or f.first_ts is None or root.clock != f.clock:
        return False
    if root.clock != "wall" and root.node != f.node:  # boot clocks of two nodes
        return False
    end = root.last_ts if root.last_ts is not None else root.first_ts
    return root.first_ts - effect.before_s <= f.first_ts <= end + effect.after_s


def _device(f: Finding) -> str | None:
    """The GPU (or NVSwitch) a finding names: its PCI address, else ``#`` and its index."""
    if f.pci is not None:
        return f.pci
    return None if f.gpu is None else f"#{f.gpu}"


def _same_gpu(a: Finding, b: Finding) -> bool | None:
    """Whether two findings of one node name the same GPU; None when either names none
    (or they name it in forms that cannot be compared)."""
    if a.pci is not None and b.pci is not None:
        return a.pci == b.pci
    if a.gpu is not None and b.gpu is not None:
        return a.gpu == b.gpu
    return None


def _gpus(rule: Rule, root: Finding, effects: Sequence[Finding], rules: Rules) -> list[str]:
    """The GPUs of the root's node named by the findings among ``root`` and ``effects``
    that could be the rule's root (its faults, not their effects), in the order first
    named; an NVSwitch's SXid names none."""
    gpus: dict[str, None] = {}
    for f in (root, *effects):
        device = _device(f)
        if device is None or f.node != root.node or not _can_root(rule, f, rules):
            continue
        if f.detector == "xid_correlation" and _is_sxid(f, rules):
            continue
        gpus.setdefault(device, None)
    return list(gpus)


def _nodes(f: Finding) -> set[str]:
    nodes = set(f.nodes or ())
    if f.node is not None:
        nodes.add(f.node)
    return nodes


def _job_names(f: Finding) -> set[str]:
    """A job's names: ``ml/llm-pretrain`` (pod labels) is also ``llm-pretrain``, the
    name NCCL's log folder gives it."""
    if not f.job:
        return set()
    return {f.job, f.job.rsplit("/", 1)[-1]}


# -- the incident --------------------------------------------------------------------


def _incident(
    rule: Rule, root: Finding, linked: list[tuple[Finding, Effect]], rules: Rules
) -> Incident:
    effects = tuple(f for f, _ in linked)
    action = root.action
    if rule.root_cause == HARDWARE:  # the strongest of the node's hardware findings
        action = strongest(action, *(f.action for f in effects if _can_root(rule, f, rules)))
    for floor in (rule.action_at_least, *(effect.action_at_least for _, effect in linked)):
        if floor is not None and floor.strength > action.strength:
            action = floor  # at least what the rule and the effects ask
    if rule.root_cause == HARDWARE and action in _NEVER_FOR_HARDWARE:
        action = Action.DRAIN_NODE  # the invariant, whatever the findings said
    return _made(rule.name, rule.root_cause, root, effects, action, rule, rules)


def _single(f: Finding, rules: Rules) -> Incident:
    cause = UNKNOWN
    if f.action is Action.FIX_APPLICATION:
        cause = APPLICATION
    else:
        for rule in rules.rules:
            if f.detector in rule.root_detectors and _cause_fits(f, rule.root_xid_causes, rules):
                cause = rule.root_cause
                break
    return _made(SINGLE, cause, f, (), f.action, None, rules)


def _made(
    name: str,
    cause: str,
    root: Finding,
    effects: tuple[Finding, ...],
    action: Action,
    rule: Rule | None,
    rules: Rules,
) -> Incident:
    findings = (root, *effects)
    timed = [f for f in findings if f.first_ts is not None and f.clock == root.clock]
    lasts = [f.last_ts if f.last_ts is not None else f.first_ts for f in timed]
    gpus: list[str] = []
    for f in findings:
        where = f.pci or (str(f.gpu) if f.gpu is not None else None)
        if f.node is not None and where is not None:
            gpus.append(f"{f.node}/{where}")
    # a root without one node (a job's application fault) is where its job ran
    spanned = set(root.nodes or ()) if root.node is None else set()
    summary = one_line(root.summary)
    if rule is not None and effects:
        summary = _story(rule, root, effects, action, rules)
    return Incident(
        incident_id=incident_id(root),
        rule=name,
        root_cause=cause,
        root=root,
        effects=effects,
        action=action,
        severity=max(f.severity for f in findings),
        nodes=tuple(sorted({f.node for f in findings if f.node is not None} | spanned)),
        gpus=tuple(dict.fromkeys(gpus)),
        first_ts=min((f.first_ts for f in timed if f.first_ts is not None), default=None),
        last_ts=max((t for t in lasts if t is not None), default=None),
        clock=root.clock,
        summary=summary,
        status="open" if any(f.status == "open" for f in findings) else "resolved",
    )


def _story(
    rule: Rule, root: Finding, effects: tuple[Finding, ...], action: Action, rules: Rules
) -> str:
    """One paragraph: what came first, what followed and when, and what to do.

    When the faults name several GPUs of the node, none is told as the others' cause:
    they are told together, as the node's ("2 GPUs of gpu-node-5 failed within 4 s:
    …"), and what followed them after.
    """
    gpus = _gpus(rule, root, effects, rules)
    if len(gpus) > 1:
        hardware = [
            f for f in (root, *effects) if f.node == root.node and _can_root(rule, f, rules)
        ]
        faults = [f for f in hardware if _device(f) is not None]  # the whole node's: opening
        opening = f"{len(gpus)} GPUs of {root.node} failed {_within(faults, gpus)}: "
        opening += "; ".join(_each_gpu(faults, rules))
        told = {f.id for f in hardware}
        rest = [f for f in effects if f.id not in told]
    else:
        opening, rest = f"First, {_told(root, root, rules)}", list(effects)
    then = "; ".join(_told(f, root, rules) for f in rest)
    job = next((f.job for f in effects if f.job), root.job)
    blanks = {"action": str(action), "node": root.node or "its node", "job": job or ""}
    advice = rule.advice if job else rule.advice_without_job
    text = f"{opening}." + (f" Then {then}." if then else "") + f" {advice.format(**blanks)}"
    return one_line(text)


def _each_gpu(faults: Sequence[Finding], rules: Rules) -> list[str]:
    """Each GPU's faults in a few words: its first and when, then what followed on it."""
    firsts: dict[str, Finding] = {}
    told: dict[str, list[str]] = {}
    for f in faults:
        key = str(_device(f))
        if key not in firsts:
            firsts[key] = f
            told[key] = [_told(f, faults[0], rules)]
        else:
            told[key].append(f"then {_phrase(f, rules, 'it')}{_later(firsts[key], f)}")
    return [", ".join(parts) for parts in told.values()]


def _told(f: Finding, since: Finding, rules: Rules) -> str:
    """The finding in a few words and when: its moment, or how long after ``since``."""
    if f is since:
        moment = "" if f.first_ts is None else f", at {_moment(f.first_ts, f.clock)}"
        return _phrase(f, rules) + moment
    return _phrase(f, rules) + _later(since, f)


def _within(faults: Sequence[Finding], gpus: Sequence[str]) -> str:
    """How close together the first faults of ``gpus`` came: "within 4 s", "at once"."""
    clock = faults[0].clock
    firsts: dict[str, float] = {}
    for f in faults:
        device = _device(f)
        if device is not None and device in gpus and f.first_ts is not None and f.clock == clock:
            firsts.setdefault(device, f.first_ts)
    if len(firsts) < 2:
        return "together"
    spread = max(firsts.values()) - min(firsts.values())
    return "at once" if spread < 1 else f"within {_amount(spread)}"


def _phrase(f: Finding, rules: Rules, where: str | None = None) -> str:
    """The finding in a few words: the first of its detector's phrases it fills;
    ``where`` names its place when it is said already ("it")."""
    where = where or _where(f)
    blanks: dict[str, Any] = {"where": where, "job": f.job, "rank": f.rank}
    if f.detector == "xid_correlation" and f.code is not None:
        if _is_sxid(f, rules):
            blanks["sxid"] = f.code
        else:
            blanks["xid"] = f.code
            blanks["xid_name"] = xid(f.code).name
    for phrase in rules.words.get(f.detector, ()):
        names = {name for _, name, _, _ in string.Formatter().parse(phrase) if name}
        if all(blanks.get(name) is not None for name in names):
            return phrase.format(**{k: v for k, v in blanks.items() if v is not None})
    return f"{f.detector} on {where}"


def _where(f: Finding) -> str:
    gpu = f.pci or (str(f.gpu) if f.gpu is not None else None)
    if f.node is not None:
        return f"GPU {gpu} of {f.node}" if gpu else f.node
    nodes = sorted(f.nodes or ())
    if not nodes:
        return "an unknown node"
    shown = ", ".join(nodes[:_NODES_SHOWN])
    more = len(nodes) - _NODES_SHOWN
    return shown + (f" and {more} more nodes" if more > 0 else "")


def _later(root: Finding, f: Finding) -> str:
    if root.first_ts is None or f.first_ts is None or root.clock != f.clock:
        return ""
    delta = f.first_ts - root.first_ts
    if abs(delta) < 1:
        return ", at the same time"
    return f", {_amount(abs(delta))} {'later' if delta > 0 else 'before'}"


def _amount(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _moment(ts: float, clock: str | None) -> str:
    if clock == "boot":
        return f"{ts:.0f} s after boot"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # a year past 9999 from a forged stamp
        return f"{ts:.0f}"


# -- watch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """How a linked incident changed: ``new``, ``grew`` (another finding joined it, or
    its severity or action rose) or ``resolved`` (it links nothing any more: its root
    or all its effects resolved)."""

    kind: str
    incident: Incident


class Tracker:
    """The incidents that link open findings, recomputed as they change (watch mode).

    Only incidents of two findings or more are tracked: a finding alone is announced
    as a finding already.
    """

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules
        self.linked: dict[str, Incident] = {}

    def update(self, findings: Iterable[Finding]) -> list[Change]:
        """The changes since the last call, given every open finding now."""
        now = {i.incident_id: i for i in link(findings, self.rules) if i.effects}
        changes: list[Change] = []
        for key, incident in now.items():
            before = self.linked.get(key)
            if before is None:
                changes.append(Change("new", incident))
            elif _grew(before, incident):
                changes.append(Change("grew", incident))
        for key, incident in self.linked.items():
            if key not in now:
                changes.append(Change("resolved", incident))
        self.linked = now
        return changes


def _grew(before: Incident, now: Incident) -> bool:
    had = {f.id for f in before.findings}
    return (
        any(f.id not in had for f in now.findings)
        or now.severity > before.severity
        or now.action.strength > before.action.strength
    )

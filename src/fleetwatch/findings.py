"""Findings: what a detector concludes, and what to do about it.

A ``Finding`` names the entity at fault with the event's own names (node, PCI address,
GPU index, UUID, board serial, job, pod, rank), says how bad it is (``Severity``) and
the one thing to do (``Action``), and carries its evidence. One finding stands for
one incident: repeats fold into ``count`` and ``last_ts``. Its ``id`` is stable for
the incident (detector, entity and first time), so a receiver can drop a repeat.

Its times are of one ``clock``: ``wall`` (epoch seconds) or ``boot`` (seconds since
the node booted, from a plain dmesg with no anchor). A finding on the wall clock that
also folded boot-clock events keeps their times apart in ``boot_first_ts`` and
``boot_last_ts``; the two clocks are never mixed.

A finding about a job whose ranks or GPUs ran on several nodes names them all in
``nodes`` (``node`` is then the culprit's, or absent): what links it to a fault of
one of those nodes (``incidents.py``).

``Action`` order: when several actions apply, the strongest wins (``rma_gpu`` >
``reboot_node`` > ``drain_node`` > ``reset_gpu`` > the rest) and the summary names
the others.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from enum import Enum, IntEnum
from typing import Any, Final


class Severity(IntEnum):
    """How bad a finding is; ordered, so ``max`` and ``>=`` work."""

    INFO = 0
    WARNING = 1
    ERROR = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``"error"`` -> ``Severity.ERROR``; ``ValueError`` for an unknown name."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown severity {text!r} (one of {names})") from None

    def __str__(self) -> str:
        return self.name.lower()


class Action(Enum):
    """The one primary thing to do about a finding."""

    NONE = "none"
    FIX_APPLICATION = "fix_application"
    RESTART_JOB = "restart_job"
    INVESTIGATE = "investigate"
    CHECK_COOLING = "check_cooling"
    INSPECT_FABRIC = "inspect_fabric"
    INSPECT_PCIE = "inspect_pcie"
    RESET_GPU = "reset_gpu"
    DRAIN_NODE = "drain_node"
    REBOOT_NODE = "reboot_node"
    RMA_GPU = "rma_gpu"

    @property
    def strength(self) -> int:
        """Rank for choosing the strongest of several actions."""
        return _STRENGTH.get(self, 0)

    @property
    def takes_out_of_service(self) -> bool:
        """Whether the node or GPU must leave the scheduler's pool for it."""
        return self.strength >= _STRENGTH[Action.RESET_GPU]

    def __str__(self) -> str:
        return self.value


_STRENGTH = {
    Action.RESET_GPU: 1,
    Action.DRAIN_NODE: 2,
    Action.REBOOT_NODE: 3,
    Action.RMA_GPU: 4,
}


def strongest(*actions: Action) -> Action:
    """The action to take when all of ``actions`` apply."""
    return max(actions, key=lambda a: a.strength)


def finding_id(detector: str, entity: str, first_ts: float | None) -> str:
    """A stable id for one incident: same detector, entity and first time, same id."""
    stamp = "none" if first_ts is None else f"{first_ts:.6f}"
    digest = hashlib.sha256(f"{detector}|{entity}|{stamp}".encode()).hexdigest()
    return f"{detector}-{digest[:16]}"


def report_order(finding: Finding) -> tuple[int, float, str]:
    """How findings are listed: most severe first, then oldest first (untimed as 0),
    then by id, so the same findings always list alike."""
    first = finding.first_ts if finding.first_ts is not None else 0.0
    return (-finding.severity, first, finding.id)


@dataclass(frozen=True)
class Finding:
    """One incident a detector found (see the module docstring)."""

    id: str
    detector: str
    severity: Severity
    action: Action
    summary: str
    first_ts: float | None
    last_ts: float | None
    count: int = 1
    clock: str | None = None  # of first_ts/last_ts: "wall" (epoch s), "boot" (s since boot)
    boot_first_ts: float | None = None  # boot-clock times of a wall-clock finding's events
    boot_last_ts: float | None = None
    status: str = "open"
    node: str | None = None
    pci: str | None = None
    gpu: int | None = None
    uuid: str | None = None
    serial: str | None = None
    job: str | None = None
    pod: str | None = None
    namespace: str | None = None
    rank: int | None = None
    code: int | None = None
    evidence: tuple[str, ...] = field(default_factory=tuple)
    nodes: tuple[str, ...] | None = None  # every node a job's finding spans, when several

    def to_json(self) -> dict[str, Any]:
        """The finding as the JSON object ``--output jsonl`` prints (nulls left out)."""
        data = asdict(self)
        data["severity"] = str(self.severity)
        data["action"] = str(self.action)
        data["evidence"] = list(self.evidence)
        if self.nodes is not None:
            data["nodes"] = list(self.nodes)
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        """The finding ``to_json`` wrote (keys it does not know are ignored; an absent
        time is none). ``ValueError`` for a value of the wrong type, a time that is not
        a finite number, or a list that is not of strings: what comes back from a store
        or a stream is checked, not trusted."""
        if not isinstance(data, dict):
            raise ValueError("a finding is a JSON object")
        known = {f: data[f] for f in cls.__dataclass_fields__ if f in data}
        for name, value in known.items():
            kind = _FIELD_TYPES.get(name)
            if kind is None or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, kind):
                raise ValueError(f"finding field {name}: {type(value).__name__}")
            if isinstance(value, int) and not -_INT_LIMIT < value < _INT_LIMIT:
                raise ValueError(f"finding field {name}: out of range")  # no column holds it
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"finding field {name}: not a finite number")
        for name in ("evidence", "nodes"):
            value = data.get(name)
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise ValueError(f"finding field {name}: not a list of strings")
        for name in ("id", "detector", "summary", "severity", "action"):
            if not isinstance(data.get(name), str):
                raise ValueError(f"finding field {name}: missing")
        known.setdefault("first_ts", None)
        known.setdefault("last_ts", None)
        known["severity"] = Severity.parse(data["severity"])
        known["action"] = Action(data["action"])
        known["evidence"] = tuple(data.get("evidence", ()))
        if data.get("nodes") is not None:
            known["nodes"] = tuple(data["nodes"])
        return cls(**known)


_NUMBER: Final = (int, float)
_INT_LIMIT: Final = 1 << 63
_FIELD_TYPES: Final[dict[str, Any]] = {
    **dict.fromkeys(
        ("id", "detector", "summary", "clock", "status", "node", "pci", "uuid", "serial"),
        str,
    ),
    **dict.fromkeys(("job", "pod", "namespace"), str),
    **dict.fromkeys(("first_ts", "last_ts", "boot_first_ts", "boot_last_ts"), _NUMBER),
    **dict.fromkeys(("count", "gpu", "rank", "code"), int),
}
"""The JSON type of each plain field of a finding (severity, action and the lists are
checked apart)."""

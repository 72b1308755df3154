"""hbm_ecc: GPU memory errors, row remapping, and when a GPU must go.

Pattern
    Per GPU, one memory incident while evidence keeps coming within ``gap_s``:

    * a new uncorrectable ECC error (the counter rose, volatile or aggregate) -> error,
      ``reset_gpu``;
    * a row remap pending -> ``reset_gpu`` (the remap takes effect at the reset);
    * a row remap failure, or ``uncorrectable_remap_limit`` rows remapped for
      uncorrectable errors -> critical, ``rma_gpu``;
    * corrected errors rising faster than ``corrected_per_hour`` -> warning;
    * the memory Xids (48 DBE, 63 remap recorded, 64 remap failed, 92 high SBE rate,
      94 contained, 95 uncontained, 140 unrecovered, 156 resource retired, 171: the
      codes ``catalog/xid.toml`` gives ``owner = "hbm_ecc"``) are evidence for the
      same incident, with the catalog's severity and action.

    The finding's severity is the worst and its action the strongest of its evidence.

Counters
    ECC and remap counters are cumulative. The detector works on differences between
    samples of the same GPU, counter and source, and a counter that goes down was
    reset (a GPU reset or a reboot): the new value counts from zero. The first sample
    of a GPU is a baseline, except that volatile uncorrectable errors already present
    happened since the driver loaded, and are reported.

Lifetime
    A counter series is forgotten once it has had no sample for ``forget_gpu_after_s``
    (default 7 days): a GPU back after longer starts from a new baseline, so errors
    counted while it was away are not reported as new (and a volatile uncorrectable
    count is reported again). Its corrected-error history goes with its last series;
    an incident once it has not changed for ``gap_s``. Time is the ``flush`` clock
    (see ``base``: "Forgetting").

Evidence
    The samples and Xid records behind it (``file:line``, kind, value), first and last
    few.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from fleetwatch.catalog import xid, xids_owned_by
from fleetwatch.detectors.base import (
    Incident,
    IncidentBook,
    describe,
    kind_table,
    make_finding,
    pack,
    runs,
    shifted,
    span,
)
from fleetwatch.detectors.series import Series
from fleetwatch.detectors.state import Stateful, dump, load
from fleetwatch.events import KIND_ID, SCOPE_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity, strongest

MEMORY_XIDS: Final = xids_owned_by("hbm_ecc")  # catalog/xid.toml: owner
_COUNTERS: Final = (
    "ecc_corrected",
    "ecc_uncorrected",
    "remap_correctable",
    "remap_uncorrectable",
    "remap_pending",
    "remap_failure",
)
# What each counter's hit means (corrected errors are judged by their rate instead).
_VERDICTS: Final = {
    "ecc_uncorrected": (Severity.ERROR, Action.RESET_GPU),
    "remap_pending": (Severity.WARNING, Action.RESET_GPU),
    "remap_failure": (Severity.CRITICAL, Action.RMA_GPU),
    "remap_uncorrectable": (Severity.CRITICAL, Action.RMA_GPU),
}
_IS_COUNTER: Final = kind_table(*_COUNTERS)
_XID: Final = np.int8(KIND_ID["xid"])
_MEMORY_XID_CODES: Final = np.asarray(sorted(MEMORY_XIDS), dtype=np.int64)
_NO_STRING: Final = np.int32(-1)  # an absent string id, as the column's type
# Which counters are hits when they rise, and which while they are above zero (the
# uncorrectable remap count is judged against its limit instead).
_RISE_MATTERS: Final = kind_table("ecc_uncorrected", "ecc_corrected")
_NONZERO_MATTERS: Final = kind_table("remap_pending", "remap_failure")
_REMAP_UNCORRECTABLE: Final = np.int8(KIND_ID["remap_uncorrectable"])
# The order the hits of one batch are judged in.
_HIT_KINDS: Final = (
    "ecc_uncorrected",
    "remap_pending",
    "remap_failure",
    "remap_uncorrectable",
    "ecc_corrected",
)


_COUNTER_BITS: Final = np.int64(12)  # the counter's share of a series key (``pack``)
_THREE_BITS: Final = np.int64(3)  # a scope's or a source's share of the counter


def _series_key(batch: EventBatch, row: int) -> tuple[str, str, int, int, int]:
    """A counter series' key: (node, pci, kind, scope, source) of one of its rows."""
    strings = batch.strings
    return (
        strings[batch["node"].item(row)],
        strings[batch["pci"].item(row)],
        batch["kind"].item(row),
        batch["scope"].item(row),
        batch["source"].item(row),
    )


class _Evidence(NamedTuple):
    """Rows of one batch that are evidence for one GPU's memory incident."""

    members: np.ndarray
    node: str
    pci: str
    severity: Severity
    action: Action
    what: str


@dataclass(frozen=True)
class Config:
    """Thresholds of hbm_ecc."""

    gap_s: float = 3600.0
    """Memory evidence closer than this belongs to one incident."""
    corrected_per_hour: float = 100.0
    """Corrected ECC errors per hour above which a GPU gets a warning."""
    uncorrectable_remap_limit: int = 8
    """Rows remapped for uncorrectable errors at which a GPU is an RMA candidate."""
    forget_gpu_after_s: float = 604800.0
    """A counter series without samples for this long is forgotten (its baseline)."""


class HbmEcc(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "hbm_ecc"
    description: ClassVar[str] = (
        "uncorrectable ECC errors, row remaps pending or failed, corrected-error rate"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({*_COUNTERS, "xid"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.gap_s)
        # (node, pci, kind, scope, source) -> the last sample; saved as ``last``
        self._series = Series()
        self.corrected: dict[tuple[str, str], list[tuple[float, float]]] = {}
        self._due: list[tuple[int, _Evidence]] = []  # this batch's evidence, not yet folded

    def process(self, batch: EventBatch) -> list[Finding]:
        kind = batch["kind"]
        rows = np.flatnonzero(_IS_COUNTER[kind] & (batch["pci"] > _NO_STRING))
        if rows.size:
            self._counters(batch, rows)
        xid_rows = np.flatnonzero(kind == _XID)
        if xid_rows.size:  # np.isin sorts: only on the few Xid rows
            xid_rows = xid_rows[np.isin(batch["code"][xid_rows], _MEMORY_XID_CODES)]
        if xid_rows.size:
            self._xids(batch, xid_rows)
        if not self._due:
            return []
        # Evidence joins its incident in the order it was read (rows are), whichever
        # counter or Xid it is: the incident opens at its first evidence, and its id is
        # the same whether the evidence came in one batch or in several.
        changed: dict[str, Finding] = {}
        for _, evidence in sorted(self._due, key=lambda due: due[0]):
            finding = self._fold(batch, evidence)
            changed[finding.id] = finding
        self._due.clear()
        return list(changed.values())

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        self.book.close(now)
        if self._series.expire(now, self.config.forget_gpu_after_s):
            sampled = {(node, pci) for node, pci, *_ in self._series.keys}
            for gpu in [g for g in self.corrected if g not in sampled]:
                del self.corrected[gpu]
        return []

    def size(self) -> int:
        return len(self.book.open) + len(self._series) + len(self.corrected)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "last": dump(self._series.as_dict())}

    def restore(self, saved: dict[str, Any]) -> None:
        rest = {name: value for name, value in saved.items() if name != "last"}
        super().restore(rest)
        self._series = Series.of(load(saved["last"]) if "last" in saved else {})

    # -- evidence ----------------------------------------------------------------------

    def _xids(self, batch: EventBatch, rows: np.ndarray) -> None:
        # each (node, pci, code), its rows in the order they came (the memory Xids'
        # codes fit pack's 12 bits): np.unique(axis=1) took ten times as long
        key = pack(batch["node"][rows], batch["pci"][rows], batch["code"][rows])
        order = np.argsort(key, kind="stable")
        rows, key = rows[order], key[order]
        for start, end in zip(*(bound.tolist() for bound in runs(key)), strict=True):
            members = rows[start:end]
            first = members.item(0)
            entry = xid(batch["code"].item(first))
            self._evidence(
                _Evidence(
                    members,
                    batch.strings[batch["node"].item(first)],
                    batch.string(batch["pci"].item(first)) or "?",
                    entry.severity,
                    entry.action,
                    f"Xid {entry.code} ({entry.name})",
                )
            )

    def _counters(self, batch: EventBatch, rows: np.ndarray) -> None:
        kind = batch["kind"]
        # kind (< 64), scope (< 8) and source (< 8) share the third, 12-bit column
        counter = kind[rows].astype(np.int64)
        counter <<= _THREE_BITS
        counter |= batch["scope"][rows]
        counter <<= _THREE_BITS
        counter |= batch["source"][rows]
        series = pack(batch["node"][rows], batch["pci"][rows], counter)
        # each series is one (GPU, counter): ``series >> _COUNTER_BITS`` is its GPU
        order = np.lexsort((batch["ts"][rows], series))  # each series in time order
        rows, series = rows[order], series[order]
        vals, times = batch["value"][rows], batch["ts"][rows]
        starts, ends = runs(series)
        before = shifted(vals)
        baseline = self._previous(batch, rows, series[starts], starts, ends, before)
        # a counter that went down was reset: the new value counts from zero
        rises = np.where(vals >= before, vals - before, vals)
        if baseline.any():
            first_rows = starts[baseline]
            volatile_uncorrectable = (kind[rows[first_rows]] == KIND_ID["ecc_uncorrected"]) & (
                batch["scope"][rows[first_rows]] == SCOPE_ID["volatile"]
            )
            # a baseline is history, except volatile uncorrectable errors: this boot's
            rises[first_rows] = np.where(volatile_uncorrectable, vals[first_rows], 0.0)
        k = kind[rows]
        hit = _RISE_MATTERS[k]
        hit &= rises > 0
        hit |= _NONZERO_MATTERS[k] & (vals > 0)
        hit |= (k == _REMAP_UNCORRECTABLE) & (vals >= self.config.uncorrectable_remap_limit)
        hits = np.flatnonzero(hit)
        if hits.size == 0:
            return
        # judged by kind (in _HIT_KINDS' order), then by GPU (node and pci: the series
        # key's upper bits, by which rows are sorted), each GPU's rows in their order
        gpus, kinds = series[hits] >> _COUNTER_BITS, k[hits]
        present = set(kinds.tolist())
        for name in _HIT_KINDS:
            if KIND_ID[name] not in present:
                continue
            of_kind = kinds == KIND_ID[name]
            picked, gpu = hits[of_kind], gpus[of_kind]
            for start, end in zip(*runs(gpu), strict=True):
                at = picked[start:end]
                members = rows[at]
                node = batch.strings[batch["node"][members[0]]]
                pci = batch.strings[batch["pci"][members[0]]]
                self._judge(batch, name, members, vals[at], rises[at], times[at], node, pci)

    def _previous(
        self,
        batch: EventBatch,
        rows: np.ndarray,
        ids: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        before: np.ndarray,
    ) -> np.ndarray:
        """Put each series' value before this batch at its first sample in ``before``
        and note its last sample; return which series are new (their first is a
        baseline). ``ids``: each series' packed ids (node, pci, counter)."""
        slots = self._series.slots(batch, ids, rows[starts], _series_key)
        baseline = self._series.known[slots]
        np.logical_not(baseline, out=baseline)
        before[starts] = self._series.value[slots]  # NaN where new
        self._series.update(slots, batch, rows[ends - 1])
        return baseline

    def _judge(
        self,
        batch: EventBatch,
        kind: str,
        members: np.ndarray,
        vals: np.ndarray,
        rises: np.ndarray,
        times: np.ndarray,
        node: str,
        pci: str,
    ) -> None:
        """The evidence these rows (one GPU, one counter kind, all of them hits) give."""
        if kind == "ecc_corrected":
            self._corrected_rate(members, rises, times, node, pci)
            return
        severity, action = _VERDICTS[kind]
        what = {
            "ecc_uncorrected": f"{int(rises.sum())} new uncorrectable ECC error(s)",
            "remap_pending": "a row remap is pending",
            "remap_failure": "row remapping failed",
            "remap_uncorrectable": f"{int(vals.max())} rows remapped for uncorrectable errors "
            f"(limit {self.config.uncorrectable_remap_limit})",
        }[kind]
        self._evidence(_Evidence(members, node, pci, severity, action, what))

    def _corrected_rate(
        self,
        members: np.ndarray,
        rises: np.ndarray,
        times: np.ndarray,
        node: str,
        pci: str,
    ) -> None:
        history = self.corrected.setdefault((node, pci), [])
        history += [
            (float(t), float(r)) for t, r in zip(times, rises, strict=True) if r > 0 and t == t
        ]
        now = history[-1][0] if history else 0.0
        history[:] = [(t, r) for t, r in history if now - t <= 3600.0]
        per_hour = sum(r for _, r in history)
        if per_hour <= self.config.corrected_per_hour:
            return
        self._evidence(
            _Evidence(
                members[rises > 0],
                node,
                pci,
                Severity.WARNING,
                Action.INVESTIGATE,
                f"{per_hour:.0f} corrected ECC errors in the last hour",
            )
        )

    def _evidence(self, evidence: _Evidence) -> None:
        """Note evidence for a GPU's incident; ``process`` folds it in, in read order."""
        self._due.append((int(evidence.members.min()), evidence))

    def _fold(self, batch: EventBatch, evidence: _Evidence) -> Finding:
        members, node, pci, severity, action, what = evidence
        first, last = int(members[0]), int(members[-1])
        incident, _ = self.book.touch(
            (node, pci),
            span(batch, members),
            int(members.size),
            describe(batch, first),
            describe(batch, last),
        )
        self._remember(incident, batch, first, severity, action, what)
        return self._finding(incident)

    def _remember(
        self,
        incident: Incident,
        batch: EventBatch,
        row: int,
        severity: Severity,
        action: Action,
        what: str,
    ) -> None:
        attrs: dict[str, Any] = incident.attrs
        attrs["severity"] = max(attrs.get("severity", Severity.INFO), severity)
        attrs["action"] = strongest(attrs.get("action", Action.NONE), action)
        whats: list[str] = attrs.setdefault("what", [])
        if what not in whats:
            whats.append(what)
        for name in ("gpu", "uuid", "serial"):
            value = batch.value(name, row)
            if value is not None:
                attrs[name] = value

    def _finding(self, incident: Incident) -> Finding:
        node, pci = incident.key
        attrs = incident.attrs
        summary = f"GPU {pci} of {node} memory: {'; '.join(attrs['what'])}"
        advice = {
            Action.RMA_GPU: "replace the GPU",
            Action.RESET_GPU: "reset the GPU",
            Action.INVESTIGATE: "watch its remapped rows",
        }.get(attrs["action"])
        if advice:
            summary += f" -> {advice}"
        entity = {
            "node": node,
            "pci": pci,
            "gpu": attrs.get("gpu"),
            "uuid": attrs.get("uuid"),
            "serial": attrs.get("serial"),
        }
        return make_finding(
            self.name, incident, attrs["severity"], attrs["action"], summary, entity
        )

"""pcie_aer: PCIe errors on a GPU's link, from the kernel's and the GPU's side.

Pattern
    Per device (node, PCI address), one incident while errors keep coming within
    ``window_s``:

    * corrected AER errors: a warning once ``corrected_per_window`` of them arrive in
      one incident;
    * an uncorrected non-fatal error -> error; a fatal one -> critical;
    * DCGM's PCIe replay counter rising faster than ``replays_per_minute`` -> warning
      (the same link trouble, counted by the GPU). The threshold is for an x16 Gen 5
      link; it scales down with the link's lanes and transfer rate, since a narrower or
      slower link moves less data and the same replays mean a worse link.

    An error reported by a switch or root port is attributed to the GPU that
    reported in the same burst (within ``burst_s``), which is the device behind the
    port; otherwise to the port itself. A GPU is a device the record says is NVIDIA's
    (``device 10de:``), one bound to ``nvidia`` or ``vfio-pci`` (passthrough and
    confidential-computing hosts hand their GPUs to vfio-pci), or one whose UUID the
    node's log taught. A link that trained narrower than x16 is added to the
    evidence. The action is ``inspect_pcie``: reseat, check the riser and the slot.

    ``AER: device recovery failed`` (read as fatal) means the kernel gave up on the
    link: the device behind the port stays unusable until the node reboots. Its
    finding is critical, ``reboot_node`` (then inspect the slot), on the endpoint the
    record names ("behind it …", from the report or ``can't recover`` line just
    before it), else on the GPU of the burst, else on the port.

Lifetime
    A GPU's replay baseline and link state, and a node's last GPU error, are forgotten
    once they have had no sample for ``forget_gpu_after_s`` (default 24 h); an incident
    once it has not changed for ``window_s``. Time is the ``flush`` clock (see
    ``base``: "Forgetting").

Evidence
    The AER reports (``file:line``, severity, error names) and replay samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from fleetwatch.detectors.base import (
    Incident,
    IncidentBook,
    at,
    describe,
    expire,
    expire_stamped,
    last_of_each,
    make_finding,
    pack,
    runs,
    shifted,
    span,
)
from fleetwatch.detectors.state import Stateful
from fleetwatch.events import KIND_ID, SEVERITY_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity

_GPU: Final = re.compile(r"device 10de:|driver (?:nvidia|vfio-pci)\b")
_RECOVERY_FAILED: Final = "device recovery failed"
_BEHIND: Final = re.compile(r"behind it (\S+)")


class _Said(NamedTuple):
    """What an AER record's detail says that this detector reads."""

    behind: str | None  # the device behind the port that reported it
    gpu: bool  # it names an NVIDIA device or driver
    recovery_failed: bool

    @classmethod
    def of(cls, detail: str) -> _Said:
        behind = _BEHIND.search(detail)
        return cls(
            None if behind is None else behind[1],
            _GPU.search(detail) is not None,
            _RECOVERY_FAILED in detail,
        )


# GT/s per lane by PCIe generation: the link's data rate, relative to Gen 5.
_GT_PER_LANE: Final = {1: 2.5, 2: 5.0, 3: 8.0, 4: 16.0, 5: 32.0, 6: 64.0}
_AER: Final = np.int8(KIND_ID["aer"])
_PCIE_REPLAY: Final = np.int8(KIND_ID["pcie_replay"])
_PCIE_LINK: Final = np.int8(KIND_ID["pcie_link"])
_NO_STRING: Final = np.int32(-1)  # an absent string id, as the column's type
_SEVERITY: Final = {
    SEVERITY_ID["corrected"]: Severity.WARNING,
    SEVERITY_ID["nonfatal"]: Severity.ERROR,
    SEVERITY_ID["fatal"]: Severity.CRITICAL,
}


@dataclass(frozen=True)
class Config:
    """Thresholds of pcie_aer."""

    window_s: float = 600.0
    """Errors on one device closer than this are one incident."""
    corrected_per_window: int = 20
    """Corrected errors in one incident that make a warning."""
    replays_per_minute: float = 10.0
    """PCIe replays per minute on an x16 Gen 5 link (DCGM's counter) that make a warning."""
    burst_s: float = 1.0
    """A port's error this close to a GPU's error is that GPU's."""
    forget_gpu_after_s: float = 86400.0
    """A GPU without replay or link samples for this long is forgotten (its baselines)."""


class PcieAer(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "pcie_aer"
    description: ClassVar[str] = (
        "PCIe AER errors and replays per device, attributed to the GPU behind a port"
    )
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({"aer", "pcie_replay", "pcie_link"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.window_s)
        # node -> (time, gpu pci, flush clock then); the clock is None until the next flush
        self.last_gpu_error: dict[str, tuple[float, str, float | None]] = {}
        self.replays: dict[tuple[str, str], tuple[float, float]] = {}  # -> (value, time)
        self.width: dict[tuple[str, str], float] = {}
        self.generation: dict[tuple[str, str], int] = {}
        # (node, pci) -> the flush clock at its last sample; None: since the last flush
        self.seen: dict[tuple[str, str], float | None] = {}
        # (node, pci) -> its link's replay limit, while its width and generation stand
        self._limits: dict[tuple[str, str], float] = {}

    def process(self, batch: EventBatch) -> list[Finding]:
        kind, pci, ts = batch["kind"], batch["pci"], batch["ts"]
        on_device = pci > _NO_STRING
        out: dict[str, Finding] = {}
        links = np.flatnonzero((kind == _PCIE_LINK) & on_device & ~np.isnan(batch["value"]))
        if links.size:  # only each GPU's latest link state matters
            for row in links[last_of_each(pack(batch["node"][links], pci[links]))].tolist():
                key = (batch.strings[batch["node"][row]], batch.strings[pci[row]])
                self.width[key] = float(batch["value"][row])
                self.seen[key] = None
                self._limits.pop(key, None)
                gen = (batch.value("detail", row) or "").removeprefix("gen")
                if gen.isdigit():
                    self.generation[key] = int(gen)
        aers = np.flatnonzero((kind == _AER) & on_device)
        if aers.size:
            for finding in self._aers(batch, aers.tolist()):
                out[finding.id] = finding
        replays = np.flatnonzero((kind == _PCIE_REPLAY) & on_device & ~np.isnan(ts))
        if replays.size:
            for finding in self._replays(batch, replays):
                out[finding.id] = finding
        return list(out.values())

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        keep = self.config.forget_gpu_after_s
        self.book.close(now)
        expire_stamped(self.last_gpu_error, 3, now, keep)
        for gpu in expire(self.seen, now, keep):
            self.replays.pop(gpu, None)
            self.width.pop(gpu, None)
            self.generation.pop(gpu, None)
            self._limits.pop(gpu, None)
        return []

    def size(self) -> int:
        return len(self.book.open) + len(self.last_gpu_error) + len(self.seen)

    def restore(self, saved: dict[str, Any]) -> None:
        super().restore(saved)
        self._limits.clear()  # of the widths and generations before
        for gpu in (*self.replays, *self.width, *self.generation):
            self.seen.setdefault(gpu, None)  # saved before GPUs had stamps: from now on

    def _aers(self, batch: EventBatch, rows: list[int]) -> list[Finding]:
        """The AER records ``rows``: each folded into its device's incident, then each
        incident's lines added once (only those it keeps are described), and its
        finding built once, not once per record: each would replace the one before.
        Keyed by id(): one entry per incident object, in the order they were first
        touched, and first reported."""
        touched: dict[int, tuple[Incident, list[int]]] = {}
        reporting: dict[int, Incident] = {}
        said: dict[int, _Said] = {}  # a storm repeats its records' words: read once each
        for row in rows:
            incident, reports = self._aer(batch, row, said)
            if (known := touched.get(id(incident))) is None:
                touched[id(incident)] = (incident, [row])
            else:
                known[1].append(row)
            if reports:
                reporting.setdefault(id(incident), incident)
        for incident, records in touched.values():
            incident.add_lines(batch, records, records)  # a record is its first and last
        return [self._finding(incident) for incident in reporting.values()]

    def _aer(self, batch: EventBatch, row: int, said: dict[int, _Said]) -> tuple[Incident, bool]:
        """Fold one AER record into its device's incident (its line is for the caller
        to add); the incident, and whether it is one to report (an uncorrected error,
        or enough corrected ones). ``said``: what each detail of the batch says."""
        node = batch.strings[batch["node"].item(row)]
        pci = batch.strings[batch["pci"].item(row)]
        ts = batch.value("ts", row)
        detail_id = batch["detail"].item(row)
        if (words := said.get(detail_id)) is None:
            words = said[detail_id] = _Said.of(batch.string(detail_id) or "")
        if words.behind is not None:
            pci = words.behind  # the record names the device behind the port
        elif (words.gpu or batch["uuid"].item(row) >= 0) and ts is not None:
            self.last_gpu_error[node] = (ts, pci, None)
        else:
            recent = self.last_gpu_error.get(node)
            if recent is not None and ts is not None and abs(ts - recent[0]) <= self.config.burst_s:
                pci = recent[1]  # the port above the GPU reported the GPU's error
        severity = _SEVERITY.get(batch["severity"].item(row), Severity.WARNING)
        incident, _ = self.book.touch((node, pci), at(batch, row), 1)
        attrs = incident.attrs
        attrs["severity"] = max(attrs.get("severity", Severity.INFO), severity)
        attrs["corrected"] = attrs.get("corrected", 0) + (severity == Severity.WARNING)
        attrs["uncorrected"] = attrs.get("uncorrected", 0) + (severity > Severity.WARNING)
        if words.recovery_failed:
            attrs["recovery_failed"] = True
        reports = attrs["uncorrected"] > 0 or attrs["corrected"] >= self.config.corrected_per_window
        return incident, reports

    def _replays(self, batch: EventBatch, rows: np.ndarray) -> list[Finding]:
        """Replays per minute of each GPU, sample to sample, against its link's limit."""
        series = pack(batch["node"][rows], batch["pci"][rows])
        order = np.lexsort((batch["ts"][rows], series))
        rows, series = rows[order], series[order]
        vals, times = batch["value"][rows], batch["ts"][rows]
        starts, ends = runs(series)
        before, then = shifted(vals), shifted(times)
        keys, limits = self._previous(batch, rows, starts, ends, before, then)
        # a counter that went down was reset: the new value counts from zero
        rise = np.where(vals >= before, vals - before, vals)
        minutes = (times - then) / 60.0
        rate = np.divide(rise, minutes, out=np.zeros_like(rise), where=minutes > 0)
        # fmax passes over NaN, which is over no limit
        over = np.flatnonzero(np.fmax.reduceat(rate, starts) > limits)
        out = []
        for series_index in over.tolist():
            start, end = starts.item(series_index), ends.item(series_index)
            limit = limits.item(series_index)
            hit = rows[start:end][rate[start:end] > limit]
            incident, _ = self.book.touch(
                keys[series_index],
                span(batch, hit),
                int(hit.size),
                describe(batch, int(hit[0])),
                describe(batch, int(hit[-1])),
            )
            attrs = incident.attrs
            attrs["severity"] = max(attrs.get("severity", Severity.INFO), Severity.WARNING)
            attrs["replays"] = max(attrs.get("replays", 0.0), float(rate[start:end].max()))
            out.append(self._finding(incident))
        return out

    def _previous(
        self,
        batch: EventBatch,
        rows: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        before: np.ndarray,
        then: np.ndarray,
    ) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Put each GPU's last replay sample before this batch at its first sample in
        ``before`` and ``then``, and note its last; return each GPU's key and its
        link's replay limit."""
        firsts, lasts = rows[starts], rows[ends - 1]
        values, times = batch["value"][lasts], batch["ts"][lasts]
        limits = np.empty(starts.size)
        keys = []
        strings = batch.strings
        limit_of = self._limits.get
        # One tolist per id column, not a NumPy scalar per GPU. The floats are read one
        # by one (item) as each entry is replaced: the entry's old floats are freed just
        # before, and CPython hands them out again.
        columns = zip(
            range(starts.size),  # not enumerate: zip then reuses its tuple
            starts.tolist(),
            batch["node"][firsts].tolist(),
            batch["pci"][firsts].tolist(),
            strict=True,
        )
        for i, start, node, pci in columns:
            key = (strings[node], strings[pci])
            keys.append(key)
            previous = self.replays.get(key)
            if previous is not None:
                before[start], then[start] = previous
            self.replays[key] = (values.item(i), times.item(i))
            self.seen[key] = None
            limit = limit_of(key)
            limits[i] = self._replay_limit(*key) if limit is None else limit
        return keys, limits

    def _replay_limit(self, node: str, pci: str) -> float:
        """The replay threshold for this link: scaled by lanes and rate from x16 Gen 5
        (kept until the link's width or generation changes: a fleet's batches ask it of
        every GPU)."""
        width = self.width.get((node, pci), 16.0)
        rate = _GT_PER_LANE.get(self.generation.get((node, pci), 5), 32.0)
        limit = self._limits[(node, pci)] = (
            self.config.replays_per_minute * (width / 16.0) * (rate / 32.0)
        )
        return limit

    def _finding(self, incident: Incident) -> Finding:
        node, pci = incident.key
        attrs = incident.attrs
        parts = []
        if attrs.get("uncorrected"):
            parts.append(f"{attrs['uncorrected']} uncorrected")
        if attrs.get("corrected"):
            parts.append(f"{attrs['corrected']} corrected")
        what = f"{' and '.join(parts)} AER error(s)" if parts else "PCIe replays"
        if attrs.get("replays"):
            limit = self._replay_limit(node, pci)
            what += f", {attrs['replays']:.0f} replays/min (limit {limit:.1f} for this link)"
        width = self.width.get((node, pci))
        if width is not None and width < 16:
            what += f"; link trained at x{width:.0f}"
        action = Action.INSPECT_PCIE
        advice = "reseat, check riser and slot"
        if attrs.get("recovery_failed"):
            action = Action.REBOOT_NODE
            what += ", AER recovery failed"
            advice = "the device is unusable until the node reboots; then inspect the slot"
        summary = f"PCIe link of {pci} on {node}: {what} -> {advice}"
        return make_finding(
            self.name,
            incident,
            attrs["severity"],
            action,
            summary,
            {"node": node, "pci": pci},
        )

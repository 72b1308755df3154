"""thermal_throttle: a GPU slowed down by heat, and whether it is that GPU's cooling.

Pattern
    Per GPU, clocks-event samples are judged in windows of ``window_s``. A sample is
    thermal when it has the HW thermal (0x40) or SW thermal (0x20) slowdown bit, or
    HW slowdown (0x8) while the GPU is at ``hot_c`` or more. A GPU thermal in at least
    ``min_fraction`` of at least ``min_samples`` samples of a window is throttling:

    * a warning, ``check_cooling``;
    * when its node peers (GPUs of the same node sampled in the same window) are not
      throttling, the finding says the cooling fault is that GPU's (its fan, heat sink
      or the air to it); when they all are, it is the node's.

    Fewer than ``min_samples`` samples (one ``nvidia-smi -q`` snapshot, the usual thing
    an operator has; a sample without a time) that are thermal give the same warning,
    ``check_cooling``, said to be *unconfirmed*: one sample cannot tell a sustained
    slowdown from a moment's. A sustained window of the same GPU later confirms it (the
    same incident, its summary upgraded).

    Idle (0x1) and SW power cap (0x4) are how a GPU rests and how it runs at full
    load: never findings.

Lifetime
    A GPU's window is judged (closed) when the GPU's next sample falls in a later
    window, once it has had no sample for ``window_s``, or at the end of input. A GPU
    (temperature, names) is forgotten once it has had no sample for
    ``forget_gpu_after_s`` (default 1 h: a temperature that old says nothing); a
    node's judged windows once none of its GPUs has a window open; an incident once it
    has not changed for three windows (its two-window gap, and the window a verdict
    can lag its samples) while its GPU has no window open. Time is the ``flush`` clock
    (see ``base``: "Forgetting").

Evidence
    The first and last thermal samples (``file:line``, reason bitmask).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np

from fleetwatch.detectors.base import (
    UNTIMED,
    Incident,
    IncidentBook,
    Span,
    describe,
    expire,
    last_of_each,
    make_finding,
    pack,
    runs,
)
from fleetwatch.detectors.state import Stateful, register
from fleetwatch.events import KIND_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity

# NumPy scalars: a Python int operand costs a conversion on every use with an array
_THERMAL_BITS: Final = np.int64(0x40 | 0x20)
_HW_SLOWDOWN: Final = np.int64(0x8)
_CLOCK_EVENT: Final = np.int8(KIND_ID["clock_event"])
_TEMPERATURE: Final = np.int8(KIND_ID["temperature"])
_NO_STRING: Final = np.int32(-1)  # an absent string id, as the column's type


@dataclass(frozen=True)
class Config:
    """Thresholds of thermal_throttle."""

    window_s: float = 300.0
    """Samples are judged in windows this long."""
    min_fraction: float = 0.5
    """Share of a window's samples that must be thermal."""
    min_samples: int = 5
    """Fewer samples in a window say nothing."""
    hot_c: float = 85.0
    """HW slowdown at or above this temperature counts as thermal."""
    forget_gpu_after_s: float = 3600.0
    """A GPU without samples for this long is forgotten (its temperature and names)."""


@register
@dataclass
class _Window:
    start: float
    samples: int = 0
    thermal: int = 0
    first: str | None = None
    last: str | None = None
    last_ts: float = 0.0
    seen: float | None = None  # the flush clock at its last sample; None: since the last flush


def _ended(window: _Window, now: float | None, keep: float) -> bool:
    """Whether ``window`` is over at ``now`` (None: the input ended); a window changed
    since the last flush is stamped ``now``."""
    if now is None:
        return True
    if window.seen is None:
        window.seen = now
        return False
    return now - window.seen > keep


class ThermalThrottle(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "thermal_throttle"
    description: ClassVar[str] = "sustained thermal slowdown, and whether it is one GPU's cooling"
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({"clock_event", "temperature"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.window_s * 2)
        self.temperature: dict[tuple[str, str], float] = {}
        self.windows: dict[tuple[str, str], _Window] = {}
        # node -> window start -> gpu -> (its window, its incident when throttling)
        self.verdicts: dict[str, dict[float, dict[str, tuple[_Window, Incident | None]]]] = {}
        self.identity: dict[tuple[str, str], dict[str, object]] = {}
        # (node, pci) -> the flush clock at its last sample; None: since the last flush
        self.seen: dict[tuple[str, str], float | None] = {}

    def process(self, batch: EventBatch) -> list[Finding]:
        kind, pci, ts = batch["kind"], batch["pci"], batch["ts"]
        on_gpu = pci > _NO_STRING
        temps = np.flatnonzero((kind == _TEMPERATURE) & on_gpu)
        if temps.size:
            self._note_temperatures(batch, temps)
        events = (kind == _CLOCK_EVENT) & on_gpu
        untimed = np.flatnonzero(events & np.isnan(ts))
        out: dict[str, Finding] = {}
        if untimed.size:
            for finding in self._snapshots(batch, untimed):
                out[finding.id] = finding
        rows = np.flatnonzero(events & ~np.isnan(ts))
        if rows.size == 0:
            return list(out.values())
        size = self.config.window_s
        # each GPU's samples in time order
        chunk = pack(batch["node"][rows], pci[rows])
        order = np.lexsort((ts[rows], chunk))
        rows, chunk = rows[order], chunk[order]
        times = ts[rows]
        window_of = np.floor(times / size) * size
        starts, ends = runs(chunk)
        keys, hot = self._gpus(batch, rows, starts, ends)
        # HW slowdown counts as thermal only while the GPU is hot
        reasons = batch["value"][rows].astype(np.int64)
        thermal = (reasons & _THERMAL_BITS).astype(bool)
        thermal |= (reasons & _HW_SLOWDOWN).astype(bool) & hot
        # a GPU's samples, in time order, split where the window changes
        edges = np.ones(rows.size + 1, dtype=bool)
        np.not_equal(window_of[1:], window_of[:-1], out=edges[1:-1])
        edges[starts] = True  # a GPU's first sample opens a piece too
        bounds = np.flatnonzero(edges)
        piece_starts, piece_ends = bounds[:-1], bounds[1:]
        gpu_of = np.searchsorted(starts, piece_starts, side="right") - 1
        thermal_of = np.add.reduceat(thermal, piece_starts)  # thermal samples per piece
        window_starts, last_ts = window_of[piece_starts], times[piece_ends - 1]
        # Per piece, only small ints from tolist (shared objects) and floats read one by
        # one (item): a window's last time replaced just before is handed out again by
        # CPython, where a tolist ahead would allocate them all.
        for i, g, samples, hits in zip(
            range(piece_starts.size),  # not enumerate: zip then reuses its tuple
            gpu_of.tolist(),
            (piece_ends - piece_starts).tolist(),
            thermal_of.tolist(),
            strict=True,
        ):
            thermal_rows = None
            if hits:
                start, end = piece_starts.item(i), piece_ends.item(i)
                thermal_rows = rows[start:end][thermal[start:end]]
            for finding in self._add(
                batch, keys[g], window_starts.item(i), last_ts.item(i), samples, thermal_rows
            ):
                out[finding.id] = finding
        return list(out.values())

    def _note_temperatures(self, batch: EventBatch, rows: np.ndarray) -> None:
        """Remember each GPU's latest temperature (HW slowdown is thermal while hot)."""
        latest = rows[last_of_each(pack(batch["node"][rows], batch["pci"][rows]))]
        strings, values = batch.strings, batch["value"][latest]
        for i, node, pci in zip(
            range(latest.size),  # not enumerate: zip then reuses its tuple
            batch["node"][latest].tolist(),
            batch["pci"][latest].tolist(),
            strict=True,
        ):
            gpu = (strings[node], strings[pci])
            self.temperature[gpu] = values.item(i)  # the float it replaces is reused
            self.seen[gpu] = None

    def _gpus(
        self, batch: EventBatch, rows: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[list[tuple[str, str]], np.ndarray]:
        """Each GPU's key (its samples are ``rows[start:end]``), noted as seen and named;
        and which samples are of a GPU that is hot."""
        keys = []
        hot = np.zeros(starts.size, dtype=bool)
        strings = batch.strings
        firsts = rows[starts]
        for i, node, pci in zip(
            range(starts.size),  # not enumerate: zip then reuses its tuple
            batch["node"][firsts].tolist(),
            batch["pci"][firsts].tolist(),
            strict=True,
        ):
            key = (strings[node], strings[pci])
            keys.append(key)
            self.seen[key] = None
            if key not in self.identity:
                first = firsts.item(i)
                self.identity[key] = {
                    "gpu": batch.value("gpu", first),
                    "uuid": batch.value("uuid", first),
                }
            hot[i] = self.temperature.get(key, 0.0) >= self.config.hot_c
        return keys, np.repeat(hot, ends - starts)

    def flush(self, now: float | None) -> list[Finding]:
        out: dict[str, Finding] = {}
        for key in [k for k, w in self.windows.items() if _ended(w, now, self.config.window_s)]:
            for finding in self._close(key):
                out[finding.id] = finding
        if now is None:
            return list(out.values())
        # a window reaches the book when judged, up to a window after its samples
        self.book.close(now, self.config.window_s, busy=self.windows)
        for gpu in expire(self.seen, now, self.config.forget_gpu_after_s):
            self.temperature.pop(gpu, None)
            self.identity.pop(gpu, None)
        judging = {node for node, _ in self.windows}
        for node in [n for n in self.verdicts if n not in judging]:
            del self.verdicts[node]  # a window it opens later is judged afresh
        return list(out.values())

    def size(self) -> int:
        judged = sum(len(by_start) for by_start in self.verdicts.values())
        return len(self.book.open) + len(self.windows) + len(self.seen) + judged

    def restore(self, saved: dict[str, Any]) -> None:
        super().restore(saved)
        for gpu in (*self.temperature, *self.identity):
            self.seen.setdefault(gpu, None)  # saved before GPUs had stamps: from now on

    def _thermal(self, key: tuple[str, str], reasons: np.ndarray) -> np.ndarray:
        """Which samples of one GPU are thermal (HW slowdown counts only while it is hot)."""
        hot = self.temperature.get(key, 0.0) >= self.config.hot_c
        thermal: np.ndarray = ((reasons & _THERMAL_BITS) != 0) | (
            ((reasons & _HW_SLOWDOWN) != 0) & hot
        )
        return thermal

    def _snapshots(self, batch: EventBatch, rows: np.ndarray) -> list[Finding]:
        """Samples without a time (a fragment of a report): each GPU's, judged at once."""
        findings = []
        for start, end in zip(*runs(pack(batch["node"][rows], batch["pci"][rows])), strict=True):
            members = rows[start:end]
            first = int(members[0])
            key = (batch.strings[batch["node"][first]], batch.strings[batch["pci"][first]])
            self.identity.setdefault(
                key, {"gpu": batch.value("gpu", first), "uuid": batch.value("uuid", first)}
            )
            thermal = self._thermal(key, batch["value"][members].astype(np.int64))
            if thermal.sum() < self.config.min_fraction * members.size:
                continue
            window = _Window(start=float("nan"), samples=int(members.size))
            hits = members[thermal]
            window.thermal = int(hits.size)
            window.first, window.last = (
                describe(batch, int(hits[0])),
                describe(batch, int(hits[-1])),
            )
            incident, _ = self.book.touch(key, UNTIMED, window.thermal, window.first, window.last)
            findings.append(self._finding(key[0], key[1], {key[1]: (window, incident)}))
        return findings

    def _add(
        self,
        batch: EventBatch,
        key: tuple[str, str],
        window_start: float,
        last_ts: float,
        samples: int,
        hits: np.ndarray | None,
    ) -> list[Finding]:
        """Count one GPU's samples of one window (``hits``: the thermal ones, None when
        none is); close the window before it if open."""
        findings: list[Finding] = []
        window = self.windows.get(key)
        if window is not None and window.start != window_start:
            findings = self._close(key)
            window = None
        if window is None:
            window = self.windows[key] = _Window(start=window_start)
        window.samples += samples
        window.seen = None
        window.last_ts = last_ts
        if hits is not None:
            window.thermal += int(hits.size)
            window.first = window.first or describe(batch, int(hits[0]))
            window.last = describe(batch, int(hits[-1]))
        return findings

    def _close(self, key: tuple[str, str]) -> list[Finding]:
        """Judge a GPU's window; re-judge its node's throttling GPUs of that window."""
        window = self.windows.pop(key)
        node, pci = key
        sustained = window.samples >= self.config.min_samples
        throttling = window.thermal > 0 and (
            window.thermal >= self.config.min_fraction * window.samples
        )
        incident = None
        if throttling:
            # clock-event samples (nvidia-smi, DCGM, NVML) carry wall-clock times
            when = Span(window.start, window.last_ts, "wall")
            incident, _ = self.book.touch(key, when, window.thermal, window.first, window.last)
            if sustained:
                incident.attrs["sustained"] = True
        if not sustained:  # too few samples to be anyone's peer
            return [] if incident is None else [self._finding(node, pci, {pci: (window, incident)})]
        by_start = self.verdicts.setdefault(node, {})
        for old in [t for t in by_start if t < window.start - 2 * self.config.window_s]:
            del by_start[old]  # state stays bounded by GPUs, not by time
        judged = by_start.setdefault(window.start, {})
        judged[pci] = (window, incident)
        return [
            self._finding(node, gpu, judged) for gpu, (_, inc) in judged.items() if inc is not None
        ]

    def _finding(
        self, node: str, pci: str, judged: dict[str, tuple[_Window, Incident | None]]
    ) -> Finding:
        window, incident = judged[pci]
        assert incident is not None
        others = [inc is not None for gpu, (_, inc) in judged.items() if gpu != pci]
        if others and not any(others):
            where = (
                f"its {len(others)} node peer(s) are not: a cooling fault on this GPU "
                f"(fan, heat sink, airflow)"
            )
        elif others:
            where = "its node peers throttle too: check the node's cooling"
        else:
            where = "no node peers sampled to compare"
        share = window.thermal / window.samples
        if incident.attrs.get("sustained"):
            summary = (
                f"GPU {pci} of {node} in thermal slowdown {share:.0%} of "
                f"{window.samples} samples over {self.config.window_s:.0f} s; {where}"
            )
        else:
            summary = (
                f"GPU {pci} of {node} in thermal slowdown in {window.thermal} of "
                f"{window.samples} sample(s): unconfirmed (too few to tell a sustained "
                f"slowdown from a moment's); check its cooling"
            )
        identity = self.identity.get((node, pci), {})
        return make_finding(
            self.name,
            incident,
            Severity.WARNING,
            Action.CHECK_COOLING,
            summary,
            {"node": node, "pci": pci, "gpu": identity.get("gpu"), "uuid": identity.get("uuid")},
        )

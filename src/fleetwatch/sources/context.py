"""What readers share while reading: options, counters, learned identities, the batch.

* ``ReadOptions``: the user's ``--node``, ``--year``, ``--tz`` and line-size limit.
* ``ReadStats``: lines read, events emitted, and unreadable records counted per reader
  and reason. Bad input is never silent: the CLI prints ``summary()`` on stderr.
* ``Identities``: the PCI -> (UUID, serial, index) map of each node, learned from the
  records that tell it (``NVRM: GPU at PCI:…``, nvidia-smi, dcgm labels) and
  forgotten when the node reboots, since the same slot can hold another GPU after a
  swap.
* ``FileContext``: one input file's view of all that, and ``emit`` to add an event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final
from zoneinfo import ZoneInfo

from fleetwatch.events import BATCH_SIZE, BadRecord, BatchBuilder, EventBatch
from fleetwatch.timestamps import TimeRules

MAX_LINE_BYTES: Final = 1 << 20
# 2 MiB: the line carried over joined to a chunk, and each chunk read, cost a sixth of
# this as much as at 8 MiB (fresh pages each time; at this size the allocator reuses
# its own), 0.19 s against 0.03 s per 187 MB of kernel log; a line may be 1 MiB
CHUNK_BYTES: Final = 2 << 20


def failure_reason(error: BaseException) -> str:
    """What a reader's exception says about the record, in the words stats count."""
    if isinstance(error, RecursionError):
        return "too deep"
    if isinstance(error, OverflowError):
        return "out of range"
    if isinstance(error, MemoryError):
        return "too large"
    return f"reader failed ({type(error).__name__})"


@dataclass(frozen=True)
class ReadOptions:
    """How to read inputs; every field has the default a user gets without flags."""

    node: str | None = None
    """Node name for records that name none (``--node``)."""
    year: int | None = None
    """Year for stamps without one (``--year``); default: the file's modification time."""
    zone: ZoneInfo | None = None
    """Zone for stamps without one (``--tz``); default: this machine's local time."""
    max_line_bytes: int = MAX_LINE_BYTES
    """Longer lines are skipped and counted as unreadable."""
    chunk_bytes: int = CHUNK_BYTES
    """How much of a file is read at a time (``CHUNK_BYTES`` says why this much)."""


@dataclass
class ReadStats:
    """Counts of what was read, and of what could not be, by reader and reason."""

    files: int = 0
    lines: int = 0
    events: int = 0
    unreadable: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    boot_anchors: dict[str, float] = field(default_factory=dict)
    """Per node, wall time minus boot time, from lines that carry both stamps."""
    file_nodes: dict[str, str] = field(default_factory=dict)
    """Nodes named after a file (or stdin) for want of any other name -> that input."""

    def bad(self, reader: str, reason: str, count: int = 1) -> None:
        """Count ``count`` unreadable records of ``reader`` for ``reason``."""
        self.unreadable[reader, reason] += count

    def failed(self, reader: str, error: Exception) -> None:
        """Count a record whose reader raised: the record is lost, never its neighbours."""
        self.bad(reader, failure_reason(error))

    def skip(self, reader: str, reason: str, count: int = 1) -> None:
        """Count ``count`` records that were read but carry no value (a DCGM blank)."""
        self.skipped[reader, reason] += count

    def merge(self, later: ReadStats) -> None:
        """Add what ``later`` counted, as if its inputs had been read after these: the
        last boot anchor of a node wins, the first file that named a node stays."""
        self.files += later.files
        self.lines += later.lines
        self.events += later.events
        self.unreadable.update(later.unreadable)
        self.skipped.update(later.skipped)
        self.boot_anchors.update(later.boot_anchors)
        for node, name in later.file_nodes.items():
            self.file_nodes.setdefault(node, name)

    def summary(self) -> str:
        """One line for stderr: totals, then unreadable records by reader and reason."""
        line = f"read {self.files} file(s), {self.lines:,} lines, {self.events:,} events"
        if self.skipped:  # read, but nothing to keep: a DCGM blank, a section we skip
            parts = ", ".join(
                f"{reader} {reason}: {n:,}" for (reader, reason), n in sorted(self.skipped.items())
            )
            line += f", {sum(self.skipped.values()):,} skipped ({parts})"
        if not self.unreadable:
            return line + "; no unreadable records"
        parts = ", ".join(
            f"{reader} {reason}: {n:,}" for (reader, reason), n in sorted(self.unreadable.items())
        )
        total = sum(self.unreadable.values())
        return f"{line}; {total:,} unreadable ({parts})"


@dataclass
class GpuIdentity:
    """What is known of the GPU in one slot of one node."""

    uuid: str | None = None
    serial: str | None = None
    gpu: int | None = None
    version: int = field(default=0, compare=False, repr=False)
    """Counts its changes, and its end (another GPU in the slot, the node rebooted):
    what was filled in from it holds while this stands."""


class Identities:
    """PCI address -> GPU identity, per node, for the node's current boot."""

    def __init__(self) -> None:
        self._by_node: dict[str, dict[str, GpuIdentity]] = {}

    def learn(
        self,
        node: str,
        pci: str,
        uuid: str | None = None,
        serial: str | None = None,
        gpu: int | None = None,
    ) -> GpuIdentity:
        """Record what a record told about the GPU at ``pci`` on ``node``."""
        slots = self._by_node.get(node)
        if slots is None:  # not setdefault: it would make an empty dict on every call
            slots = self._by_node[node] = {}
        known = slots.get(pci)
        if known is None or (uuid is not None and known.uuid not in (None, uuid)):
            if known is not None:
                known.version += 1  # no longer this slot's
            known = slots[pci] = GpuIdentity()  # a new GPU in this slot
        if uuid is not None and known.uuid != uuid:
            known.uuid = uuid
            known.version += 1
        if serial is not None and known.serial != serial:
            known.serial = serial
            known.version += 1
        if gpu is not None and known.gpu != gpu:
            known.gpu = gpu
            known.version += 1
        return known

    def lookup(self, node: str, pci: str) -> GpuIdentity | None:
        """What is known of ``pci`` on ``node``, if anything."""
        slots = self._by_node.get(node)
        return None if slots is None else slots.get(pci)

    def reboot(self, node: str) -> None:
        """Forget ``node``'s GPUs: after a reboot a slot may hold another one."""
        for known in self._by_node.pop(node, {}).values():
            known.version += 1  # forgotten


class FileContext:
    """One input's reading state: its name, node, clocks, and the batch being built."""

    def __init__(
        self,
        name: str,
        fallback_node: str,
        options: ReadOptions,
        stats: ReadStats,
        identities: Identities,
        builder: BatchBuilder,
        reference_time: float,
    ) -> None:
        self.name = name
        self.node = options.node or fallback_node
        self.options = options
        self.stats = stats
        self.identities = identities
        self.builder = builder
        self.rules = TimeRules(year=options.year, zone=options.zone, reference=reference_time)
        self.ready: list[EventBatch] = []
        self.last_boot_ts: dict[str, float] = {}
        self.last_identity_pci: str | None = None  # for a serial line after "GPU at"
        self.memo: dict[str, Any] = {}  # a reader's own memory of this file, by reader name
        self.job: str | None = None  # the folder of the logs (files.expand), for NCCL
        self.node_is_file_name = False  # self.node is the file's name: note where used

    def emit(self, fields: dict[str, Any]) -> bool:
        """Add one event (True: added). ``fields`` needs kind, source, line; the rest as
        known.

        Fills the node, and the GPU's UUID, serial and index from what was learned of
        its PCI address on that node. A value no column can hold (an Xid code past
        2^63) is counted as unreadable, ``out of range``, and the event is dropped.
        """
        node = fields.get("node")
        if node is None:
            node = fields["node"] = self.node
        if self.node_is_file_name and node == self.node:  # readers may pass it themselves
            self.stats.file_nodes.setdefault(node, self.name)
        pci = fields.get("pci")
        if pci is not None:
            known = self.identities.lookup(node, pci)
            if known is not None:
                if fields.get("uuid") is None:
                    fields["uuid"] = known.uuid
                if fields.get("serial") is None:
                    fields["serial"] = known.serial
                if fields.get("gpu") is None:
                    fields["gpu"] = known.gpu
        fields.setdefault("file", self.name)
        try:
            self.builder.add(fields)
        except BadRecord as exc:  # a value no column holds: this record alone is lost
            self.stats.bad(str(fields.get("source", "reader")), exc.reason)
            return False
        self.stats.events += 1
        if len(self.builder) >= BATCH_SIZE:
            self.ready.append(self.builder.seal())
        return True

    def added_in_place(self, events: int) -> None:
        """``events`` more events were written into the builder's columns in place (the
        compiled kernel-record loop): counted, and a full batch sealed, as ``emit`` does."""
        self.builder.added_in_place(events)
        self.stats.events += events
        if len(self.builder) >= BATCH_SIZE:
            self.ready.append(self.builder.seal())

    def take(self) -> list[EventBatch]:
        """Every batch emitted and not yet taken, the builder's partial one sealed too."""
        batches = list(self.ready)
        self.ready.clear()
        if len(self.builder):
            batches.append(self.builder.seal())
        return batches

    def saw_boot_clock(self, node: str, ts: float) -> None:
        """Note a boot-clock stamp; a clock that runs backwards means the node rebooted."""
        last = self.last_boot_ts.get(node)
        if last is not None and ts + 1.0 < last:
            self.identities.reboot(node)
        self.last_boot_ts[node] = ts

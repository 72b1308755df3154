"""Reading inputs in parallel processes: the same events, in the same order (``--jobs``).

``read_paths`` reads its inputs one after another on one core. ``read_parallel``
cuts ``expand``'s inputs into **groups**, each a run of consecutive files of one
folder (one node's logs, as collected), reads each group in a worker process, and
yields the groups' batches in group order: the events ``read_paths`` gives, in the
same order, with the counts merged as if read in order (``ReadStats.merge``).

One thing crosses files: what readers learn of a GPU (its UUID, serial, index by PCI
address, per node: ``Identities``) fills in the records of later files, a job's NCCL
log taking the UUID a node's dcgm scrape gave. A worker starts knowing nothing, and
records what it learned (in order) and which GPUs it looked up. This process keeps
what every group before has learned. A group that looked up a GPU known before it,
and knew less of it then than sequential reading would have (``_diverged``), is read
again here, with that knowledge (in a fleet's layout: a job's NCCL folder, a few
small files). Every other group's events are exactly the sequential ones.

Inputs under ``MIN_BYTES`` (16 MiB) are read in this process: starting workers
would cost more than it saves. At most ``2 * jobs`` groups are in flight, so memory
holds a few groups' events, not the input. A group's batches cross a pipe packed
(``_Packed``: each field one array for the group, or one value where no row differs),
which costs less than reading them when there are many files: a fleet's folders.
One folder, one file, stdin (``-``) or ``jobs`` at most 1 read in this process, as
``read_paths`` does.

Workers are forked: they start with this process's readers (the compiled kernel-record
loop included) without importing anything again.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import FIELDS, EventBatch
from fleetwatch.sources.context import GpuIdentity, Identities, ReadOptions, ReadStats
from fleetwatch.sources.files import Input, expand, read_items

MIN_BYTES: Final = 16 << 20
"""Inputs smaller than this are read in one process (a pool's start costs ~0.1 s)."""


def _size(cut: list[list[Input]]) -> int:
    total = 0
    for group in cut:
        for item in group:
            if item.path is not None and item.unreadable is None:
                with contextlib.suppress(OSError):
                    total += item.path.stat().st_size
    return total


def default_jobs() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def groups(items: list[Input]) -> list[list[Input]]:
    """Runs of consecutive inputs of one folder (stdin: a group of its own)."""
    out: list[list[Input]] = []
    last: object = object()
    for item in items:
        folder = None if item.path is None else item.path.parent
        if out and folder == last and folder is not None:
            out[-1].append(item)
        else:
            out.append([item])
        last = folder
    return out


class _Recording(Identities):
    """Identities that remember what was learned, in order, and which GPUs were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[Any, ...]] = []
        self.first: dict[tuple[str, str], int] = {}  # GPU -> len(ops) at its first lookup
        self._last: dict[tuple[str, str], tuple[Any, ...]] = {}  # a repeat adds nothing

    def learn(
        self,
        node: str,
        pci: str,
        uuid: str | None = None,
        serial: str | None = None,
        gpu: int | None = None,
    ) -> GpuIdentity:
        op = ("learn", node, pci, uuid, serial, gpu)
        if self._last.get((node, pci)) != op:
            self._last[(node, pci)] = op
            self.ops.append(op)
        return super().learn(node, pci, uuid, serial, gpu)

    def lookup(self, node: str, pci: str) -> GpuIdentity | None:
        self.first.setdefault((node, pci), len(self.ops))
        return super().lookup(node, pci)

    def reboot(self, node: str) -> None:
        self.ops.append(("reboot", node))
        self._last = {key: op for key, op in self._last.items() if key[0] != node}
        super().reboot(node)


@dataclass
class _Packed:
    """A group's batches as they cross the pipe: each field of every batch in one
    array, or one value where all its rows hold the same bits (a field no event of the
    group has). Pickled batch by batch, a fleet's events cost as much to send and take
    as to read: 28 arrays a batch, each with its own pickling, and most of them
    "absent" all through."""

    sizes: list[int]
    tables: list[tuple[str, ...]]
    columns: dict[str, npt.NDArray[Any] | np.generic]

    @classmethod
    def of(cls, batches: list[EventBatch]) -> _Packed:
        columns: dict[str, npt.NDArray[Any] | np.generic] = {}
        for name in FIELDS if batches else ():
            whole = np.concatenate([batch.columns[name] for batch in batches])
            bits = whole.view(f"u{whole.dtype.itemsize}")  # NaN is NaN, -0.0 not 0.0
            columns[name] = whole[0] if whole.size and (bits == bits[0]).all() else whole
        return cls([len(batch) for batch in batches], [b.strings for b in batches], columns)

    def batches(self) -> Iterator[EventBatch]:
        """The batches again, each field a contiguous slice (or a new array) of its own."""
        start = 0
        for size, table in zip(self.sizes, self.tables, strict=True):
            end = start + size
            yield EventBatch(
                {
                    name: np.full(size, column, dtype=column.dtype)
                    if isinstance(column, np.generic)
                    else column[start:end]
                    for name, column in self.columns.items()
                },
                table,
            )
            start = end


@dataclass
class _Group:
    """What a worker read of one group."""

    events: _Packed
    stats: ReadStats
    ops: list[tuple[Any, ...]]
    first: dict[tuple[str, str], int]


def _die_with_parent(parent: int) -> None:
    """A worker does not outlive its parent, however the parent ends (SIGTERM, kill -9):
    Linux's parent-death signal; elsewhere the pool's own shutdown."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)


_PR_SET_PDEATHSIG: Final = 1


def _read_group(items: list[Input], options: ReadOptions) -> _Group:
    stats, identities = ReadStats(), _Recording()
    batches = list(read_items(items, options, stats, identities))
    return _Group(_Packed.of(batches), stats, identities.ops, identities.first)


def _diverged(known: Identities, read: _Group) -> bool:
    """Could ``known`` (what the groups before learned) have filled in a record of this
    group otherwise than the worker, which started knowing nothing?

    For a GPU known before, sequential reading and the worker hold two states that the
    same learns and reboots move alike; once equal they stay equal. So it is enough to
    compare them at the GPU's first lookup: the state before, moved by the group's ops
    up to then, against the worker's, moved from nothing by the same ops.
    """
    for (node, pci), at in read.first.items():
        before = known.lookup(node, pci)
        if before is None:
            continue
        sequential, alone = Identities(), Identities()
        sequential.learn(node, pci, before.uuid, before.serial, before.gpu)
        for name, *args in read.ops[:at]:
            if (name == "reboot" and args[0] == node) or (
                name == "learn" and args[:2] == [node, pci]
            ):
                getattr(sequential, name)(*args)
                getattr(alone, name)(*args)
        if sequential.lookup(node, pci) != alone.lookup(node, pci):
            return True
    return False


def read_parallel(
    paths: list[str],
    options: ReadOptions | None = None,
    stats: ReadStats | None = None,
    jobs: int = 1,
    min_bytes: int | None = None,
) -> Iterator[EventBatch]:
    """What ``read_paths(paths, options, stats)`` yields, read by ``jobs`` processes
    when the inputs hold at least ``min_bytes`` (default ``MIN_BYTES``; less is read
    here: starting workers would cost more than it saves).

    Raises ``InputError`` for a path that does not exist before anything is read, and
    for a file that cannot be read when its group's turn comes.
    """
    options = options or ReadOptions()
    stats = stats if stats is not None else ReadStats()
    cut = groups(expand(paths))
    least = MIN_BYTES if min_bytes is None else min_bytes
    alone = jobs <= 1 or len(cut) <= 1 or _size(cut) < least
    if alone or any(item.path is None for group in cut for item in group):
        yield from read_items([item for group in cut for item in group], options, stats)
        return
    known = Identities()  # what every group read so far has learned
    context = mp.get_context("fork")
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(cut)),
        mp_context=context,
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )
    try:
        waiting: deque[tuple[list[Input], Future[_Group]]] = deque()
        pending = iter(cut)
        for group in pending:
            waiting.append((group, pool.submit(_read_group, group, options)))
            if len(waiting) >= 2 * jobs:
                break
        while waiting:
            group, future = waiting.popleft()
            read = future.result()
            following = next(pending, None)
            if following is not None:
                waiting.append((following, pool.submit(_read_group, following, options)))
            if _diverged(known, read):
                yield from read_items(group, options, stats, known)  # again, knowing more
                continue
            for name, *args in read.ops:
                getattr(known, name)(*args)
            stats.merge(read.stats)
            yield from read.events.batches()
    finally:  # a reader that stops early (| head, an error) waits for no queued group
        pool.shutdown(wait=True, cancel_futures=True)

"""Replay: every input merged in time order, through the pattern library.

The order is the one sorting all events at once gives: boot-clock events first, then
wall-clock events, each by time; events without a time last, in file order; events at
the same time in file order, then line order. Events outside ``--since``/``--until``
or of another node than ``--only-node`` are dropped, and the rest go to the engine in
batches of ``BATCH_SIZE``, exactly as a live stream would feed them.

Boot-clock stamps (plain dmesg) are seconds since that node booted. Where any line of
the node carries both stamps (syslog or journal kernel lines with ``[ 1843.30]``
inside), the node's offset anchors its boot-clock events to wall time. Without an
anchor they keep their order among themselves and sort before wall-clock events. The
anchor is the node's latest; events from an earlier boot of the same node would need
that boot's own anchor, which a boot-clock stamp cannot name.

Memory holds the detectors' state and a bounded window of events, not the input, in
two passes over the events (the inputs themselves are read once):

1. **Spill.** Events are read in file order, a chunk of ``Limits.spill_events`` at a
   time. Each chunk is cut in parts, each sorted and written to a temporary file
   (``spill.py``): its wall-clock and untimed events, of every file, are one part (their
   keys are final as read); its boot-clock events one part per file and node (their
   node's anchor is known only at the end). A part that sorts after the last one of its
   kind (of its file and node) extends that run: a log written in time order is one
   run, and a fleet of files read one after another is a run per chunk, not per file.
2. **Merge.** Only once every input is read are the anchors final: the earliest event
   may be a boot-clock line of the last file, and a node's anchor may come from any
   file. Then each run is read back a piece at a time, anchored, filtered, and the
   runs are merged (``merge.py``) into the order above, ``Limits.fan_in`` at most at
   once: more runs are first merged in groups into longer runs on disk.

The trade-offs: the spill file takes about 150 bytes of disk (``$TMPDIR``) per event,
twice over when there are more than ``fan_in`` runs, instead of as much again in
memory; the string table (node names, GPU ids, details: distinct strings, not events)
stays in memory, which keeps every batch the engine sees the same, ids and all, as
the one-sort replay fed it. Anchoring a run of boot-clock events moves it by one
offset, which keeps its order, but may make two close boot times equal; such ties are
put back in read order before they are merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.config import build
from fleetwatch.engine import Engine
from fleetwatch.events import BATCH_SIZE, CLOCK_ID, STRING_FIELDS, EventBatch
from fleetwatch.findings import Finding
from fleetwatch.merge import Keyed, join, merge, sort_key
from fleetwatch.records import Records, fields, to_batch, to_records
from fleetwatch.sources import ReadOptions, ReadStats
from fleetwatch.sources.parallel import read_parallel
from fleetwatch.spill import Run, SpillFile

_WALL: Final = CLOCK_ID["wall"]
_BOOT: Final = CLOCK_ID["boot"]
_NOT_BOOT: Final = -2  # a run's node when its events are not on the boot clock
_ANY_FILE: Final = -1  # a part's file when it holds every file's events (step 1)

Mask = npt.NDArray[np.bool_]
Columns = EventBatch | npt.NDArray[Any]
"""Events by field name: a batch, or records' ``fields``."""


class EmptyWindow(ValueError):
    """A window that ends before it starts: no event could be in it."""


@dataclass(frozen=True)
class Window:
    """Which events to replay: a time range (epoch seconds) and a node.

    Raises ``EmptyWindow`` when ``since`` is after ``until``: a replay of nothing
    would say "no findings" of logs it never looked at.
    """

    since: float | None = None
    until: float | None = None
    node: str | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since > self.until:
            raise EmptyWindow(
                f"--since ({_utc(self.since)}) is after --until ({_utc(self.until)}): "
                "no event can be in between"
            )


def _utc(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):  # past year 9999
        return f"{ts:.0f}"


@dataclass(frozen=True)
class Limits:
    """How many events replay holds at once, besides the detectors' state."""

    spill_events: int = 32768
    """Events read before they are sorted and spilled (the largest holding)."""
    piece_events: int = 1024
    """Events read back from a run at a time; the merge holds one piece per run."""
    fan_in: int = 64
    """Runs merged at once; more are first merged into fewer, longer runs."""


def anchor(events: EventBatch, anchors: dict[str, float]) -> None:
    """Turn boot-clock times into wall times for the nodes with an anchor (in place)."""
    ids = {text: i for i, text in enumerate(events.strings)}
    _anchored(events, _offsets(anchors, ids, len(events.strings)))


def select(events: EventBatch, window: Window) -> EventBatch:
    """The events inside ``window``, in time order (all of them in memory: tests, bench)."""
    node_ids = [i for i, s in enumerate(events.strings) if s == window.node]
    rows = np.flatnonzero(_within(events, window, node_ids))
    rank, when = sort_key(events["clock"][rows], events["ts"][rows])
    return events.take(rows[np.lexsort((when, rank))])  # stable: ties keep read order


def _within(events: Columns, window: Window, node_ids: list[int]) -> Mask:
    """Which events ``window`` keeps; ``node_ids``: the string ids of ``window.node``."""
    keep = np.ones(len(events), dtype=bool)
    ts = events["ts"]
    wall = events["clock"] == _WALL
    if window.since is not None:
        keep &= ~wall | (ts >= window.since)
    if window.until is not None:
        keep &= ~wall | (ts <= window.until)
    if window.node is not None:
        keep &= np.isin(events["node"], node_ids)
    return keep


class _Strings:
    """One string table for every event read, in the order strings are first seen.

    The same table the one-sort replay built (``events.concat``), so the batches the
    engine sees are the same down to their string ids.
    """

    def __init__(self) -> None:
        self.table: list[str] = []
        self.ids: dict[str, int] = {}

    def adopt(self, batch: EventBatch) -> EventBatch:
        """``batch`` with its string ids turned into ids of this table."""
        ids = []
        for text in batch.strings:
            found = self.ids.get(text)
            if found is None:
                found = self.ids[text] = len(self.table)
                self.table.append(text)
            ids.append(found)
        remap = np.asarray([*ids, -1], dtype=np.int32)  # -1 (absent) stays -1
        columns = {
            name: remap[col] if name in STRING_FIELDS else col
            for name, col in batch.columns.items()
        }
        return EventBatch(columns, ())  # the table is complete only once all is read


class _Runs:
    """Step 1: the events as they are read, spilled in sorted runs (``runs``)."""

    def __init__(
        self, spill: SpillFile, chunk_events: int, held: Callable[[int], None] | None
    ) -> None:
        self.spill = spill
        self.runs: list[Run] = []
        self._open: dict[tuple[int, int], Run] = {}  # by group: the run a part may extend
        self._chunk: list[Records] = []
        self._count = 0  # events in the chunk
        self._read = 0  # events before it
        self._chunk_events = chunk_events
        self._held = held

    def add(self, events: EventBatch) -> None:
        """The next events read (string ids of the one table)."""
        start = self._read + self._count
        arrival = np.arange(start, start + len(events), dtype=np.int64)
        self._chunk.append(to_records(events, arrival))
        self._count += len(events)
        if self._count >= self._chunk_events:
            self.flush()

    def flush(self) -> None:
        """Sort the chunk's parts (step 1) by time and spill them.

        A boot-clock part is keyed by its boot times: its node's anchor, known only
        at the end, moves them all by one offset, which keeps their order.
        """
        if not self._count:
            return
        if self._held is not None:
            self._held(self._count)
        chunk = Keyed.of(np.concatenate(self._chunk))
        self._read += self._count
        self._chunk, self._count = [], 0
        named = fields(chunk.rows)
        boot = named["clock"] == _BOOT
        node = np.where(boot, named["node"], _NOT_BOOT).astype(np.int64)
        file = np.where(boot, named["file"], _ANY_FILE).astype(np.int64)
        order = np.lexsort((chunk.arrival, chunk.when, chunk.rank, node, file))
        file, node = file[order], node[order]
        starts = np.flatnonzero(np.r_[True, (file[1:] != file[:-1]) | (node[1:] != node[:-1])])
        for start, end in zip(starts, [*starts[1:], len(order)], strict=True):
            part = chunk.take(order[start:end])
            group = (int(file[start]), int(node[start]))
            run = self._open.get(group)
            if run is None or run.last is None or run.last > part.key(0):
                run = self._open[group] = Run(group)  # the part goes back in time
                self.runs.append(run)
            run.segments.append(self.spill.write(part.rows))
            run.last = part.key(len(part) - 1)


def _offsets(
    anchors: dict[str, float], ids: dict[str, int], strings: int
) -> npt.NDArray[np.float64]:
    """The anchor of each string id that names a node (NaN: none; the last: id -1)."""
    offsets = np.full(strings + 1, np.nan)
    for node, offset in anchors.items():
        found = ids.get(node)
        if found is not None:
            offsets[found] = offset
    return offsets


def _anchored(events: Columns, offsets: npt.NDArray[np.float64]) -> None:
    """Boot-clock times to wall times where the node's id has an offset (in place)."""
    boot = np.flatnonzero(events["clock"] == _BOOT)
    if not len(boot):
        return
    shift = offsets[events["node"][boot]]
    known = ~np.isnan(shift)
    boot = boot[known]
    events["ts"][boot] += shift[known]
    events["clock"][boot] = _WALL


@dataclass(frozen=True)
class _Reading:
    """What reading a run back needs: the spill, anchors and window."""

    spill: SpillFile
    offsets: npt.NDArray[np.float64]
    window: Window
    node_ids: list[int]
    piece_events: int

    def pieces(self, run: Run) -> Iterator[Keyed]:
        """``run``'s events, anchored and filtered, sorted, a piece at a time."""
        node = run.group[1]
        shifted = node != _NOT_BOOT and not np.isnan(self.offsets[node])
        held: Keyed | None = None  # a shifted run's last equal times, until they end
        for rows in self.spill.pieces(run, self.piece_events):
            _anchored(fields(rows), self.offsets)
            keep = _within(fields(rows), self.window, self.node_ids)
            piece = Keyed.of(rows if keep.all() else rows[keep])
            if not shifted:
                yield piece
                continue
            # Boot times that differ by less than a rounding of their sum with the
            # anchor become equal, and equal times go in read order: sort again, and
            # keep the last time's events back, as the next piece may have more of it.
            if held is not None:
                piece = join([held, piece])
            piece = piece.sorted()
            if not len(piece):
                continue
            last = (piece.rank == piece.rank[-1]) & (piece.when == piece.when[-1])
            held = piece.where(last)
            yield piece.where(~last)
        if held is not None:
            yield held


def _rechunk(pieces: Iterable[Keyed], size: int) -> Iterator[Keyed]:
    """``pieces`` cut and joined into pieces of ``size`` events (the last: the rest)."""
    parts: list[Keyed] = []
    count = 0
    for piece in pieces:
        parts.append(piece)
        count += len(piece)
        if count < size:
            continue
        whole = join(parts)
        full = count - count % size
        for start in range(0, full, size):
            yield whole.take(slice(start, start + size))
        parts = [whole.take(slice(full, count))] if count > full else []
        count -= full
    if count:
        yield join(parts)


def _narrow(
    runs: list[Run], reading: _Reading, fan_in: int, held: Callable[[int], None] | None
) -> list[Run]:
    """At most ``fan_in`` runs: groups of them merged into longer runs on disk."""
    while len(runs) > fan_in:
        longer: list[Run] = []
        for at in range(0, len(runs), fan_in):
            group = runs[at : at + fan_in]
            if len(group) == 1:
                longer.extend(group)
                continue
            merged = Run((-1, _NOT_BOOT))  # anchored and filtered already: read as is
            streams = [reading.pieces(run) for run in group]
            for piece in _rechunk(merge(streams, held), reading.piece_events):
                merged.segments.append(reading.spill.write(piece.rows))
            longer.append(merged)
        runs = longer
    return runs


def replay_batches(
    paths: Sequence[str],
    options: ReadOptions | None = None,
    window: Window | None = None,
    stats: ReadStats | None = None,
    progress: Callable[[int], None] | None = None,
    limits: Limits = Limits(),
    held: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> Iterator[EventBatch]:
    """The batches replay feeds the engine, in order (``jobs``: processes that read).

    ``held`` is told, each time it changes, how many events are held in memory by a
    step of the way (the chunk being spilled, the merge's pieces): tests check that it
    stays bounded whatever the input size.
    """
    stats = stats if stats is not None else ReadStats()
    window = window or Window()
    strings = _Strings()
    with SpillFile() as spill:
        spilled = _Runs(spill, limits.spill_events, held)
        for batch in read_parallel(list(paths), options, stats, jobs):
            if progress is not None:
                progress(len(batch))
            spilled.add(strings.adopt(batch))
        spilled.flush()
        # step 2: every input read, the anchors and the string table are final
        offsets = _offsets(stats.boot_anchors, strings.ids, len(strings.table))
        found = strings.ids.get(window.node) if window.node is not None else None
        node_ids = [] if found is None else [found]
        reading = _Reading(spill, offsets, window, node_ids, limits.piece_events)
        runs = _narrow(spilled.runs, reading, limits.fan_in, held)
        merged = merge([reading.pieces(run) for run in runs], held)
        table = tuple(strings.table)
        for piece in _rechunk(merged, BATCH_SIZE):
            yield to_batch(piece.rows, table)


def replay(
    paths: Sequence[str],
    configs: dict[str, Any],
    options: ReadOptions | None = None,
    window: Window | None = None,
    stats: ReadStats | None = None,
    progress: Callable[[int], None] | None = None,
    observe: Callable[[EventBatch], None] | None = None,
    jobs: int = 1,
) -> list[Finding]:
    """The findings of ``paths``, most severe first; ``observe`` sees each batch the
    engine sees (the report's timeline counts them); ``jobs``: processes that read."""
    engine = Engine(build(configs))
    for events in replay_batches(paths, options, window, stats, progress, jobs=jobs):
        engine.process(events)
        if observe is not None:
            observe(events)
    return engine.finish()

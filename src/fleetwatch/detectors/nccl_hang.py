"""nccl_hang: a collective that stopped, and the rank that stopped it.

Pattern
    Per job (its NCCL communicator, or the folder of its logs when no job id is
    known), the detector gathers every rank's ``Init COMPLETE`` (rank -> host, GPU,
    PCI address, world size), watchdog timeouts and progress records. Once a rank
    times out:

    * the culprit is the rank whose last completed sequence number lags the others
      (it never finished the collective they are all waiting in), or a rank that never
      reports while the others time out on the same sequence (found only when the
      world size is known);
    * every reporting rank stuck on one sequence with no progress is a job hang;
    * a lone timeout (one rank's watchdog fired, no other rank said anything) names
      that rank, its node and GPU, and says which ranks were never heard from (when
      the world size is known) or that the others are unknown.

    * ranks waiting in the same sequence number but in different collectives
      (``REDUCE`` on some, ``ALLREDUCE`` on others) are the application's
      desynchronisation, not a fault: ``fix_application``, naming the ranks on each
      side.

    A job is the ``job`` its records carry: the name of the folder that holds its logs
    (``sources.files``), the same from any working directory. Logs collected per node
    (``cn-d003/``, ``cn-d004/``) are one job once their timeouts show it: other ranks,
    a shared sequence number, the same timeout and world size; the job seen first takes
    the other in (one finding, "with the logs of cn-d004"). The finding's node is the
    culprit's, or the job's when all its ranks run on one node.

    The finding is an error, ``restart_job``; it names the culprit with its node and
    GPU when the logs tell, so the operator can take that GPU out before restarting.
    A job whose ranks ran on several nodes names them in ``nodes``, so that a GPU
    fault on one of them can be linked to the hang (``incidents.py``).

Lifetime
    A job is forgotten once it has had no record for ``forget_job_after_s`` (default
    24 h): NCCL writes its ``Init COMPLETE`` lines only when a job starts, so a job
    that hangs a day after its last record is reported without its ranks' hosts and
    GPUs. An incident is forgotten once it has not changed for ``gap_s``. Time is the
    ``flush`` clock (see ``base``: "Forgetting").

Evidence
    The timeout and progress records (``file:line``, rank, sequence numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from fleetwatch.detectors.base import IncidentBook, describe, make_finding, span
from fleetwatch.detectors.state import Stateful, register
from fleetwatch.events import KIND_ID, KINDS, EventBatch
from fleetwatch.findings import Action, Finding, Severity


@dataclass(frozen=True)
class Config:
    """Thresholds of nccl_hang."""

    gap_s: float = 3600.0
    """Timeouts of one job closer than this are one incident."""
    forget_job_after_s: float = 86400.0
    """A job without records for this long is forgotten (its ranks, hosts, sequences)."""


@register
@dataclass
class _Job:
    world: int | None = None
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)  # rank -> init identity
    completed: dict[int, int] = field(default_factory=dict)  # rank -> last completed seq
    waiting: dict[int, int] = field(default_factory=dict)  # rank -> seq it timed out on
    seen: float | None = None  # the flush clock at its last record; None: since the last flush
    ops: dict[int, str] = field(default_factory=dict)  # rank -> the collective it waits in
    limit_ms: float | None = None  # the collectives' timeout
    joined: list[str] = field(default_factory=list)  # other folders' jobs found to be this one


def _same_collective(a: _Job, b: _Job) -> bool:
    """Whether two folders' jobs are one job: other ranks, timed out in one collective.

    The logs name no job; a job whose ranks' logs were collected per node is two
    "jobs" by folder until their timeouts show one collective: a shared sequence
    number, the same timeout, no rank in both and no other world size.
    """
    return (
        bool(a.waiting and b.waiting)
        and not set(a.waiting) & set(b.waiting)
        and bool(set(a.waiting.values()) & set(b.waiting.values()))
        and (a.limit_ms is None or b.limit_ms is None or a.limit_ms == b.limit_ms)
        and (a.world is None or b.world is None or a.world == b.world)
    )


def _merge(into: _Job, job: _Job, name: str) -> None:
    for rank, identity in job.ranks.items():
        if "pci" in identity or rank not in into.ranks:
            into.ranks[rank] = identity
    into.completed.update(job.completed)
    into.waiting.update(job.waiting)
    into.ops.update(job.ops)
    into.world = max(into.world or 0, job.world or 0) or None
    into.limit_ms = into.limit_ms if into.limit_ms is not None else job.limit_ms
    into.joined += [n for n in (name, *job.joined) if n not in into.joined]
    into.seen = None


def _ranges(ranks: list[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2, 5`` (a job of 1,024 ranks has short lists)."""
    parts: list[str] = []
    start = prev = ranks[0]
    for rank in [*ranks[1:], None]:
        if rank is not None and rank == prev + 1:
            prev = rank
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if rank is not None:
            start = prev = rank
    return ", ".join(parts)


def _stale(job: _Job, now: float, keep: float) -> bool:
    """Whether ``job`` went without records for ``keep``; stamps a changed one ``now``."""
    if job.seen is None:
        job.seen = now
        return False
    return now - job.seen > keep


# The order a batch's records are read in, by kind: every init (where each rank runs),
# then progress, then timeouts; 0 is a kind not read (the extra last entry answers -1).
# A lookup per row is cheaper than ``np.isin``.
_INIT, _PROGRESS, _TIMEOUT = 1, 2, 3
_STEP = np.zeros(len(KINDS) + 1, dtype=np.int64)
_STEP[[KIND_ID["nccl_init"], KIND_ID["nccl_progress"], KIND_ID["nccl_timeout"]]] = (
    _INIT,
    _PROGRESS,
    _TIMEOUT,
)


def _last_of_each(*columns: npt.NDArray[np.int64]) -> npt.NDArray[np.intp]:
    """Where the last row of each distinct combination of ``columns`` is, sorted by
    the columns (the first most significant).

    A stable sort of the rows taken backwards puts each combination's last row first
    in its run: one ``lexsort`` costs fewer allocations than ``np.unique`` of a packed
    key.
    """
    backwards = [column[::-1] for column in columns[::-1]]  # lexsort: last key sorts first
    order = np.lexsort(backwards)
    first = np.zeros(order.size, dtype=bool)  # where a run starts in ``order``:
    first[0] = True  # at the first row, and wherever a column changes
    for column in backwards:
        ordered = column[order]
        first[1:] |= ordered[1:] != ordered[:-1]
    return order.size - 1 - order[first]


class NcclHang(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "nccl_hang"
    description: ClassVar[str] = "collective timeouts across ranks, the culprit rank and its GPU"
    config_type: ClassVar[type] = Config
    kinds: ClassVar[frozenset[str]] = frozenset({"nccl_init", "nccl_timeout", "nccl_progress"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.gap_s)
        self.jobs: dict[str, _Job] = {}
        self.alias: dict[str, str] = {}  # a folder's job -> the job it was found to be
        self._folders: list[str] = []  # this batch's job folders (not state)

    def _jobs(self, batch: EventBatch, rows: np.ndarray) -> npt.NDArray[np.int64]:
        """Each row's job key, as an index into this batch's strings or a folder name.

        The job id when the record has one, else the folder of the log it came from;
        worked out once per distinct file, not per row.
        """
        keys: npt.NDArray[np.int64] = batch["job"][rows].astype(np.int64)
        no_job = keys < 0
        if no_job.any():
            files, inverse = np.unique(batch["file"][rows][no_job], return_inverse=True)
            folder_of_file = [
                os.path.dirname(batch.string(int(f)) or "") or "." for f in files.tolist()
            ]
            self._folders = sorted(set(folder_of_file))
            index = {folder: i for i, folder in enumerate(self._folders)}
            folder_ids = np.asarray([index[f] for f in folder_of_file], dtype=np.int64)
            # folders get ids after the batch's own strings
            keys[no_job] = len(batch.strings) + folder_ids[inverse.ravel()]
        return keys

    def _name(self, batch: EventBatch, key: int) -> str:
        if key < len(batch.strings):
            return batch.strings[key]
        return self._folders[key - len(batch.strings)]

    def process(self, batch: EventBatch) -> list[Finding]:
        steps = _STEP[batch["kind"]]
        steps[batch["rank"] < 0] = 0  # a record without a rank says nothing here
        rows = np.flatnonzero(steps)
        if rows.size == 0:
            return []
        jobs = self._jobs(batch, rows)
        ranks = batch["rank"][rows]
        steps = steps[rows]
        # the last record of each kind, job and rank in this batch is all the state
        # needs, read kind by kind in the order of ``_STEP``
        last = _last_of_each(steps, jobs, ranks)
        touched: dict[str, list[int]] = {}
        for step, key, rank, row in zip(
            steps[last].tolist(),
            jobs[last].tolist(),
            ranks[last].tolist(),
            rows[last].tolist(),
            strict=True,
        ):
            name = self._name(batch, key)
            name = self.alias.get(name, name)
            job = self.jobs.get(name)
            if job is None:
                job = self.jobs[name] = _Job()
            job.seen = None
            if step == _INIT:
                self._init(batch, row, job, rank)
                continue
            self._record(batch, row, job, rank, step)
            seen = touched.get(name)
            if seen is None:
                touched[name] = [row, row]
            elif row < seen[0]:
                seen[0] = row
            elif row > seen[1]:
                seen[1] = row
        if len(self.jobs) > 1 and (steps == _TIMEOUT).any():  # only a timeout joins two jobs
            self._join(touched)
        out = []
        for name, (first, last_row) in touched.items():
            job = self.jobs[name]
            if not job.waiting:
                continue
            incident, _ = self.book.touch(
                (name,),
                span(batch, np.asarray([first, last_row])),
                1,
                describe(batch, first),
                describe(batch, last_row),
            )
            out.append(self._finding(name, job, incident))
        return out

    @staticmethod
    def _init(batch: EventBatch, row: int, job: _Job, rank: int) -> None:
        """A rank's ``Init COMPLETE``: the world size, and where the rank runs."""
        job.world = max(job.world or 0, int(batch["value"].item(row)))
        known = job.ranks.get(rank)
        if known is None or "pci" not in known:
            job.ranks[rank] = {
                "node": batch.value("node", row),
                "gpu": batch.value("gpu", row),
                "pci": batch.value("pci", row),
                "uuid": batch.value("uuid", row),
            }

    @staticmethod
    def _record(batch: EventBatch, row: int, job: _Job, rank: int, step: int) -> None:
        """A rank's progress or timeout record: how far it got, what it waits for."""
        # a rank seen only in its timeout still says where it runs
        if rank not in job.ranks:
            job.ranks[rank] = {"node": batch.value("node", row)}
        if step == _PROGRESS and (completed := batch["last_completed"].item(row)) >= 0:
            job.completed[rank] = completed
        if step == _TIMEOUT and (seq := batch["seq"].item(row)) >= 0:
            job.waiting[rank] = seq
            job.completed.setdefault(rank, seq - 1)
            if (op := batch.value("op", row)) is not None:
                job.ops[rank] = op
            if (limit := batch.value("value", row)) is not None:
                job.limit_ms = limit

    def _join(self, touched: dict[str, list[int]]) -> None:
        """Merge jobs that turn out to be one (``_same_collective``), in place.

        The job seen first keeps its name: one from an earlier batch, else the one whose
        records come first in this batch.
        """
        for name in sorted(touched, key=lambda n: touched[n][0]):
            job = self.jobs.get(name)
            if job is None or not job.waiting:
                continue
            for other in list(self.jobs):
                if other == name or not _same_collective(self.jobs[other], job):
                    continue
                later = other in touched and touched[other][0] > touched[name][0]
                keep, gone = (name, other) if later else (other, name)
                self._absorb(keep, gone, touched)
                break

    def _absorb(self, keep: str, gone: str, touched: dict[str, list[int]]) -> None:
        _merge(self.jobs[keep], self.jobs.pop(gone), gone)
        for alias, target in list(self.alias.items()):
            if target == gone:
                self.alias[alias] = keep
        self.alias[gone] = keep
        rows = touched.pop(gone, None)
        if rows is not None:
            mine = touched.setdefault(keep, list(rows))
            mine[0], mine[1] = min(mine[0], rows[0]), max(mine[1], rows[1])
        incident = self.book.open.pop((gone,), None)
        if incident is not None:  # found before its partner: its evidence moves over
            head = incident.head[0] if incident.head else None
            self.book.touch((keep,), incident.when, incident.count, head)

    def flush(self, now: float | None) -> list[Finding]:
        if now is None:
            return []
        self.book.close(now)
        keep = self.config.forget_job_after_s
        for name in [n for n, job in self.jobs.items() if _stale(job, now, keep)]:
            del self.jobs[name]
        gone = [alias for alias, target in self.alias.items() if target not in self.jobs]
        for alias in gone:
            del self.alias[alias]
        return []

    def size(self) -> int:
        return len(self.jobs) + len(self.book.open) + len(self.alias)

    def _culprit(self, job: _Job) -> tuple[int | None, str]:
        if job.completed:
            lowest = min(job.completed.values())
            laggards = [r for r, seq in job.completed.items() if seq == lowest]
            if (
                len(laggards) == 1
                and len(job.completed) > 1
                and any(seq > lowest for seq in job.completed.values())
            ):
                rank = laggards[0]
                ahead = max(job.completed.values())
                return rank, (
                    f"rank {rank} last completed {lowest} while the others reached "
                    f"{ahead}: it never finished the collective they wait in"
                )
        silent: list[int] = []
        if job.world is not None and len(job.waiting) < job.world:
            silent = sorted(set(range(job.world)) - set(job.waiting) - set(job.completed))
            if len(silent) == 1 and len(job.waiting) > 1:
                rank = silent[0]
                return rank, (
                    f"rank {rank} never reported while {len(job.waiting)} of "
                    f"{job.world} ranks timed out"
                )
        if len(job.waiting) == 1 and len(job.completed) <= 1:
            # One watchdog fired and no other rank said anything: the rank that timed
            # out is all the logs show; the others are unknown, not healthy.
            ((rank, seq),) = job.waiting.items()
            if job.world == 1:
                others = "it is the job's only rank"
            elif silent:
                others = f"ranks {_ranges(silent)} were never heard from"
            else:
                others = "no other rank's log is here, so where the others stopped is unknown"
            return rank, f"only rank {rank} timed out (on sequence {seq}); {others}"
        return None, "no single rank stands out"

    def _mismatch(self, job: _Job) -> str | None:
        """Ranks waiting in one sequence number but different collectives, said so."""
        for seq in sorted(set(job.waiting.values())):
            sides: dict[str, list[int]] = {}
            for rank, waits in sorted(job.waiting.items()):
                if waits == seq and rank in job.ops:
                    sides.setdefault(job.ops[rank], []).append(rank)
            if len(sides) > 1:
                said = "; ".join(f"{op} on ranks {_ranges(r)}" for op, r in sorted(sides.items()))
                return f"ranks disagree on collective {seq}: {said}"
        return None

    def _finding(self, name: str, job: _Job, incident: Any) -> Finding:
        shown = f"{name} (with the logs of {', '.join(job.joined)})" if job.joined else name
        mismatch = self._mismatch(job)
        if mismatch is not None:
            summary = (
                f"NCCL job {shown}: {mismatch}: the application's desynchronisation "
                f"(its ranks called collectives in different orders), not a GPU or network "
                f"fault -> fix the application"
            )
            entity: dict[str, Any] = {"job": name}
            return make_finding(
                self.name, incident, Severity.ERROR, Action.FIX_APPLICATION, summary, entity
            )
        culprit, why = self._culprit(job)
        seqs = sorted(set(job.waiting.values()))
        stuck = f"on sequence {seqs[0]}" if len(seqs) == 1 else f"on sequences {seqs}"
        world = f" of {job.world}" if job.world else ""
        summary = f"NCCL job {shown}: {len(job.waiting)}{world} ranks timed out {stuck}; {why}"
        entity = {"job": name}
        nodes = {r.get("node") for r in job.ranks.values()} - {None}
        if len(nodes) == 1:  # the whole job on one node: that node, culprit or not
            entity["node"] = nodes.pop()
        elif nodes:  # where its ranks ran: what links the hang to a fault of one of them
            entity["nodes"] = tuple(sorted(nodes))
        if culprit is not None:
            identity = job.ranks.get(culprit, {})
            entity.update({k: v for k, v in identity.items() if v is not None})
            entity["rank"] = culprit
            where = identity.get("node")
            if where:
                gpu = identity.get("pci") or identity.get("gpu")
                summary += f" (rank {culprit} runs on {where}" + (f", GPU {gpu})" if gpu else ")")
            if culprit in job.waiting and len(job.waiting) == 1:
                # it is the rank that noticed, not one shown to lag: its GPU stays
                summary += " -> restart the job; the other ranks' logs would show which stalled"
            else:
                summary += " -> restart the job without that GPU"
        else:
            summary += " -> restart the job"
        return make_finding(
            self.name, incident, Severity.ERROR, Action.RESTART_JOB, summary, entity
        )

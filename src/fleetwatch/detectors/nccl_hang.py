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
    * every reporting rank stuck on one sequence with no progress is a job hang.

    The finding is an error, ``restart_job``; it names the culprit with its node and
    GPU when the logs tell, so the operator can take that GPU out before restarting.

Evidence
    The timeout and progress records (``file:line``, rank, sequence numbers).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fleetwatch.detectors.base import IncidentBook, describe, make_finding, span
from fleetwatch.detectors.state import Stateful, register
from fleetwatch.events import KIND_ID, EventBatch
from fleetwatch.findings import Action, Finding, Severity


@dataclass(frozen=True)
class Config:
    """Thresholds of nccl_hang."""

    gap_s: float = 3600.0
    """Timeouts of one job closer than this are one incident."""


@register
@dataclass
class _Job:
    world: int | None = None
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)  # rank -> init identity
    completed: dict[int, int] = field(default_factory=dict)  # rank -> last completed seq
    waiting: dict[int, int] = field(default_factory=dict)  # rank -> seq it timed out on


class NcclHang(Stateful):
    """See the module docstring."""

    name: ClassVar[str] = "nccl_hang"
    kinds: ClassVar[frozenset[str]] = frozenset({"nccl_init", "nccl_timeout", "nccl_progress"})

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self.book = IncidentBook(self.config.gap_s)
        self.jobs: dict[str, _Job] = {}

    def _job_of(self, batch: EventBatch, row: int) -> str:
        job = batch.value("job", row)
        if job:
            return str(job)
        return os.path.dirname(batch.value("file", row) or "") or "."

    def process(self, batch: EventBatch) -> list[Finding]:
        kind = batch["kind"]
        wanted = np.isin(kind, [KIND_ID[k] for k in self.kinds]) & (batch["rank"] >= 0)
        touched: dict[str, tuple[int, int]] = {}
        for row in np.flatnonzero(wanted).tolist():
            name = self._job_of(batch, row)
            job = self.jobs.setdefault(name, _Job())
            rank = int(batch["rank"][row])
            what = batch.value("kind", row)
            if what == "nccl_init":
                job.world = max(job.world or 0, int(batch["value"][row]))
                job.ranks.setdefault(
                    rank,
                    {
                        "node": batch.value("node", row),
                        "gpu": batch.value("gpu", row),
                        "pci": batch.value("pci", row),
                        "uuid": batch.value("uuid", row),
                    },
                )
                continue
            if what == "nccl_progress" and batch["last_completed"][row] >= 0:
                job.completed[rank] = int(batch["last_completed"][row])
            if what == "nccl_timeout" and batch["seq"][row] >= 0:
                job.waiting[rank] = int(batch["seq"][row])
                job.completed.setdefault(rank, int(batch["seq"][row]) - 1)
            first, _ = touched.get(name, (row, row))
            touched[name] = (first, row)
        out = []
        for name, (first, last) in touched.items():
            job = self.jobs[name]
            if not job.waiting:
                continue
            incident, _ = self.book.touch(
                (name,),
                *span(batch, np.asarray([first, last])),
                1,
                describe(batch, first),
                describe(batch, last),
            )
            out.append(self._finding(name, job, incident))
        return out

    def flush(self, now: float | None) -> list[Finding]:
        return []

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
        if job.world is not None and len(job.waiting) < job.world:
            silent = sorted(set(range(job.world)) - set(job.waiting) - set(job.completed))
            if len(silent) == 1:
                rank = silent[0]
                return rank, (
                    f"rank {rank} never reported while {len(job.waiting)} of "
                    f"{job.world} ranks timed out"
                )
        return None, "no single rank stands out"

    def _finding(self, name: str, job: _Job, incident: Any) -> Finding:
        culprit, why = self._culprit(job)
        seqs = sorted(set(job.waiting.values()))
        stuck = f"on sequence {seqs[0]}" if len(seqs) == 1 else f"on sequences {seqs}"
        world = f" of {job.world}" if job.world else ""
        summary = f"NCCL job {name}: {len(job.waiting)}{world} ranks timed out {stuck}; {why}"
        entity: dict[str, Any] = {"job": name}
        if culprit is not None:
            identity = job.ranks.get(culprit, {})
            entity.update({k: v for k, v in identity.items() if v is not None})
            entity["rank"] = culprit
            where = identity.get("node")
            if where:
                gpu = identity.get("pci") or identity.get("gpu")
                summary += f" (rank {culprit} runs on {where}" + (f", GPU {gpu})" if gpu else ")")
            summary += " -> restart the job without that GPU"
        else:
            summary += " -> restart the job"
        return make_finding(
            self.name, incident, Severity.ERROR, Action.RESTART_JOB, summary, entity
        )

"""A fleet's events by entity number: batches for any range of GPUs, nodes or jobs.

The state benchmark (``state_size``) and the lifetime tests feed detectors a fleet
whose GPUs and jobs come and go: GPU ``i`` is always the same GPU (node
``gpu-node-{i // 8}``, one of an HGX board's eight PCI addresses, its own UUID, the
pod of its node), so a range of numbers is the part of the fleet that is live. The
events carry the fields the readers give (``sources/dcgm.py``, ``kmsg``, ``k8s``,
``nccl``): a dcgm-exporter scrape of every metric the detectors read, with pod
labels; kernel Xids and AER records; Kubernetes evictions; NCCL ``Init COMPLETE``,
timeout and progress records of 8-rank jobs, keyed by their log folder as a real job
is.

A fixed share of the fleet is faulty, by number, so every detector keeps incidents
as well as per-entity state: thermal slowdown (1 GPU in 50), corrected ECC errors
rising (1 in 97), PCIe replays rising (1 in 89), Xid 79 (1 in 199), Xid 13 (1 in
151), AER (1 in 127), evictions (1 node in 41), NCCL timeouts (1 job in 20).

Columns are built with NumPy, strings interned once per batch, so a million
entities take seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from fleetwatch.events import (
    CLOCK_ID,
    FIELDS,
    KIND_ID,
    SCOPE_ID,
    SEVERITY_ID,
    SOURCE_ID,
    STRING_FIELDS,
    EventBatch,
    concat,
)

START: Final = 1_717_495_200.0  # 2024-06-04 10:00 UTC, as the simulator
GPUS_PER_NODE: Final = 8
RANKS_PER_JOB: Final = 8
PCI_BUSES: Final = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")
# (kind, scope, healthy value): one dcgm-exporter scrape of a GPU
SCRAPE: Final = (
    ("temperature", None, 62.0),
    ("power", None, 695.5),
    ("clock_event", None, 4.0),  # SW power cap: normal at full load
    ("ecc_corrected", "volatile", 0.0),
    ("ecc_uncorrected", "volatile", 0.0),
    ("ecc_corrected", "aggregate", 0.0),
    ("ecc_uncorrected", "aggregate", 0.0),
    ("remap_pending", None, 0.0),
    ("remap_failure", None, 0.0),
    ("remap_uncorrectable", None, 0.0),
    ("pcie_replay", None, 0.0),
    ("pcie_link", None, 16.0),
)
IntArray = npt.NDArray[np.int64]


def node_name(node: int) -> str:
    return f"gpu-node-{node:07d}"


def pci_of(gpu: int) -> str:
    return f"0000:{PCI_BUSES[gpu % GPUS_PER_NODE]}:00.0"


def uuid_of(gpu: int) -> str:
    return f"GPU-{gpu:08x}-5c1e-4f6b-9a0d-{gpu * 2654435761 % 2**48:012x}"


def job_folder(job: int) -> str:
    return f"/var/log/jobs/train-{job:07d}"


class _Strings:
    """One batch's string table: each distinct string gets one id."""

    def __init__(self) -> None:
        self.table: list[str] = []
        self._ids: dict[str, int] = {}

    def ids(self, values: Sequence[str | None]) -> npt.NDArray[np.int32]:
        out = np.empty(len(values), dtype=np.int32)
        for i, value in enumerate(values):
            if value is None:
                out[i] = -1
                continue
            found = self._ids.get(value)
            if found is None:
                found = self._ids[value] = len(self.table)
                self.table.append(value)
            out[i] = found
        return out


def make_batch(n: int, **fields: Any) -> EventBatch:
    """``n`` events; a field is one value for all, one per event, or a pair (values,
    index array): ``values[index[i]]`` for event ``i``, which saves a lookup per event.

    String fields take strings (None: absent); ``kind``, ``source``, ``clock``,
    ``severity`` and ``scope`` take names; the rest take numbers.
    """
    names = {"kind": KIND_ID, "source": SOURCE_ID, "clock": CLOCK_ID}
    names |= {"severity": SEVERITY_ID, "scope": SCOPE_ID}
    strings = _Strings()
    columns: dict[str, npt.NDArray[Any]] = {}
    for name, (dtype, absent, _) in FIELDS.items():
        given = fields.pop(name, None)
        column = np.full(n, absent, dtype=dtype)
        index = None
        if isinstance(given, tuple):
            given, index = given
        if given is None:
            pass
        elif name in STRING_FIELDS and index is not None:
            column[:] = strings.ids(given)[index]
        elif name in names and index is not None:
            table = names[name]
            column[:] = np.asarray([absent if g is None else table[g] for g in given])[index]
        elif name in STRING_FIELDS:
            many = [given] * n if isinstance(given, str) else list(given)
            column[:] = strings.ids(many)
        elif name in names:
            table = names[name]
            if isinstance(given, str):
                column[:] = table[given]
            else:
                column[:] = [absent if g is None else table[g] for g in given]
        else:
            column[:] = given
        columns[name] = column
    if fields:
        raise KeyError(f"unknown fields {sorted(fields)}")
    return EventBatch(columns, tuple(strings.table))


def _lines(n: int) -> IntArray:
    return np.arange(1, n + 1, dtype=np.int64)


def scrape(gpus: IntArray, t: float, step: int, kinds: Sequence[str] | None = None) -> EventBatch:
    """One dcgm-exporter scrape of ``gpus`` at time ``t`` (the ``step``-th scrape).

    ``kinds`` keeps only those metrics (all by default).
    """
    metrics = [m for m in SCRAPE if kinds is None or m[0] in kinds]
    per = len(metrics)
    gpu = np.repeat(gpus, per)
    mine = np.repeat(np.arange(gpus.size), per)  # each event's GPU, as an index
    which = np.tile(np.arange(per), gpus.size)  # each event's metric
    value = np.asarray([m[2] for m in metrics])[which]
    kind_of = np.asarray([KIND_ID[m[0]] for m in metrics])[which]
    hot = (gpu % 50 == 7) & (kind_of == KIND_ID["clock_event"])
    value[hot] = 0x40  # HW thermal slowdown
    rising = (gpu % 97 == 3) & (kind_of == KIND_ID["ecc_corrected"])
    value[rising] = 150.0 * step
    replays = (gpu % 89 == 5) & (kind_of == KIND_ID["pcie_replay"])
    value[replays] = 1000.0 * step
    g = gpus.tolist()
    nodes = [node_name(i // GPUS_PER_NODE) for i in g]
    return make_batch(
        gpu.size,
        kind=([m[0] for m in metrics], which),
        scope=([m[1] for m in metrics], which),
        ts=t,
        clock="wall",
        source="dcgm",
        file=([f"/var/log/fleet/{n}/dcgm.prom" for n in nodes], mine),
        line=_lines(gpu.size),
        node=(nodes, mine),
        pci=([pci_of(i) for i in g], mine),
        gpu=gpu % GPUS_PER_NODE,
        uuid=([uuid_of(i) for i in g], mine),
        pod=([f"train-{i // 64:06d}-worker-{(i // 8) % 8}" for i in g], mine),
        namespace="ml",
        value=value,
        detail=(["gen5" if m[0] == "pcie_link" else None for m in metrics], which),
    )


def kernel(gpus: IntArray, t: float) -> EventBatch:
    """The kernel records of the faulty ones among ``gpus``: Xid 79, Xid 13, AER."""
    lost = gpus[gpus % 199 == 11].tolist()
    app = gpus[gpus % 151 == 13].tolist()
    aer = gpus[gpus % 127 == 17].tolist()
    g = [*lost, *app, *aer]
    kinds = ["xid"] * (len(lost) + len(app)) + ["aer"] * len(aer)
    nodes = [node_name(i // GPUS_PER_NODE) for i in g]
    return make_batch(
        len(g),
        kind=kinds,
        ts=t + 1.5,
        clock="wall",
        source="kmsg",
        file=[f"/var/log/fleet/{n}/kern.log" for n in nodes],
        line=_lines(len(g)),
        node=nodes,
        pci=[pci_of(i) for i in g],
        gpu=[i % GPUS_PER_NODE for i in g],
        uuid=[uuid_of(i) for i in g],
        code=[79] * len(lost) + [13] * len(app) + [-1] * len(aer),
        severity=[None] * (len(lost) + len(app)) + ["corrected"] * len(aer),
        pid=[4242] * len(g),
        process=[None] * len(lost) + ["python3"] * len(app) + [None] * len(aer),
        detail=["GPU has fallen off the bus."] * len(lost)
        + ["Graphics Exception: ESR 0x404600=0x80000002"] * len(app)
        + ["device 10de:2330 Physical Layer: Receiver Error"] * len(aer),
    )


def evictions(nodes: IntArray, t: float) -> EventBatch:
    """Three evictions on each faulty one of ``nodes`` (Kubernetes events)."""
    hit = np.repeat(nodes[nodes % 41 == 3], 3).tolist()
    return make_batch(
        len(hit),
        kind="pod_evicted",
        ts=t + 5.0,
        clock="wall",
        source="k8s",
        file="/var/log/fleet/cluster/events.jsonl",
        line=_lines(len(hit)),
        node=[node_name(n) for n in hit],
        pod=[f"batch-{n:07d}-{k % 3}" for k, n in enumerate(hit)],
        namespace="batch",
        reason="Evicted",
        detail="low on memory",
    )


def _rank_logs(job: IntArray, rank: IntArray) -> list[str]:
    pairs = zip(job.tolist(), rank.tolist(), strict=True)
    return [f"{job_folder(j)}/rank-{r}.log" for j, r in pairs]


def nccl_init(jobs: IntArray) -> EventBatch:
    """Every rank's ``Init COMPLETE`` of ``jobs`` (no time stamp, as NCCL writes it).

    Job ``j`` runs on GPUs ``8j .. 8j+7``; its key is its log folder.
    """
    job = np.repeat(jobs, RANKS_PER_JOB)
    rank = np.tile(np.arange(RANKS_PER_JOB), jobs.size)
    gpu = (job * RANKS_PER_JOB + rank).tolist()
    return make_batch(
        job.size,
        kind="nccl_init",
        clock="none",
        source="nccl",
        file=_rank_logs(job, rank),
        line=1,
        node=[node_name(i // GPUS_PER_NODE) for i in gpu],
        pci=[pci_of(i) for i in gpu],
        gpu=[i % GPUS_PER_NODE for i in gpu],
        uuid=[uuid_of(i) for i in gpu],
        value=float(RANKS_PER_JOB),
        rank=rank,
        pid=7000 + rank,
    )


def nccl_hang(jobs: IntArray, t: float) -> EventBatch:
    """The faulty ones of ``jobs`` time out on sequence 100; rank 3 stays silent."""
    hung = jobs[jobs % 20 == 1]
    ranks = [r for r in range(RANKS_PER_JOB) if r != 3]
    job = np.repeat(hung, 2 * len(ranks))
    rank = np.tile(np.repeat(ranks, 2), hung.size)
    timeout = np.tile([True, False], hung.size * len(ranks))
    return make_batch(
        job.size,
        kind=["nccl_timeout" if k else "nccl_progress" for k in timeout.tolist()],
        ts=t + 2.0,
        clock="wall",
        source="nccl",
        file=_rank_logs(job, rank),
        line=np.where(timeout, 2, 3),
        node=[node_name(g // GPUS_PER_NODE) for g in (job * RANKS_PER_JOB + rank).tolist()],
        value=np.where(timeout, 600000.0, np.nan),
        rank=rank,
        seq=100,
        op=["ALLREDUCE" if k else None for k in timeout.tolist()],
        last_completed=np.where(timeout, -1, 99),
        last_enqueued=np.where(timeout, -1, 100),
        detail=["watchdog timeout" if k else None for k in timeout.tolist()],
    )


def fleet(gpus: IntArray, t: float, step: int, kinds: Sequence[str] | None = None) -> EventBatch:
    """Everything ``gpus`` and their nodes emit at ``t``: a scrape, kernel records and
    evictions, in one batch."""
    nodes = np.unique(gpus // GPUS_PER_NODE)
    return concat([scrape(gpus, t, step, kinds), kernel(gpus, t), evictions(nodes, t)])

"""Deterministic synthetic fleets with one known fault, and the answer to find.

``simulate(scenario, out, seed, nodes)`` writes a fleet of ``nodes`` nodes with 8 GPUs
each as a folder of per-node folders, in the real line formats the readers read:

* ``<node>/kern.log``: rsyslog RFC 3339 kernel lines (ordinary kernel noise, plus the
  fault's records);
* ``<node>/dcgm.prom``: dcgm-exporter scrapes every ``SCRAPE_S`` seconds, each sample
  with its time stamp, healthy values (a GPU under load sits at its power cap, 0x4);
* ``cluster/events.jsonl``: a Kubernetes event watch stream;
* ``job/rank-N.log``: NCCL / PyTorch logs of a training job;
* ``<job>/rank-N.log``: a named job's logs as the container runtime keeps them (CRI:
  each line behind its UTC time stamp, as under ``/var/log/pods``), for the scenarios
  where NCCL times must line up with kernel times whatever the local time zone.

One scenario injects one fault and writes ``answer.json`` beside the logs: the
findings replay must report (detector, node, GPU, rank, action), and the nodes that
must stay clean. The combined scenarios (a GPU fault that hangs a job, an application
fault with its NCCL errors, each beside an unrelated hang) also say which incidents
must link them (``incidents.py``): the root, its effects and the action, and the
findings that must stay alone. Same scenario, seed and size: the same bytes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

START: Final = datetime(2024, 6, 4, 10, 0, 0, tzinfo=UTC).timestamp()
DURATION_S: Final = 1800.0
SCRAPE_S: Final = 30.0
PCI_BUSES: Final = ("18", "2a", "3a", "5d", "9a", "ab", "ba", "db")  # an HGX board's GPUs
NVSWITCH_BUSES: Final = ("c5", "c6", "c7", "c8")
# The NVLink error counters are not in the usual scrape: a scenario that needs them adds them.
_USUAL_METRICS: Final = (
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "DCGM_FI_DEV_ECC_",
    "DCGM_FI_DEV_ROW_REMAP_",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_XID_ERRORS",
)
DCGM_BLANK_INT64: Final = 9223372036854775794  # DCGM's "not supported"
KERNEL_NOISE: Final = (
    "EXT4-fs (nvme0n1p2): re-mounted. Opts: errors=remount-ro",
    'audit: type=1400 audit({t}:{n}): apparmor="STATUS" operation="profile_replace" name="snap-update-ns"',
    "mlx5_core 0000:{bus}:00.0 ibp{n}s0: Link up",
    "IPv6: ADDRCONF(NETDEV_CHANGE): ibp{n}s0: link becomes ready",
    "systemd-journald[612]: Data hash table of /var/log/journal/system.journal has a fill level at 75.0",
    "nvidia-peermem nv_get_p2p_free_callback:127 ERROR detected invalid context, skipping further processing",
    "perf: interrupt took too long (2502 > 2500), lowering kernel.perf_event_max_sample_rate to 79750",
    "TCP: request_sock_TCP: Possible SYN flooding on port 8472. Sending cookies.",
    "nfs: server storage-01 OK",
    "docker0: port {n}(veth{n}a2) entered forwarding state",
    "cni0: port {n}(veth{n}f1) entered blocking state",
    "device veth{n}c3 entered promiscuous mode",
    "kauditd_printk_skb: {n} callbacks suppressed",
    "hrtimer: interrupt took 21630 ns",
    "Memory cgroup out of memory: Killed process {n} (python3) total-vm:812345kB, anon-rss:4096kB",
    "NFSD: starting 90-second grace period (net f0000000)",
    "ipmi_si IPI0001:00: IPMI message handler: BMC returned 0xc0, internal error",
    "pci 0000:{bus}:00.0: [15b3:101d] type 00 class 0x020700",
)


@dataclass
class Gpu:
    """One GPU of the simulated fleet."""

    node: str
    index: int
    pci: str
    uuid: str
    serial: str


@dataclass
class Expected:
    """A finding replay must report."""

    detector: str
    node: str | None
    action: str
    pci: str | None = None
    rank: int | None = None
    job: str | None = None


@dataclass
class ExpectedIncident:
    """An incident ``--output incidents`` must report: its rule, root, effects, action."""

    rule: str
    root: Expected
    effects: list[Expected]
    action: str


@dataclass
class Answer:
    """What a scenario injected: the findings to report and the nodes to leave alone;
    the incidents that link findings, and the findings nothing may link."""

    scenario: str
    seed: int
    expected: list[Expected] = field(default_factory=list)
    clean_nodes: list[str] = field(default_factory=list)
    incidents: list[ExpectedIncident] = field(default_factory=list)
    alone: list[Expected] = field(default_factory=list)


class Fleet:
    """The simulated fleet's nodes, GPUs and the files their logs go to."""

    def __init__(self, out: Path, nodes: int, seed: int, lines_per_node: int) -> None:
        self.out = out
        self.rng = random.Random(seed)
        self.lines_per_node = lines_per_node
        self.nodes = [f"gpu-node-{i:03d}" for i in range(1, nodes + 1)]
        self.gpus: dict[str, list[Gpu]] = {
            node: [
                Gpu(
                    node,
                    g,
                    f"0000:{bus}:00.0",
                    f"GPU-{self.rng.getrandbits(32):08x}-{self.rng.getrandbits(16):04x}-"
                    f"{self.rng.getrandbits(16):04x}-{self.rng.getrandbits(16):04x}-"
                    f"{self.rng.getrandbits(48):012x}",
                    f"1654{self.rng.randrange(10**8, 10**9)}",
                )
                for g, bus in enumerate(PCI_BUSES)
            ]
            for node in self.nodes
        }
        self.kernel: dict[str, list[tuple[float, str]]] = {n: [] for n in self.nodes}
        self.dcgm_overrides: dict[tuple[str, int, str], Callable[[float], float | None]] = {}
        self.pods: dict[str, str] = {}  # node -> pod running on all its GPUs
        self.k8s: list[tuple[float, dict[str, Any]]] = []
        self.rank_logs: dict[int, list[str]] = {}
        self.job_logs: dict[str, dict[int, list[str]]] = {}  # job -> rank -> CRI lines
        self.job_nodes: set[str] = set()  # where the named jobs' ranks run

    def kern(self, node: str, t: float, message: str) -> None:
        """Add a kernel message at time ``t``."""
        self.kernel[node].append((t, message))

    def touched(self) -> set[str]:
        """The nodes the scenario put anything on: all others must stay clean."""
        hosts = {e["source"].get("host") for _, e in self.k8s} | {
            e["involvedObject"]["name"]
            for _, e in self.k8s
            if e["involvedObject"]["kind"] == "Node"
        }
        ranks = {line.split(":", 1)[0] for lines in self.rank_logs.values() for line in lines[:1]}
        dcgm = {node for node, _, _ in self.dcgm_overrides}
        kernel = {node for node, messages in self.kernel.items() if messages}
        jobs = self.job_nodes
        return (hosts | ranks | dcgm | kernel | jobs | set(self.pods)) & set(self.nodes)

    def pick_node(self) -> str:
        return self.rng.choice(self.nodes)

    def pick_gpu(self, node: str) -> Gpu:
        return self.rng.choice(self.gpus[node])

    # -- writing ------------------------------------------------------------------------

    def write(self) -> None:
        for node in self.nodes:
            folder = self.out / node
            folder.mkdir(parents=True, exist_ok=True)
            self._write_kernel(node, folder / "kern.log")
            with (folder / "dcgm.prom").open("w") as out:
                self._write_dcgm(node, out)
        if self.k8s:
            (self.out / "cluster").mkdir(exist_ok=True)
            with (self.out / "cluster" / "events.jsonl").open("w") as out:
                for _, event in sorted(self.k8s, key=lambda item: item[0]):
                    out.write(json.dumps({"type": "ADDED", "object": event}) + "\n")
        if self.rank_logs:
            (self.out / "job").mkdir(exist_ok=True)
            for rank, lines in self.rank_logs.items():
                (self.out / "job" / f"rank-{rank}.log").write_text("\n".join(lines) + "\n")
        for job, ranks in self.job_logs.items():
            (self.out / job).mkdir(exist_ok=True)
            for rank, cri in ranks.items():
                (self.out / job / f"rank-{rank}.log").write_text("\n".join(cri) + "\n")

    def _write_kernel(self, node: str, path: Path) -> None:
        rng = random.Random(f"{node}-noise")
        step = DURATION_S / max(self.lines_per_node, 1)
        faults = sorted(self.kernel[node])
        with path.open("w") as out:
            f = 0
            for i in range(self.lines_per_node):
                t = START + i * step
                while f < len(faults) and faults[f][0] <= t:
                    out.write(_syslog(node, faults[f][0], faults[f][1]))
                    f += 1
                noise = rng.choice(KERNEL_NOISE).format(
                    t=f"{t:.3f}", n=rng.randrange(1, 9), bus=rng.choice(("0c", "1d", "8b"))
                )
                out.write(_syslog(node, t, noise))
            for t, message in faults[f:]:
                out.write(_syslog(node, t, message))

    def _write_dcgm(self, node: str, out: TextIO) -> None:
        pod = self.pods.get(node)
        more: dict[int, list[str]] = {}
        for n, index, metric in self.dcgm_overrides:
            if n == node and not metric.startswith(_USUAL_METRICS):
                more.setdefault(index, []).append(metric)
        t = START
        while t < START + DURATION_S:
            for gpu in self.gpus[node]:
                labels = (
                    f'gpu="{gpu.index}",UUID="{gpu.uuid}",pci_bus_id="{gpu.pci}",'
                    f'device="nvidia{gpu.index}",modelName="NVIDIA H100 80GB HBM3",'
                    f'Hostname="{node}"'
                )
                if pod:
                    labels += f',container="trainer",namespace="ml",pod="{pod}"'
                healthy = {
                    "DCGM_FI_DEV_GPU_TEMP": 62 + gpu.index % 4,
                    "DCGM_FI_DEV_POWER_USAGE": 695.5,
                    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": 4,  # SW power cap: normal at full load
                    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL": 0,
                    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": 0,
                    "DCGM_FI_DEV_ROW_REMAP_PENDING": 0,
                    "DCGM_FI_DEV_ROW_REMAP_FAILURE": 0,
                    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": 0,
                    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": 0,
                    "DCGM_FI_DEV_XID_ERRORS": 0,
                }
                # what only a scenario exports (NVLink counters) comes after the usual
                extra = dict.fromkeys(more.get(gpu.index, ()), 0)
                for metric, value in {**healthy, **extra}.items():
                    override = self.dcgm_overrides.get((node, gpu.index, metric))
                    sample = override(t) if override else value
                    if sample is not None:
                        out.write(f"{metric}{{{labels}}} {sample} {int(t * 1000)}\n")
            t += SCRAPE_S


def _syslog(node: str, t: float, message: str) -> str:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    uptime = t - START + 86400.0
    return f"{stamp} {node} kernel: [{uptime:12.6f}] {message}\n"


def _k8s_event(
    reason: str,
    message: str,
    kind: str,
    name: str,
    namespace: str | None,
    t: float,
    host: str | None,
    n: int,
) -> dict[str, Any]:
    stamp = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{name}.{n:x}",
            "namespace": namespace or "default",
            "uid": f"uid-{n}",
        },
        "involvedObject": {"kind": kind, "name": name},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "source": {"component": "kubelet", "host": host} if host else {"component": "controller"},
    }
    if namespace:
        event["involvedObject"]["namespace"] = namespace
    return event


# --- scenarios -----------------------------------------------------------------------------


def _identity(fleet: Fleet, gpu: Gpu, t: float) -> None:
    bus = gpu.pci[5:12]
    fleet.kern(gpu.node, t, f"NVRM: GPU at PCI:0000:{bus}: {gpu.uuid}")
    fleet.kern(gpu.node, t, f"NVRM: GPU Board Serial Number: {gpu.serial}")


def _xid(fleet: Fleet, gpu: Gpu, t: float, code: int, text: str) -> None:
    fleet.kern(
        gpu.node,
        t,
        f"NVRM: Xid (PCI:0000:{gpu.pci[5:12]}): {code}, pid={fleet.rng.randrange(1000, 60000)}, name=python3, {text}",
    )


def xid79(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    t = START + fleet.rng.uniform(300, 1200)
    _identity(fleet, gpu, t)
    _xid(fleet, gpu, t, 79, "GPU has fallen off the bus.")
    fleet.kern(node, t, f"NVRM: GPU {gpu.pci}: GPU has fallen off the bus.")
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_XID_ERRORS"] = lambda s: 79 if s >= t else 0
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_GPU_TEMP"] = lambda s: (
        9223372036854775794 if s >= t else 60
    )
    answer.expected.append(Expected("xid_correlation", node, "reboot_node", gpu.pci))


def gsp_timeout(fleet: Fleet, answer: Answer) -> None:
    """A GPU's GSP firmware stops answering: Xid 119, then heartbeat timeouts by index."""
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    t = START + fleet.rng.uniform(300, 1200)
    _identity(fleet, gpu, t)
    _xid(
        fleet,
        gpu,
        t,
        119,
        f"Timeout after 6s of waiting for RPC response from GPU{gpu.index} GSP! "
        "Expected function 76 (GSP_RM_CONTROL) (0x20800a4c 0x4).",
    )
    for i in range(3):
        fleet.kern(
            node,
            t + 5 + i * 5,
            f"NVRM: GPU{gpu.index} _kgspIsHeartbeatTimedOut: Heartbeat timed out, "
            f"currentTimeMs {322227881 + i * 5000} heartbeat 0 heartbeatWithOffsetMs "
            "318098841 diff 4129040 timeout 5200",
        )
    answer.expected.append(Expected("gsp_fault", node, "reset_gpu", gpu.pci))


def dbe_row_remap(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    t = START + fleet.rng.uniform(300, 1200)
    _identity(fleet, gpu, t)
    _xid(
        fleet,
        gpu,
        t,
        48,
        "An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.",
    )
    _xid(
        fleet,
        gpu,
        t + 0.2,
        63,
        "Row Remapper: New row (0x000000000003b1a2) marked for remapping, reset gpu to activate.",
    )
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] = lambda s: (
        1 if s >= t else 0
    )
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_ROW_REMAP_PENDING"] = lambda s: (
        1 if s >= t else 0
    )
    answer.expected.append(Expected("hbm_ecc", node, "reset_gpu", gpu.pci))


def remap_failure(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    t = START + fleet.rng.uniform(300, 1200)
    _xid(fleet, gpu, t, 64, "Row Remapper: Failed to remap row (0x000000000004c2b3).")
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_ROW_REMAP_FAILURE"] = lambda s: (
        1 if s >= t else 0
    )
    answer.expected.append(Expected("hbm_ecc", node, "rma_gpu", gpu.pci))


def nvlink_storm(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    t = START + fleet.rng.uniform(300, 1200)
    for gpu in fleet.rng.sample(fleet.gpus[node], 4):
        for k in range(fleet.rng.randrange(3, 8)):
            _xid(
                fleet,
                gpu,
                t + k * 2.0 + gpu.index * 0.1,
                74,
                "NVLINK: Link 12 (0x00000001 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)",
            )
    switch = f"0000:{fleet.rng.choice(NVSWITCH_BUSES)}:00.0"
    for k in range(20):
        fleet.kern(
            node,
            t + k,
            f"nvidia-nvswitch2: SXid (PCI:{switch}): 20034, Fatal, Link 30 LTSSM Fault Up",
        )
    answer.expected.append(Expected("xid_correlation", node, "inspect_fabric"))
    answer.expected.append(Expected("nvlink", node, "inspect_fabric"))  # Xid 74 per GPU


def nvlink_link_errors(fleet: Fleet, answer: Answer) -> None:
    """One link of one GPU starts replaying (~80 a minute), then retrains twice, then the
    driver reports it failed (Xid 74): drain the node. Every GPU of the node exports its
    NVLink totals; CRC reads as DCGM's blank, as on Hopper (NVIDIA/DCGM#173)."""
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    link = fleet.rng.randrange(18)
    t = START + fleet.rng.uniform(300, 900)
    prefix = "DCGM_FI_DEV_NVLINK_"

    def replays(s: float) -> float:
        return 0.0 if s < t else 40.0 * (int((s - t) // SCRAPE_S) + 1)

    def recoveries(s: float) -> float:
        return float((s >= t + 300) + (s >= t + 600))

    for peer in fleet.gpus[node]:
        fleet.dcgm_overrides[node, peer.index, f"{prefix}CRC_FLIT_ERROR_COUNT_TOTAL"] = lambda s: (
            DCGM_BLANK_INT64
        )
        fleet.dcgm_overrides[node, peer.index, f"{prefix}REPLAY_ERROR_COUNT_TOTAL"] = (
            replays if peer is gpu else lambda s: 0
        )
        fleet.dcgm_overrides[node, peer.index, f"{prefix}RECOVERY_ERROR_COUNT_TOTAL"] = (
            recoveries if peer is gpu else lambda s: 0
        )
    fleet.dcgm_overrides[node, gpu.index, f"{prefix}REPLAY_ERROR_COUNT_L{link}"] = replays
    fleet.dcgm_overrides[node, gpu.index, f"{prefix}RECOVERY_ERROR_COUNT_L{link}"] = recoveries
    _identity(fleet, gpu, t)
    fleet.kern(
        node,
        t + 620,
        f"NVRM: Xid (PCI:0000:{gpu.pci[5:12]}): 74, pid='<unknown>', name=<unknown>, "
        f"NVLink: fatal error detected on link {link}",
    )
    answer.expected.append(Expected("nvlink", node, "drain_node", gpu.pci))


def app_xid_job(fleet: Fleet, answer: Answer) -> None:
    job_nodes = fleet.rng.sample(fleet.nodes, min(2, len(fleet.nodes)))
    t = START + fleet.rng.uniform(300, 1200)
    for i, node in enumerate(job_nodes):
        fleet.pods[node] = f"llm-pretrain-{i}"
        for gpu in fleet.gpus[node]:
            _xid(
                fleet,
                gpu,
                t + gpu.index * 0.05,
                31,
                "channel 0x00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC3 GPCCLIENT_T1_2 faulted @ 0x7f2b_10000000. Fault is of type FAULT_PDE ACCESS_TYPE_VIRT_WRITE",
            )
    answer.expected.append(
        Expected("xid_correlation", None, "fix_application", job="ml/llm-pretrain")
    )


def nccl_straggler(fleet: Fleet, answer: Answer) -> None:
    job_nodes = fleet.nodes[: min(2, len(fleet.nodes))]
    world = 8 * len(job_nodes)
    seq = fleet.rng.randrange(1000, 90000)
    straggler = fleet.rng.randrange(world)
    when = datetime.fromtimestamp(START + 1500, UTC)
    for rank in range(world):
        node = job_nodes[rank // 8]
        gpu = fleet.gpus[node][rank % 8]
        bus = gpu.pci[5:7].lstrip("0") + "000"
        lag = 1 if rank == straggler else 0
        stamp = when.strftime("%m%d %H:%M:%S") + f".{rank:06d}000"
        fleet.rank_logs[rank] = [
            f"{node}:{7000 + rank}:{7000 + rank} [{rank % 8}] NCCL INFO comm 0x55d{rank:05x} rank {rank} "
            f"nranks {world} cudaDev {rank % 8} nvmlDev {rank % 8} busId {bus} commId 0x9a1b2c3d4e5f6071 - Init COMPLETE",
            f"[rank{rank}]:[E{stamp} ProcessGroupNCCL.cpp:632] [Rank {rank}] Watchdog caught collective "
            f"operation timeout: WorkNCCL(SeqNum={seq - lag}, OpType=ALLREDUCE, NumelIn=262144000, "
            f"NumelOut=262144000, Timeout(ms)=600000) ran for 600043 milliseconds before timing out.",
            f"[rank{rank}]:[E{stamp} ProcessGroupNCCL.cpp:2303] [PG ID 0 PG GUID 0(default_pg) Rank {rank}]  "
            f"failure detected by watchdog at work sequence id: {seq - lag} PG status: last enqueued work: "
            f"{seq - lag}, last completed work: {seq - 1 - lag}",
        ]
    node = job_nodes[straggler // 8]
    answer.expected.append(
        Expected(
            "nccl_hang", node, "restart_job", fleet.gpus[node][straggler % 8].pci, rank=straggler
        )
    )


def thermal_cooling_fault(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    start = START + 300
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS"] = lambda s: (
        0x40 | 0x8 if s >= start else 4
    )
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_GPU_TEMP"] = lambda s: (
        92 if s >= start else 70
    )
    answer.expected.append(Expected("thermal_throttle", node, "check_cooling", gpu.pci))


def aer_storm(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    gpu = fleet.pick_gpu(node)
    t = START + fleet.rng.uniform(300, 1200)
    for k in range(60):
        at = t + k * 3.0
        fleet.kern(
            node, at, f"pcieport 0000:{gpu.pci[5:7]}:00.0: AER: Corrected error received: {gpu.pci}"
        )
        fleet.kern(
            node,
            at,
            f"nvidia {gpu.pci}: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)",
        )
        fleet.kern(
            node, at, f"nvidia {gpu.pci}:   device [10de:2330] error status/mask=00000001/0000e000"
        )
        fleet.kern(node, at, f"nvidia {gpu.pci}:    [ 0] RxErr                  (First)")
    answer.expected.append(Expected("pcie_aer", node, "inspect_pcie", gpu.pci))


def eviction_storm(fleet: Fleet, answer: Answer) -> None:
    node = fleet.pick_node()
    t = START + fleet.rng.uniform(300, 1000)
    for k in range(5):
        pod = f"batch-{fleet.rng.randrange(10**5):05d}"
        message = (
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: "
            f"{fleet.rng.randrange(20, 90)}Mi. Container main was using 480Gi, request is 0, "
            "has larger consumption of memory. "
        )
        fleet.k8s.append(
            (t + k * 60, _k8s_event("Evicted", message, "Pod", pod, "batch", t + k * 60, node, k))
        )
    answer.expected.append(Expected("pod_evicted", node, "investigate"))


# --- combined scenarios: findings that are one incident ---------------------------------


def _cri(t: float, text: str) -> str:
    """A container log line as the runtime writes it: UTC time, stream, ``F``, text."""
    return f"{datetime.fromtimestamp(t, UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}000Z stderr F {text}"


def _start_job(fleet: Fleet, job: str, nodes: list[str], t: float) -> dict[int, Gpu]:
    """A job with one rank on every GPU of ``nodes``: each rank's ``Init COMPLETE``."""
    ranks = {r: gpu for r, gpu in enumerate(g for n in nodes for g in fleet.gpus[n])}
    comm = fleet.rng.getrandbits(60)
    logs = fleet.job_logs.setdefault(job, {})
    for rank, gpu in ranks.items():
        bus = gpu.pci[5:7].lstrip("0") + "000"
        logs[rank] = [
            _cri(
                t + rank * 0.001,
                f"{gpu.node}:{7000 + rank}:{7000 + rank} [{gpu.index}] NCCL INFO comm "
                f"0x55d{rank:05x} rank {rank} nranks {len(ranks)} cudaDev {gpu.index} "
                f"nvmlDev {gpu.index} busId {bus} commId {comm:#x} - Init COMPLETE",
            )
        ]
    fleet.job_nodes.update(nodes)
    return ranks


def _timed_out(fleet: Fleet, job: str, rank: int, t: float, seq: int, completed: int) -> None:
    """Rank ``rank``'s watchdog fires on collective ``seq``; it last completed ``completed``."""
    glog = datetime.fromtimestamp(t, UTC)
    stamp = f"{glog.month}{glog:%d %H:%M:%S}.{glog.microsecond:06d}000"
    fleet.job_logs[job][rank] += [
        _cri(
            t,
            f"[rank{rank}]:[E{stamp} ProcessGroupNCCL.cpp:632] [Rank {rank}] Watchdog caught "
            f"collective operation timeout: WorkNCCL(SeqNum={seq}, OpType=ALLREDUCE, "
            "NumelIn=262144000, NumelOut=262144000, Timeout(ms)=600000) ran for 600043 "
            "milliseconds before timing out.",
        ),
        _cri(
            t + 0.001,
            f"[rank{rank}]:[E{stamp} ProcessGroupNCCL.cpp:2303] [PG ID 0 PG GUID 0(default_pg) "
            f"Rank {rank}]  failure detected by watchdog at work sequence id: {seq} PG status: "
            f"last enqueued work: {seq}, last completed work: {completed}",
        ),
    ]


def _unrelated_hang(fleet: Fleet, answer: Answer, job: str, nodes: list[str], t: float) -> None:
    """A decoy: another job on other nodes, one of its ranks a straggler, at about the
    same time. Its hang is its own: nothing may link it to the fault."""
    if not nodes:
        return
    ranks = _start_job(fleet, job, nodes, START + 90)
    seq = fleet.rng.randrange(1000, 90000)
    straggler = fleet.rng.randrange(len(ranks))
    for rank in ranks:
        lag = 1 if rank == straggler else 0
        _timed_out(fleet, job, rank, t + rank * 0.01, seq - lag, seq - 1 - lag)
    gpu = ranks[straggler]
    decoy = Expected("nccl_hang", gpu.node, "restart_job", gpu.pci, straggler, job)
    answer.expected.append(decoy)
    answer.alone.append(decoy)


def xid79_hangs_nccl_job(fleet: Fleet, answer: Answer) -> None:
    """A GPU falls off the bus under a rank of a training job; the job's other ranks
    time out 10 minutes later (that rank never answers); the node's pods are evicted.
    One incident: the Xid 79 is the root, the hang and the evictions its effects, and
    the node goes (reboot_node), not just the job restarted. Beside it, another job on
    other nodes hangs on its own straggler."""
    job_nodes = fleet.rng.sample(fleet.nodes, min(2, len(fleet.nodes)))
    ranks = _start_job(fleet, "train-llama", job_nodes, START + 60)
    lost = fleet.rng.randrange(len(ranks))
    gpu = ranks[lost]
    node = gpu.node
    t = START + fleet.rng.uniform(300, 600)
    _identity(fleet, gpu, t)
    _xid(fleet, gpu, t, 79, "GPU has fallen off the bus.")
    fleet.kern(node, t, f"NVRM: GPU {gpu.pci}: GPU has fallen off the bus.")
    fleet.dcgm_overrides[node, gpu.index, "DCGM_FI_DEV_XID_ERRORS"] = lambda s: 79 if s >= t else 0
    seq = fleet.rng.randrange(1000, 90000)
    for rank in ranks:
        if rank != lost:  # the lost GPU's rank is stuck in its kernel: it never reports
            _timed_out(fleet, "train-llama", rank, t + 600 + rank * 0.01, seq, seq - 1)
    for k, pod in enumerate((f"train-llama-{job_nodes.index(node)}", "node-exporter-x7k2p")):
        at = t + 660 + 20 * k
        message = f"Marking for deletion Pod ml/{pod} from Node {node}"
        event = _k8s_event("NodeControllerEviction", message, "Node", node, None, at, None, 300 + k)
        fleet.k8s.append((at, event))
    root = Expected("xid_correlation", node, "reboot_node", gpu.pci)
    hang = Expected("nccl_hang", node, "restart_job", gpu.pci, lost, "train-llama")
    evicted = Expected("pod_evicted", node, "none")
    answer.expected += [root, hang, evicted]
    answer.incidents.append(
        ExpectedIncident("hardware_on_gpu", root, [hang, evicted], "reboot_node")
    )
    others = [n for n in fleet.nodes if n not in job_nodes]
    _unrelated_hang(fleet, answer, "eval-sweep", others, t + 630)


def gpus_off_bus_one_node(fleet: Fleet, answer: Answer) -> None:
    """Two GPUs of one node fall off the bus seconds apart (what a failing power supply
    or PCIe switch does), the first with a fatal AER on its own address; a job with
    ranks on the node times out 10 minutes later. One incident of the node, not one
    GPU's fault that the other followed: the first GPU's Xid 79 is the root (the
    incident's id as it grows), the other Xid 79, the AER, xid_correlation's node-wide
    finding and the hang its effects; the node is rebooted. Beside it, another job on
    other nodes hangs on its own straggler."""
    job_nodes = fleet.rng.sample(fleet.nodes, min(2, len(fleet.nodes)))
    node = job_nodes[0]
    ranks = _start_job(fleet, "train-llama", job_nodes, START + 60)
    first, second = fleet.rng.sample(fleet.gpus[node], 2)
    t = START + fleet.rng.uniform(300, 600)
    for k, gpu in enumerate((first, second)):
        at = t + k * fleet.rng.uniform(1, 6)
        _identity(fleet, gpu, at)
        _xid(fleet, gpu, at, 79, "GPU has fallen off the bus.")
        fleet.kern(node, at, f"NVRM: GPU {gpu.pci}: GPU has fallen off the bus.")
    port = f"0000:{first.pci[5:7]}:00.0"
    for line in (
        f"pcieport {port}: AER: Uncorrected (Fatal) error received: {first.pci}",
        f"nvidia {first.pci}: PCIe Bus Error: severity=Uncorrected (Fatal), "
        "type=Transaction Layer, (Receiver ID)",
        f"nvidia {first.pci}:   device [10de:2330] error status/mask=00000020/00000000",
        f"nvidia {first.pci}:    [ 5] SDES                   (First)",
    ):
        fleet.kern(node, t + 0.5, line)
    seq = fleet.rng.randrange(1000, 90000)
    lost = {r for r, gpu in ranks.items() if gpu in (first, second)}
    for rank in ranks:
        if rank not in lost:  # the lost GPUs' ranks are stuck in their kernels
            _timed_out(fleet, "train-llama", rank, t + 600 + rank * 0.01, seq, seq - 1)
    root = Expected("xid_correlation", node, "reboot_node", first.pci)
    other = Expected("xid_correlation", node, "reboot_node", second.pci)
    node_wide = Expected("xid_correlation", node, "drain_node")
    aer = Expected("pcie_aer", node, "inspect_pcie", first.pci)
    hang = Expected("nccl_hang", None, "restart_job", job="train-llama")
    answer.expected += [root, other, node_wide, aer, hang]
    answer.incidents.append(
        ExpectedIncident("hardware_on_node", root, [other, node_wide, aer, hang], "reboot_node")
    )
    others = [n for n in fleet.nodes if n not in job_nodes]
    _unrelated_hang(fleet, answer, "eval-sweep", others, t + 630)


def app_xid31_nccl_job(fleet: Fleet, answer: Answer) -> None:
    """A job's own bug: Xid 31 (MMU fault) on half the GPUs of each of its nodes at once,
    whose ranks die; the job's other ranks time out 10 minutes later. One incident: the
    application Xid is the root, the NCCL hang its effect, fix_application the action.
    Beside it, another job on other nodes hangs on its own straggler."""
    job_nodes = fleet.rng.sample(fleet.nodes, min(2, len(fleet.nodes)))
    for i, node in enumerate(job_nodes):
        fleet.pods[node] = f"llm-pretrain-{i}"
    ranks = _start_job(fleet, "llm-pretrain", job_nodes, START + 60)
    t = START + fleet.rng.uniform(300, 600)
    seq = fleet.rng.randrange(1000, 90000)
    for rank, gpu in ranks.items():
        if gpu.index < 4:
            _xid(
                fleet,
                gpu,
                t + rank * 0.05,
                31,
                "channel 0x00000008, intr 00000000. MMU Fault: ENGINE GRAPHICS GPC3 "
                "GPCCLIENT_T1_2 faulted @ 0x7f2b_10000000. Fault is of type FAULT_PDE "
                "ACCESS_TYPE_VIRT_WRITE",
            )
        else:
            _timed_out(fleet, "llm-pretrain", rank, t + 600 + rank * 0.01, seq, seq - 1)
    root = Expected("xid_correlation", None, "fix_application", job="ml/llm-pretrain")
    hang = Expected("nccl_hang", None, "restart_job", job="llm-pretrain")
    answer.expected += [root, hang]
    answer.incidents.append(ExpectedIncident("application_xid", root, [hang], "fix_application"))
    others = [n for n in fleet.nodes if n not in job_nodes]
    _unrelated_hang(fleet, answer, "eval-grid", others, t + 630)


def healthy(fleet: Fleet, answer: Answer) -> None:
    # A normal day: pods come and go, one pod is evicted for using too much disk.
    for k in range(6):
        node = fleet.pick_node()
        fleet.k8s.append(
            (
                START + 100 * k,
                _k8s_event(
                    "Scheduled",
                    f"Successfully assigned ml/run-{k} to {node}",
                    "Pod",
                    f"run-{k}",
                    "ml",
                    START + 100 * k,
                    None,
                    100 + k,
                ),
            )
        )
    node = fleet.pick_node()
    fleet.k8s.append(
        (
            START + 900,
            _k8s_event(
                "Evicted",
                "Pod ephemeral local storage usage exceeds the total limit of containers 10Gi. ",
                "Pod",
                "notebook-3",
                "research",
                START + 900,
                node,
                200,
            ),
        )
    )


SCENARIOS: Final[dict[str, Callable[[Fleet, Answer], None]]] = {
    "xid79-fallen-off-bus": xid79,
    "gsp-timeout": gsp_timeout,
    "dbe-row-remap": dbe_row_remap,
    "remap-failure": remap_failure,
    "nvlink-storm": nvlink_storm,
    "nvlink-link-errors": nvlink_link_errors,
    "app-xid-job": app_xid_job,
    "nccl-straggler": nccl_straggler,
    "thermal-cooling-fault": thermal_cooling_fault,
    "aer-storm": aer_storm,
    "eviction-storm": eviction_storm,
    "healthy": healthy,
}
"""One fault each: also the benchmarks' workload (``bench/harness.py``) and the fleet
check's fleet (``fleet/check.py``), whose ceilings and answers are measured on them."""

INCIDENT_SCENARIOS: Final[dict[str, Callable[[Fleet, Answer], None]]] = {
    "xid79-hangs-nccl-job": xid79_hangs_nccl_job,
    "gpus-off-bus-one-node": gpus_off_bus_one_node,
    "app-xid31-nccl-job": app_xid31_nccl_job,
}
"""A fault and what followed from it, beside an unrelated hang: incidents' answer keys."""

ALL_SCENARIOS: Final = {**SCENARIOS, **INCIDENT_SCENARIOS}


def simulate(
    scenario: str, out: Path, seed: int = 1, nodes: int = 4, lines_per_node: int = 2000
) -> Answer:
    """Write the fleet of ``scenario`` under ``out``; return (and write) its answer."""
    if scenario not in ALL_SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r} (one of {', '.join(ALL_SCENARIOS)})")
    if nodes < 1:
        raise ValueError("--nodes must be at least 1")
    fleet = Fleet(out, nodes, seed, lines_per_node)
    answer = Answer(scenario, seed)
    ALL_SCENARIOS[scenario](fleet, answer)
    answer.clean_nodes = sorted(set(fleet.nodes) - fleet.touched())
    out.mkdir(parents=True, exist_ok=True)
    fleet.write()
    (out / "answer.json").write_text(json.dumps(asdict(answer), indent=2) + "\n")
    return answer

"""hbm_ecc, pod_evicted, pcie_aer, thermal_throttle and nccl_hang on real-format input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fleetwatch.config import load
from fleetwatch.detectors.pcie_aer import PcieAer
from fleetwatch.events import KIND_ID
from fleetwatch.findings import Action, Finding, Severity
from fleetwatch.replay import replay
from fleetwatch.sources.context import ReadOptions
from fleetwatch.timestamps import parse_zone
from tests.conftest import DATA
from tests.detectors.conftest_helpers import findings
from tests.detectors.test_state import events_of
from tests.sources.test_jsonl import nvml_series_as_events


def dcgm(node: str, pci: str, metric: str, value: float, ts_ms: int) -> str:
    return (
        f'{metric}{{gpu="0",UUID="GPU-1",pci_bus_id="0000:{pci}.0",Hostname="{node}"}} '
        f"{value} {ts_ms}\n"
    )


# --- hbm_ecc -------------------------------------------------------------------------


def test_a_flood_of_xid_95_is_one_memory_finding(tmp_path: Path) -> None:
    line = "[ 1900.001000] NVRM: Xid (PCI:0000:86:00): 95, pid=2633, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No\n"
    out = findings(tmp_path, {"gpu-1/dmesg": line * 100_000}, only="hbm_ecc")
    assert len(out) == 1
    assert (out[0].count, out[0].severity, out[0].action) == (
        100_000,
        Severity.CRITICAL,
        Action.RESET_GPU,
    )


def test_uncorrectable_counter_deltas_survive_a_reset(tmp_path: Path) -> None:
    t = 1_717_495_200_000
    scrape = "".join(
        [
            dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 4, t),  # baseline: history
            dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 4, t + 15_000),
            dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", 6, t + 30_000),  # +2
        ]
    )
    (only,) = findings(tmp_path, {"gpu-1/dcgm.prom": scrape}, only="hbm_ecc")
    assert "2 new uncorrectable ECC error(s)" in only.summary and only.action == Action.RESET_GPU
    reset = "".join(
        [
            dcgm("gpu-2", "3b:00", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 0, t),
            dcgm("gpu-2", "3b:00", "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 0, t + 15_000),
        ]
    )
    assert findings(tmp_path / "b", {"gpu-2/dcgm.prom": reset}, only="hbm_ecc") == []
    after_reset = "".join(
        [
            dcgm("gpu-3", "3b:00", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", 900, t),
            dcgm("gpu-3", "3b:00", "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", 3, t + 15_000),  # reset: +3
        ]
    )
    assert findings(tmp_path / "c", {"gpu-3/dcgm.prom": after_reset}, only="hbm_ecc") == []


def test_pending_remap_resets_and_failure_or_limit_means_rma(tmp_path: Path) -> None:
    t = 1_717_495_200_000
    pending = dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_ROW_REMAP_PENDING", 1, t)
    (p,) = findings(tmp_path / "a", {"gpu-1/d.prom": pending}, only="hbm_ecc")
    assert (p.action, p.severity) == (Action.RESET_GPU, Severity.WARNING)
    failed = dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_ROW_REMAP_FAILURE", 1, t)
    (f,) = findings(tmp_path / "b", {"gpu-1/d.prom": failed}, only="hbm_ecc")
    assert (f.action, f.severity) == (Action.RMA_GPU, Severity.CRITICAL)
    many = dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 8, t)
    (m,) = findings(tmp_path / "c", {"gpu-1/d.prom": many}, only="hbm_ecc")
    assert m.action == Action.RMA_GPU and "8 rows remapped" in m.summary


def test_memory_xids_and_counters_are_one_finding_per_gpu(tmp_path: Path) -> None:
    files = {
        "gpu-1/kern.log": "Jun  4 10:00:00 gpu-1 kernel: NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
        "Jun  4 10:00:01 gpu-1 kernel: NVRM: Xid (PCI:0000:3b:00): 63, pid=1, name=a, Row Remapper: New row marked for remapping, reset gpu to activate.\n",
        "gpu-1/dcgm.prom": dcgm(
            "gpu-1", "3b:00", "DCGM_FI_DEV_ROW_REMAP_PENDING", 1, 1_717_495_205_000
        ),
    }
    (only,) = findings(tmp_path, files, only="hbm_ecc")
    assert only.count == 3 and only.action == Action.RESET_GPU and only.severity == Severity.ERROR
    assert "Xid 48" in only.summary and "Xid 63" in only.summary and "pending" in only.summary


def test_the_real_h100_snapshots_have_no_memory_finding(tmp_path: Path) -> None:
    files = {f"h100/{p.name}": p.read_text() for p in (DATA / "h100").glob("nvidia-smi*")}
    assert findings(tmp_path, files) == []


# --- pod_evicted -----------------------------------------------------------------------


def test_an_eviction_storm_names_its_reasons(tmp_path: Path) -> None:
    events = "".join(
        json.dumps(
            {
                "type": "ADDED",
                "object": {
                    "kind": "Event",
                    "involvedObject": {"kind": "Pod", "name": f"job-{i}", "namespace": "ml"},
                    "reason": "Evicted",
                    "message": "The node was low on resource: memory. ",
                    "source": {"component": "kubelet", "host": "gpu-5"},
                    "lastTimestamp": f"2024-06-04T10:0{i}:00Z",
                },
            }
        )
        + "\n"
        for i in range(3)
    )
    (only,) = findings(tmp_path, {"cluster/events.jsonl": events}, only="pod_evicted")
    assert (only.severity, only.action, only.node) == (
        Severity.WARNING,
        Action.INVESTIGATE,
        "gpu-5",
    )
    assert (
        "3 pod(s) evicted from gpu-5" in only.summary
        and "Evicted (low on memory) x3" in only.summary
    )
    one = findings(
        tmp_path / "b", {"cluster/e.jsonl": events.splitlines()[0] + "\n"}, only="pod_evicted"
    )
    assert [f.severity for f in one] == [Severity.INFO]


def test_evictions_after_a_fault_are_its_impact_though_the_fault_repeats_later() -> None:
    """The fault an eviction follows is the node's latest one before it: an Xid 79 that
    repeats after the evictions, in the same batch, does not hide the first (a replay
    reads them all in one batch; the simulated xid79-hangs-nccl-job has this)."""
    from fleetwatch.detectors.pod_evicted import PodEvicted
    from fleetwatch.events import BatchBuilder

    builder = BatchBuilder()
    t0 = 1717495664.0
    for ts in (t0, t0 + 1200.0):  # the Xid, and its repeat 20 minutes on
        builder.add({"kind": "xid", "ts": ts, "clock": "wall", "node": "n1", "code": 79})
    for i, ts in enumerate((t0 + 660.0, t0 + 680.0)):
        builder.add(
            {
                "kind": "pod_evicted",
                "ts": ts,
                "clock": "wall",
                "node": "n1",
                "pod": f"p{i}",
                "reason": "NodeControllerEviction",
            }
        )
    batch = builder.seal()
    order = np.argsort(batch["ts"], kind="stable")
    (found,) = PodEvicted().process(batch.take(order))
    assert "right after Xid 79" in found.summary and found.action is Action.NONE


# --- pcie_aer --------------------------------------------------------------------------


def test_aer_severity_and_attribution_to_the_gpu_behind_a_port(tmp_path: Path) -> None:
    out = findings(
        tmp_path, {"gpu-1/dmesg": (DATA / "kernel" / "aer.dmesg").read_text()}, only="pcie_aer"
    )
    got = {f.pci: f.severity for f in out}
    assert got == {
        "0000:81:00.0": Severity.ERROR,
        "10003:01:00.0": Severity.CRITICAL,
        "0000:c0:01.1": Severity.CRITICAL,
    }  # single corrected errors are no finding
    burst = (
        "[ 10.000000] nvidia 0000:3b:00.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer, (Requester ID)\n"
        "[ 10.000001] nvidia 0000:3b:00.0:   device [10de:2330] error status/mask=00004000/00000000\n"
        "[ 10.200000] pcieport 0000:3a:00.0: PCIe Bus Error: severity=Uncorrected (Non-Fatal), type=Transaction Layer, (Requester ID)\n"
        "[ 10.200001] pcieport 0000:3a:00.0:   device [1000:c030] error status/mask=00004000/00000000\n"
    )
    (only,) = findings(tmp_path / "b", {"gpu-2/dmesg": burst}, only="pcie_aer")
    assert only.pci == "0000:3b:00.0" and only.count == 2


def test_a_corrected_aer_storm_is_a_warning(tmp_path: Path) -> None:
    report = (
        "[{t:.6f}] nvidia 0000:3b:00.0: PCIe Bus Error: severity=Corrected, type=Physical Layer, (Receiver ID)\n"
        "[{t:.6f}] nvidia 0000:3b:00.0:   device [10de:2330] error status/mask=00000001/0000e000\n"
    )
    text = "".join(report.format(t=100.0 + i) for i in range(25))
    (only,) = findings(tmp_path, {"gpu-1/dmesg": text}, only="pcie_aer")
    assert (only.severity, only.action) == (Severity.WARNING, Action.INSPECT_PCIE)
    assert "25 corrected AER error(s)" in only.summary


# --- thermal_throttle -------------------------------------------------------------------


def test_the_real_h100_power_cap_series_is_no_finding(tmp_path: Path) -> None:
    events = nvml_series_as_events(DATA / "h100" / "nvml.json", "h100-vm")
    text = "".join(json.dumps(e) + "\n" for e in events)
    assert findings(tmp_path, {"h100-vm/nvml.jsonl": text}) == []


def test_one_gpu_throttling_while_its_peers_do_not_is_its_cooling(tmp_path: Path) -> None:
    rows = []
    for i in range(60):
        for g in range(4):
            reasons = 0x40 if g == 2 else 0x4  # GPU 2 hot, the others at their power cap
            rows.append(
                {
                    "kind": "clock_event",
                    "ts": 1_717_495_200 + i * 5,
                    "node": "gpu-7",
                    "pci": f"0000:{g + 1:02x}:00.0",
                    "gpu": g,
                    "value": reasons,
                }
            )
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out = findings(tmp_path, {"gpu-7/nvml.jsonl": text}, only="thermal_throttle")
    assert {f.pci for f in out} == {"0000:03:00.0"}
    assert all(f.action == Action.CHECK_COOLING for f in out)
    assert "a cooling fault on this GPU" in out[0].summary


def test_one_snapshot_in_thermal_slowdown_is_an_unconfirmed_check_cooling(tmp_path: Path) -> None:
    text = (DATA / "smi" / "two-gpus-throttled.txt").read_text()
    (only,) = findings(tmp_path, {"gpu-3/smi.txt": text}, only="thermal_throttle")
    assert (only.severity, only.action) == (Severity.WARNING, Action.CHECK_COOLING)
    assert only.pci == "0000:07:00.0" and "unconfirmed" in only.summary
    # the other GPU of the report is at its power cap: that is no finding
    untimed = "\n".join(line for line in text.splitlines() if "Timestamp" not in line)
    (again,) = findings(tmp_path / "untimed", {"gpu-3/smi.txt": untimed}, only="thermal_throttle")
    assert again.pci == "0000:07:00.0" and again.first_ts is None


def test_real_reports_at_idle_or_power_cap_stay_silent(tmp_path: Path) -> None:
    reports = [*sorted((DATA / "smi").glob("[0-9]*")), DATA / "real" / "a100-nvidia-smi-q.txt"]
    files = {f"node-{i}/{p.name}": p.read_text() for i, p in enumerate(reports)}
    assert findings(tmp_path, files, only="thermal_throttle") == []


def test_a_sustained_series_confirms_the_snapshot_s_finding(tmp_path: Path) -> None:
    def sample(ts: int) -> str:
        fields = {"kind": "clock_event", "ts": ts, "node": "gpu-7", "pci": "0000:03:00.0"}
        return json.dumps({**fields, "value": 0x20}) + "\n"

    snapshot = findings(tmp_path / "one", {"gpu-7/a.jsonl": sample(1_717_495_210)})
    series = "".join(sample(1_717_495_210 + i * 10) for i in range(60))
    sustained = findings(tmp_path / "all", {"gpu-7/a.jsonl": series})
    assert [f.id for f in snapshot] == [f.id for f in sustained]  # one incident, upgraded
    assert "unconfirmed" in snapshot[0].summary and "unconfirmed" not in sustained[0].summary


# --- nccl_hang ----------------------------------------------------------------------------


def test_the_straggler_rank_is_named_with_its_node_and_gpu(tmp_path: Path) -> None:
    files = {
        f"job/{p.name}": p.read_text() for p in (Path("examples") / "nccl-straggler").glob("*.log")
    }
    (only,) = findings(tmp_path, files, only="nccl_hang")
    assert (only.rank, only.node, only.pci, only.action) == (
        3,
        "gpu-node-32",
        "0000:18:00.0",
        Action.RESTART_JOB,
    )
    assert "rank 3 last completed 5118" in only.summary


def test_a_rank_that_never_reports_is_the_culprit(tmp_path: Path) -> None:
    log = (DATA / "nccl" / "job-4-ranks.log").read_text().splitlines()
    inits = [line for line in log if "Init COMPLETE" in line]
    timeouts = [
        f"[rank{r}]:[E1206 18:44:12.715298746 ProcessGroupNCCL.cpp:607] [Rank {r}] Watchdog caught "
        f"collective operation timeout: WorkNCCL(SeqNum=96, OpType=ALLREDUCE, Timeout(ms)=600000) "
        "ran for 600012 milliseconds before timing out."
        for r in (0, 1, 3)
    ]
    (only,) = findings(
        tmp_path, {"job/all.log": "\n".join(inits + timeouts) + "\n"}, only="nccl_hang"
    )
    assert only.rank == 2 and only.node == "gpu-node-4"
    assert "rank 2 never reported while 3 of 4 ranks timed out" in only.summary


def test_the_real_single_rank_timeout_names_the_rank_that_timed_out(tmp_path: Path) -> None:
    text = (DATA / "h100" / "nccl-watchdog-timeout.log").read_text()
    (only,) = findings(tmp_path, {"vm/train.log": text}, only="nccl_hang")
    assert only.rank == 0 and only.action == Action.RESTART_JOB
    assert only.node == "vm" and only.pci == "0000:00:06.0"  # from its Init COMPLETE line
    assert "1 of 1 ranks timed out on sequence 4" in only.summary
    assert "only rank 0 timed out (on sequence 4); it is the job's only rank" in only.summary


def test_replay_rate_is_judged_against_the_link_s_lanes_and_generation(tmp_path: Path) -> None:
    t = 1_717_495_200_000

    def node(name: str, width: int, gen: int) -> dict[str, str]:
        smi = (
            f"timestamp, index, pci.bus_id, pcie.link.width.current, pcie.link.gen.current\n"
            f"2024/06/04 10:00:00.000, 0, 00000000:3B:00.0, {width}, {gen}\n"
        )
        replays = "".join(
            dcgm(name, "3b:00", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 6 * i, t + 60_000 * i)
            for i in range(3)
        )  # 6 replays a minute
        return {f"{name}/query.csv": smi, f"{name}/dcgm.prom": replays}

    wide = findings(tmp_path / "a", node("gpu-1", 16, 5), only="pcie_aer")
    assert wide == []  # 6/min is under 10/min on x16 Gen 5
    (narrow,) = findings(tmp_path / "b", node("gpu-2", 8, 4), only="pcie_aer")
    assert "limit 2.5 for this link" in narrow.summary and "x8" in narrow.summary


def test_a_link_that_narrows_later_is_judged_against_its_new_limit(tmp_path: Path) -> None:
    """The limit a GPU's link had (kept while its width and generation stand) is not
    the one it has once nvidia-smi sees it run x8 Gen 4, nor after a restore."""
    t = 1_717_495_200_000
    smi = (
        "timestamp, index, pci.bus_id, pcie.link.width.current, pcie.link.gen.current\n"
        "2024/06/04 10:00:00.000, 0, 00000000:3B:00.0, 16, 5\n"
        "2024/06/04 10:03:00.000, 0, 00000000:3B:00.0, 8, 4\n"
    )
    replays = "".join(  # 6 replays a minute all through
        dcgm("gpu-1", "3b:00", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 6 * i, t + 60_000 * i)
        for i in range(6)
    )
    (tmp_path / "gpu-1").mkdir()
    (tmp_path / "gpu-1" / "query.csv").write_text(smi)
    (tmp_path / "gpu-1" / "dcgm.prom").write_text(replays)
    events = events_of(tmp_path)
    ts = events["ts"]
    wide, narrow = (
        events.take(np.flatnonzero(part)) for part in (ts < t / 1000 + 150, ts >= t / 1000 + 150)
    )

    detector = PcieAer()
    assert detector.process(wide) == []  # 6/min is under 10/min on x16 Gen 5
    (found,) = detector.process(narrow)
    assert "limit 2.5 for this link" in found.summary

    saved = PcieAer()
    saved.process(events.take(np.flatnonzero(events["kind"] == KIND_ID["pcie_link"])))
    restored = PcieAer()
    assert restored.process(wide) == []
    restored.restore(saved.state())  # x8 Gen 4 now
    (found,) = restored.process(narrow.take(np.flatnonzero(narrow["kind"] != KIND_ID["pcie_link"])))
    assert "limit 2.5 for this link" in found.summary


def test_same_pci_address_on_two_nodes_stays_two_gpus(tmp_path: Path) -> None:
    rows = []
    for i in range(60):
        for node in ("gpu-a", "gpu-b"):
            for g in range(3):
                hot = node == "gpu-a" and g == 1
                rows.append(
                    {
                        "kind": "clock_event",
                        "ts": 1_717_495_200 + i * 5,
                        "node": node,
                        "pci": f"0000:{g + 1:02x}:00.0",
                        "value": 0x40 if hot else 0x4,
                    }
                )
    text = "".join(json.dumps(r) + "\n" for r in rows)
    out = findings(tmp_path, {"fleet/nvml.jsonl": text}, only="thermal_throttle")
    assert {(f.node, f.pci) for f in out} == {("gpu-a", "0000:02:00.0")}
    assert "a cooling fault on this GPU" in out[0].summary


def test_a_lone_timeout_names_its_rank_and_the_ranks_never_heard_from(tmp_path: Path) -> None:
    lines = (DATA / "nccl" / "job-4-ranks.log").read_text().splitlines()
    inits = [line for line in lines if "Init COMPLETE" in line]
    (timeout,) = [line for line in lines if line.startswith("[default0]:[rank0]")]
    (only,) = findings(tmp_path, {"job-7/all.log": "\n".join([*inits, timeout])}, only="nccl_hang")
    assert only.rank == 0 and only.node == "gpu-node-3" and only.pci == "0000:07:00.0"
    assert "only rank 0 timed out (on sequence 96); ranks 1-3 were never heard from" in (
        only.summary
    )
    assert only.job == "job-7"


def test_a_lone_timeout_without_a_world_size_says_the_others_are_unknown(tmp_path: Path) -> None:
    lines = (DATA / "nccl" / "job-4-ranks.log").read_text().splitlines()
    (timeout,) = [line for line in lines if line.startswith("[default0]:[rank0]")]
    (only,) = findings(tmp_path, {"gpu-node-3/rank0.log": timeout}, only="nccl_hang")
    assert only.rank == 0 and only.node == "gpu-node-3"  # from the node folder
    assert "no other rank's log is here, so where the others stopped is unknown" in only.summary


def _replay_folder(path: Path) -> list[Finding]:
    out = replay([str(path)], load(None), ReadOptions(year=2024, zone=parse_zone("UTC")))
    return [f for f in out if f.detector == "nccl_hang"]


def test_ranks_in_different_collectives_at_one_sequence_are_the_application_s() -> None:
    (only,) = _replay_folder(DATA / "nccl" / "per-node")  # cn-d003/ and cn-d004/: one job
    assert (only.action, only.severity) == (Action.FIX_APPLICATION, Severity.ERROR)
    assert only.rank is None and only.job == "cn-d003"
    assert "ALLREDUCE on ranks 2, 5; REDUCE on ranks 11-12, 14-15" in only.summary
    assert "with the logs of cn-d004" in only.summary


def test_one_job_whose_logs_sit_in_two_node_folders_is_one_finding() -> None:
    (only,) = _replay_folder(DATA / "nccl" / "split")
    assert only.action == Action.RESTART_JOB and "with the logs of node-b" in only.summary
    assert "2 ranks timed out on sequence 1580" in only.summary


def test_two_jobs_hanging_in_other_collectives_stay_two(tmp_path: Path) -> None:
    text = (DATA / "nccl" / "split" / "node-b" / "train.log").read_text()
    other = text.replace("SeqNum=1580", "SeqNum=977")
    files = {"node-a/train.log": (DATA / "nccl" / "split" / "node-a" / "train.log").read_text()}
    found = findings(tmp_path, {**files, "node-b/train.log": other}, only="nccl_hang")
    assert sorted(f.job or "" for f in found) == ["node-a", "node-b"]

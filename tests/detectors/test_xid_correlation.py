"""xid_correlation: classify, fold, and tell jobs from nodes from fabrics."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.detectors.xid_correlation import XidCorrelation
from fleetwatch.events import concat
from fleetwatch.findings import Action, Severity
from fleetwatch.sources import ReadOptions, read_paths
from fleetwatch.timestamps import parse_zone
from tests.conftest import DATA, parse
from tests.detectors.conftest_helpers import findings


def kern(t: float, pci: str, code: int, text: str = "x", pid: str = "pid=7, name=python3, ") -> str:
    return f"[{t:12.6f}] NVRM: Xid (PCI:{pci}): {code}, {pid}{text}\n"


def test_a_flood_of_identical_xids_is_one_finding(tmp_path: Path) -> None:
    line = kern(100.0, "0000:3b:00", 158, "Timeout after 6s of waiting for RPC response")
    out = findings(tmp_path, {"gpu-1/dmesg": line * 50_000}, only="xid_correlation")
    assert len(out) == 1
    only = out[0]
    assert (only.count, only.severity, only.action) == (50_000, Severity.CRITICAL, Action.RESET_GPU)
    assert (only.node, only.pci, only.code) == ("gpu-1", "0000:3b:00.0", 158)
    assert len(only.evidence) == 7 and only.evidence[3] == "… 49,994 more"
    assert only.evidence[0].endswith(
        "dmesg:1 xid code=158 Timeout after 6s of waiting for RPC response"
    )


def test_repeats_after_the_gap_are_a_new_incident(tmp_path: Path) -> None:
    text = (
        kern(100.0, "0000:3b:00", 158)
        + kern(150.0, "0000:3b:00", 158)
        + kern(600.0, "0000:3b:00", 158)
    )
    out = findings(tmp_path, {"gpu-1/dmesg": text}, only="xid_correlation")
    assert sorted(f.count for f in out) == [1, 2]
    assert len({f.id for f in out}) == 2


def test_fallen_off_the_bus_records_fold_into_xid_79_with_the_gpu_s_serial(tmp_path: Path) -> None:
    events = (DATA / "kernel" / "xid-shapes.dmesg").read_text().splitlines()[:5]
    out = findings(tmp_path, {"gpu-2/dmesg": "\n".join(events) + "\n"}, only="xid_correlation")
    assert len(out) == 1
    xid79 = out[0]
    assert (xid79.code, xid79.count, xid79.action) == (79, 2, Action.REBOOT_NODE)
    assert xid79.serial == "1320321057890"
    assert xid79.uuid == "GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11"


def test_application_xids_across_a_job_are_the_job_s_bug_and_flag_no_node(tmp_path: Path) -> None:
    files = {}
    for n in range(2):
        scrape = "".join(
            f'DCGM_FI_DEV_GPU_TEMP{{gpu="{g}",pci_bus_id="00000000:{g + 1:02X}:00.0",'
            f'Hostname="gpu-{n}",namespace="ml",pod="llm-pretrain-{n}"}} 60\n'
            for g in range(4)
        )
        log = "".join(
            f"Jun  4 11:02:1{g} gpu-{n} kernel: NVRM: Xid (PCI:0000:{g + 1:02x}:00): 31, pid=4{g}, "
            "name=python3, channel 0x00000008, intr 00000000. MMU Fault\n"
            for g in range(4)
        )
        files[f"gpu-{n}/dcgm.prom"] = scrape
        files[f"gpu-{n}/kern.log"] = log
    out = findings(tmp_path, files, only="xid_correlation")
    assert len(out) == 1
    job = out[0]
    assert (job.action, job.severity, job.job, job.node) == (
        Action.FIX_APPLICATION,
        Severity.WARNING,
        "ml/llm-pretrain",
        None,
    )
    assert job.summary.startswith("Xid 31 (GPU memory page fault) on 8 GPUs on 2 nodes of job")
    assert not job.action.takes_out_of_service


def test_real_h100_xid31_is_an_application_fault(tmp_path: Path) -> None:
    text = (DATA / "h100" / "dmesg-T-xid31-app-fault.txt").read_text()
    (only,) = findings(tmp_path, {"h100-vm/dmesg.txt": text})
    assert (only.action, only.severity, only.code) == (Action.FIX_APPLICATION, Severity.WARNING, 31)
    assert only.serial == "1650724013535" and only.node == "h100-vm"
    assert "the GPU is healthy" in only.summary


def test_one_hardware_xid_on_two_gpus_of_a_node_points_at_the_node(tmp_path: Path) -> None:
    text = kern(100.0, "0000:3b:00", 62) + kern(130.0, "0000:5d:00", 62)
    out = findings(tmp_path, {"gpu-1/dmesg": text}, only="xid_correlation")
    node = [f for f in out if f.pci is None]
    assert len(node) == 1 and node[0].action == Action.DRAIN_NODE
    assert "on 2 GPUs of gpu-1" in node[0].summary
    nvlink = kern(100.0, "0000:3b:00", 74) + kern(101.0, "0000:5d:00", 74)
    out = findings(tmp_path / "b", {"gpu-2/dmesg": nvlink}, only="xid_correlation")
    assert [f.action for f in out if f.pci is None] == [Action.INSPECT_FABRIC]


def test_repeated_fatal_xids_on_one_gpu_escalate_to_rma(tmp_path: Path) -> None:
    text = "".join(kern(1000.0 + 3600 * i, "0000:3b:00", 48 if i % 2 else 62) for i in range(5))
    out = findings(tmp_path, {"gpu-1/dmesg": text}, only="xid_correlation")
    rma = [f for f in out if f.action == Action.RMA_GPU]
    assert len(rma) == 1 and rma[0].count == 5 and rma[0].pci == "0000:3b:00.0"
    fewer = "".join(kern(1000.0 + 3600 * i, "0000:3b:00", 62) for i in range(4))
    assert not [
        f for f in findings(tmp_path / "b", {"gpu-1/dmesg": fewer}) if f.action == Action.RMA_GPU
    ]


def test_xid_45_caused_by_a_previous_xid_belongs_to_it(tmp_path: Path) -> None:
    text = kern(100.0, "0000:c1:00", 149, "NETIR error", pid="") + kern(
        100.5, "0000:c1:00", 45, "Ch 00000001, caused by previous Xid 149"
    )
    out = findings(tmp_path, {"gpu-1/dmesg": text}, only="xid_correlation")
    assert [(f.code, f.count, f.action) for f in out] == [(149, 2, Action.INSPECT_FABRIC)]


def test_xid_154_takes_the_recovery_action_it_names(tmp_path: Path) -> None:
    cases = {
        "None": (Action.NONE, Severity.INFO),
        "Drain P2P": (Action.DRAIN_NODE, Severity.WARNING),
        "Drain and Reset": (Action.RESET_GPU, Severity.ERROR),
        "GPU Reset Required": (Action.RESET_GPU, Severity.ERROR),
        "Node Reboot Required": (Action.REBOOT_NODE, Severity.CRITICAL),
    }
    for i, (name, expected) in enumerate(cases.items()):
        text = kern(
            100.0,
            "0000:c1:00",
            154,
            f"GPU recovery action changed from 0x0 (None) to 0x{i} ({name})",
            pid="",
        )
        (only,) = findings(tmp_path / str(i), {"gpu-1/dmesg": text}, only="xid_correlation")
        assert (only.action, only.severity) == expected, name
    assert (
        "drain the GPU's work first"
        in findings(
            tmp_path / "dr",
            {
                "gpu-1/dmesg": kern(
                    1.0,
                    "0000:c1:00",
                    154,
                    "changed from 0x0 (None) to 0x4 (Drain and Reset)",
                    pid="",
                )
            },
        )[0].summary
    )


def test_sxids_fold_per_switch_toward_the_fabric(tmp_path: Path) -> None:
    out = findings(
        tmp_path,
        {"gpu-1/dmesg": (DATA / "kernel" / "sxid.dmesg").read_text()},
        only="xid_correlation",
    )
    got = sorted((f.pci, f.code, f.count, f.severity) for f in out)
    assert got == [
        ("0000:05:00.0", 20034, 2, Severity.ERROR),
        ("0000:a9:00.0", 22013, 1, Severity.WARNING),
        ("0000:c5:00.0", 12028, 1, Severity.WARNING),
    ]
    assert {f.action for f in out} == {Action.INSPECT_FABRIC}


def test_an_unknown_xid_is_named_and_investigated(tmp_path: Path) -> None:
    (only,) = findings(tmp_path, {"gpu-1/dmesg": kern(1.0, "0000:3b:00", 4242)})
    assert (only.severity, only.action) == (Severity.WARNING, Action.INVESTIGATE)
    assert "Unknown Xid 4242 (unknown)" in only.summary


def test_memory_xids_are_left_to_hbm_ecc(tmp_path: Path) -> None:
    text = kern(1.0, "0000:3b:00", 95, "Uncontained: FBHUB")
    assert findings(tmp_path, {"gpu-1/dmesg": text}, only="xid_correlation") == []


def test_the_healthy_a100_node_has_no_finding(tmp_path: Path) -> None:
    assert parse(DATA / "real" / "a100-node-healthy-dmesg.txt").stats.lines == 7227
    text = (DATA / "real" / "a100-node-healthy-dmesg.txt").read_text()
    assert findings(tmp_path, {"a100/dmesg.txt": text}) == []


def test_boot_clock_dmesg_is_anchored_by_a_line_that_carries_both_stamps(tmp_path: Path) -> None:
    files = {
        # syslog: wall time 2024-06-04 10:00:00 UTC at 1000.0 s since boot
        "gpu-1/kern.log": "Jun  4 10:00:00 gpu-1 kernel: [ 1000.000000] nvidia-nvswitch0: using MSI\n"
        "Jun  4 10:00:00 gpu-1 kernel: [ 1000.000000] NVRM: loading NVIDIA UNIX x86_64 Kernel Module\n",
        # plain dmesg of the same node: the Xid at 1600.5 s since boot
        "gpu-1/dmesg.txt": kern(1600.5, "0000:3b:00", 79, "GPU has fallen off the bus."),
    }
    (only,) = findings(tmp_path, files, only="xid_correlation")
    assert only.first_ts == 1717495200.0 + 600.5  # 10:10:00.5 UTC
    assert only.node == "gpu-1"


def test_a_sample_without_a_time_does_not_erase_the_incident_s_times(tmp_path: Path) -> None:
    files = {
        "gpu-1/kern.log": "Jun  4 10:00:00 gpu-1 kernel: NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=a, GPU has fallen off the bus.\n",
        "gpu-1/dcgm.prom": 'DCGM_FI_DEV_XID_ERRORS{gpu="0",pci_bus_id="00000000:3B:00.0",Hostname="gpu-1"} 79\n',
    }
    (only,) = findings(tmp_path, files, only="xid_correlation")
    assert only.count == 2
    assert only.first_ts == only.last_ts == 1717495200.0


def test_a_job_s_flood_in_one_batch_is_one_finding_that_tells_all_of_it(tmp_path: Path) -> None:
    # one batch holds a run per GPU: the finding is made once, after the last run
    text = "".join(
        kern(100.0 + i, f"0000:{i % 3 + 1:02x}:00", 13, f"record {i}") for i in range(30)
    )
    path = tmp_path / "gpu-1" / "dmesg"
    path.parent.mkdir()
    path.write_text(text)
    options = ReadOptions(node="gpu-1", zone=parse_zone("UTC"))
    batch = concat(list(read_paths([str(path)], options)))
    detector = XidCorrelation()
    (job,) = detector.process(batch)
    assert (job.action, job.count, job.node) == (Action.FIX_APPLICATION, 30, "gpu-1")
    assert " on 3 GPUs of process python3 on gpu-1 at once" in job.summary
    assert len(job.evidence) == 7 and job.evidence[3] == "… 24 more"
    # the first run's first and last records, then the second run's first
    assert [line.rsplit(" ", 1)[1] for line in job.evidence[:3]] == ["0", "27", "1"]
    assert job.evidence[-1].endswith("record 29")
    (again,) = detector.process(batch)
    assert (again.id, again.count) == (job.id, 60)

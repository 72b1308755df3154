"""GSP and RM faults without an Xid (gsp_fault), and AER's other forms (pcie_aer)."""

from __future__ import annotations

import json
from pathlib import Path

from fleetwatch.findings import Action, Severity
from tests.conftest import DATA
from tests.detectors.conftest_helpers import findings

KERNEL = DATA / "kernel"
XID119 = (
    "Apr 24 13:23:29 banana kernel: NVRM: Xid (PCI:0000:01:00): 119, pid=1671935, "
    "name=kworker/1:3, Timeout after 1149s of waiting for RPC response from GPU0 GSP! "
    "Expected function 4097 (GSP_INIT_DONE) (0x0 0x0).\n"
)


def heartbeat(stamp: str) -> str:
    return (
        f"Apr 24 {stamp} banana kernel: NVRM: GPU0 _kgspIsHeartbeatTimedOut: Heartbeat timed "
        "out, currentTimeMs 322227881 heartbeat 0 heartbeatWithOffsetMs 318098841 diff "
        "4129040 timeout 5200\n"
    )


def xid120(stamp: str) -> str:
    return (
        f"Apr 24 {stamp} banana kernel: NVRM: Xid (PCI:0000:01:00): 120, GSP kernel exception: "
        "store access page fault (cause:0xf) @ pc:0xffffffff93003d42, partition:4#0\n"
    )


def test_an_h100_gsp_timeout_is_one_critical_reset_finding(tmp_path: Path) -> None:
    text = (KERNEL / "gsp-timeout-h100.dmesg").read_text()
    (finding,) = findings(tmp_path, {"gpu-6/dmesg": text}, only="gsp_fault")
    assert (finding.severity, finding.action, finding.count) == (
        Severity.CRITICAL,
        Action.RESET_GPU,
        5,
    )
    assert (finding.node, finding.gpu, finding.pci) == ("gpu-6", 6, None)
    assert "memory subsystem error" in finding.summary


def test_xid_119_and_120_fold_into_the_gsp_incident_of_their_gpu(tmp_path: Path) -> None:
    text = XID119 + heartbeat("13:24:00") + xid120("13:25:00")
    (finding,) = findings(tmp_path, {"banana/kern.log": text}, only="gsp_fault")
    assert (finding.count, finding.severity, finding.action) == (
        3,
        Severity.CRITICAL,
        Action.RESET_GPU,
    )
    assert (finding.pci, finding.gpu, finding.code) == ("0000:01:00.0", 0, 120)
    assert "Xid 119" in finding.summary and "GSP heartbeat timed out" in finding.summary


def test_a_banner_and_its_xid_119_are_one_finding(tmp_path: Path) -> None:
    text = (KERNEL / "gsp-timeout-banner.syslog").read_text()
    (finding,) = findings(tmp_path, {"banana/kern.log": text}, only="gsp_fault")
    assert (finding.count, finding.code, finding.pci) == (2, 119, "0000:01:00.0")
    assert finding.uuid == "GPU-02187fd8-22a1-3f71-cd52-22af54f42481"


def test_repeated_gsp_incidents_on_one_gpu_need_a_reboot(tmp_path: Path) -> None:
    text = heartbeat("13:00:00") + heartbeat("13:10:00") + heartbeat("13:20:00")
    out = findings(tmp_path, {"banana/kern.log": text}, only="gsp_fault")
    assert [f.action for f in sorted(out, key=lambda f: f.first_ts or 0)] == [
        Action.RESET_GPU,
        Action.RESET_GPU,
        Action.REBOOT_NODE,
    ]
    assert "3 GSP/RM fault incidents" in max(out, key=lambda f: f.first_ts or 0).summary
    fewer = findings(
        tmp_path / "b",
        {"banana/kern.log": text},
        only="gsp_fault",
        gsp_fault__reboot_incidents=4,
    )
    assert {f.action for f in fewer} == {Action.RESET_GPU}


def test_a_fault_after_a_logged_reset_needs_a_reboot(tmp_path: Path) -> None:
    reset = {
        "kind": "gpu_reset",
        "ts": 1713964500.0,  # 2024-04-24 13:15:00 UTC, between the two faults
        "clock": "wall",
        "source": "jsonl",
        "node": "banana",
        "gpu": 0,
    }
    files = {
        "banana/kern.log": heartbeat("13:00:00") + heartbeat("13:20:00"),
        "banana/resets.jsonl": json.dumps(reset) + "\n",
    }
    out = findings(tmp_path, files, only="gsp_fault")
    last = max(out, key=lambda f: f.first_ts or 0)
    assert last.action == Action.REBOOT_NODE
    assert "after the GPU was reset" in last.summary


def test_a_record_that_names_no_gpu_joins_the_node_s_one_gsp_incident(tmp_path: Path) -> None:
    text = (KERNEL / "gsp-back-to-back.log").read_text()
    out = findings(tmp_path, {"node/kern.log": text}, only="gsp_fault")
    gsp = [f for f in out if "GSP/RM" in f.summary]
    assert len(gsp) == 1 and gsp[0].count == 2
    assert "a GPU (the log names none)" in gsp[0].summary


def test_a_dump_of_thousands_of_lines_is_one_record(tmp_path: Path) -> None:
    lines = (KERNEL / "gsp-timeout-h100.dmesg").read_text().splitlines(keepends=True)
    banner, row = lines[9], lines[-1]
    (finding,) = findings(tmp_path, {"n/dmesg": banner + row * 3000}, only="gsp_fault")
    assert finding.count == 1


def test_vfio_passthrough_errors_and_a_failed_recovery(tmp_path: Path) -> None:
    text = (KERNEL / "aer-vfio-passthrough.log").read_text()
    out = {f.pci: f for f in findings(tmp_path, {"host/kern.log": text}, only="pcie_aer")}
    assert set(out) == {"0000:42:00.0", "0001:c8:00.0"}
    vm = out["0000:42:00.0"]  # MalfTLP and QEMU's "Unrecoverable error": one incident
    assert (vm.severity, vm.action, vm.count) == (Severity.CRITICAL, Action.INSPECT_PCIE, 2)
    gone = out["0001:c8:00.0"]  # the port above it gave up: the GPU behind it is gone
    assert (gone.severity, gone.action, gone.count) == (Severity.CRITICAL, Action.REBOOT_NODE, 2)
    assert "recovery failed" in gone.summary


def test_an_nvidia_gpu_behind_a_port_that_fails_recovery(tmp_path: Path) -> None:
    text = (KERNEL / "aer-recovery-failed-nvidia.dmesg").read_text()
    out = {f.pci: f for f in findings(tmp_path, {"n/dmesg": text}, only="pcie_aer")}
    assert out["0000:03:00.0"].action == Action.REBOOT_NODE
    assert out["0000:00:03.0"].action == Action.INSPECT_PCIE  # its own fatal report


def test_healthy_and_corrected_firmware_first_logs_make_no_finding(tmp_path: Path) -> None:
    files = {
        "a100/dmesg": (DATA / "real" / "a100-node-healthy-dmesg.txt").read_text(),
        "tyrex/syslog": (KERNEL / "aer-firmware-first-corrected.syslog").read_text(),
        "lambda/dmesg": (KERNEL / "aer-firmware-first-tabs.dmesg").read_text(),
    }
    assert findings(tmp_path, files) == []


def test_a_flood_of_one_xid_119_line_is_one_finding(tmp_path: Path) -> None:
    out = findings(tmp_path, {"banana/kern.log": XID119 * 50_000}, only="gsp_fault")
    (only,) = out
    assert (only.count, only.code, only.action) == (50_000, 119, Action.RESET_GPU)
    assert len(only.evidence) == 7 and only.evidence[3] == "… 49,994 more"

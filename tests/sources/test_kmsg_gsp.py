"""Kernel records: GSP and resource-manager faults that carry no Xid number."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.catalog import rm_faults
from tests.conftest import DATA, parse, parse_text

KERNEL = DATA / "kernel"
# Real lines (tests/data/kernel/README.md): an Xid 119 that maps GPU0 to its bus, and a
# heartbeat timeout of GPU0 without a bus.
XID119 = (
    "Apr 24 13:23:29 banana kernel: NVRM: Xid (PCI:0000:01:00): 119, pid=1671935, "
    "name=kworker/1:3, Timeout after 1149s of waiting for RPC response from GPU0 GSP! "
    "Expected function 4097 (GSP_INIT_DONE) (0x0 0x0).\n"
)
HEARTBEAT = (
    "Apr 24 13:25:01 banana kernel: NVRM: GPU0 _kgspIsHeartbeatTimedOut: Heartbeat timed "
    "out, currentTimeMs 322227881 heartbeat 0 heartbeatWithOffsetMs 318098841 diff 4129040 "
    "timeout 5200\n"
)
BANNER = (
    "[   84.300488] NVRM: GPU6 _kgspLogRpcTimeout: ********************************* "
    "GSP Timeout **********************************\n"
)
ROW = (
    "[   84.738345] NVRM:      0    4124 GSP_LOCKDOWN_NOTICE            0 0x0000000000000000 "
    "0x0000000000000000 0x000655d53b56deca 0x000655d53b56deca           \n"
)


def test_an_h100_gsp_timeout_is_five_fault_records_and_its_dump_is_consumed() -> None:
    events = parse(KERNEL / "gsp-timeout-h100.dmesg")
    got = [(e["kind"], e["line"], e["gpu"], e["detail"]) for e in events]
    assert got == [
        ("gsp_timeout", 3, 6, "GSP heartbeat timed out"),
        ("gsp_timeout", 4, 6, "GSP heartbeat timed out"),  # printed twice: two records
        ("rm_error", 7, 6, "sysmembar timed out"),
        ("rm_error", 8, 6, "memory subsystem error (sysmembar failed)"),
        ("gsp_timeout", 10, 6, "GSP RPC timeout"),  # the banner; its note and dump follow
    ]
    assert all("pci" not in e for e in events)  # nothing maps GPU6 to a bus: no guess
    assert all(e["source"] == "kmsg" and e["clock"] == "boot" for e in events)
    assert not events.stats.unreadable


def test_a_banner_without_an_index_takes_the_bus_of_the_xid_119_printed_with_it() -> None:
    events = parse(KERNEL / "gsp-timeout-banner.syslog", year=2024)
    assert [e["kind"] for e in events] == ["gsp_timeout", "gpu_identity", "xid"]
    banner = events[0]
    assert (banner["line"], banner["pci"], banner["gpu"]) == (1, "0000:01:00.0", 0)
    assert banner["node"] == "banana"
    assert events[2]["code"] == 119
    assert not events.stats.unreadable  # "_kgspLogXid119:" is no malformed Xid


def test_an_xid_119_maps_the_driver_s_index_to_a_bus_for_later_records(tmp_path: Path) -> None:
    reboot = "Apr 24 14:00:00 banana kernel: Linux version 6.8.0-45-generic (buildd@lcy02)\n"
    events = parse_text(tmp_path, XID119 + HEARTBEAT + reboot + HEARTBEAT, year=2024)
    first, second = events.of("gsp_timeout")
    assert (first["gpu"], first["pci"]) == (0, "0000:01:00.0")
    assert (second["gpu"], second.get("pci")) == (0, None)  # a reboot forgets the map


def test_an_index_is_never_taken_from_a_neighbouring_xid_line(tmp_path: Path) -> None:
    xid79 = "Apr 24 13:25:00 banana kernel: NVRM: Xid (PCI:0000:1b:00): 79, pid=1, GPU has fallen off the bus.\n"
    events = parse_text(tmp_path, xid79 + HEARTBEAT, year=2024)
    assert "pci" not in events.of("gsp_timeout")[0]


def test_every_rm_fault_phrase_has_a_real_line_in_the_fixtures() -> None:
    corpus = "".join(path.read_text() for path in sorted(KERNEL.iterdir()))
    missing = [fault.phrase for fault in rm_faults() if fault.phrase not in corpus]
    assert missing == []


def test_rm_faults_in_their_real_forms() -> None:
    reset = parse(KERNEL / "rm-reset-required.dmesg", year=2026)
    assert [(e["kind"], e["line"], e["detail"]) for e in reset] == [
        ("rm_error", 2, "reset required (NV_ERR_RESET_REQUIRED)")
    ]
    sent = parse(KERNEL / "rm-rpc-send-failed.syslog", year=2024)
    assert [(e["kind"], e["gpu"], e["node"]) for e in sent] == [
        ("rm_error", 0, "anthill"),
        ("rm_error", 0, "anthill"),
    ]
    lost = parse(KERNEL / "rm-gpu-lost-dgx-a100.syslog", year=2024)
    assert [e["kind"] for e in lost] == ["rm_error", "gpu_lost", "rm_error"]
    limited = parse(KERNEL / "gsp-rpc-timeout-ratelimit.syslog")
    assert [(e["kind"], e.get("pci")) for e in limited] == [
        ("gsp_timeout", None),
        ("rm_error", "0000:0a:00.0"),  # "… for GPU at PCI:0000:0a:00 …"
        ("xid", "0000:0a:00.0"),
    ]
    journal = parse(KERNEL / "gsp-heartbeat.journal", year=2024)
    assert [(e["kind"], e["gpu"], e["line"]) for e in journal] == [
        ("gsp_timeout", 0, 3),
        ("gsp_timeout", 0, 4),
    ]
    crash = parse(KERNEL / "rm-gsp-crashcat.syslog")
    assert [e.get("detail") for e in crash.of("rm_error")] == [
        "PMU halted",
        "GSP firmware crash report",
    ]
    talos = parse(KERNEL / "gsp-back-to-back.log")
    assert [e["kind"] for e in talos] == ["gsp_timeout", "gsp_timeout", "xid"]


def test_a_long_dump_after_a_banner_is_one_event_and_costs_a_bounded_look(
    tmp_path: Path,
) -> None:
    events = parse_text(tmp_path, BANNER + ROW * 5000 + BANNER)
    assert len(events) == 2  # the two banners; 5,000 dump rows are no events
    assert not events.stats.unreadable
    rows_alone = parse_text(tmp_path, ROW * 100, name="rows.log")
    assert len(rows_alone) == 0 and not rows_alone.stats.unreadable


def test_hostile_gsp_records_are_counted_or_read_never_crash(tmp_path: Path) -> None:
    text = (
        "[   84.3] NVRM: GPU6 _kgspLogRpcTimeout: **************\n"  # cut before its words
        "[   84.4] NVRM: GPU6 _kgspLogRpcTimeout: ******** GSP Timeout *\n"  # cut after them
        "[   84.5] NVRM: GPU99999999999999999999999 _kgspIsHeartbeatTimedOut: Heartbeat timed out\n"
        "[   84.6] NVRM: GPU2147483648 _kgspRpcRecvPoll: GSP RM heartbeat timed out\n"
        "[   84.7] NVRM: _kgspRpcRecvPoll: GSP RM heartbeat timed out\n"  # no GPU, no bus
        "[   84.8] NVRM: Rate limiting GSP RPC error prints for GPU at PCI:zzzz (x). "
        "The GPU likely needs to be reset.\n"
        "[   84.9] NVRM: _kgspLogXid119: ***** GSP Timeout *****\n"  # the last line: no Xid
    )
    events = parse_text(tmp_path, text)
    got = [(e["line"], e["kind"], e.get("gpu"), e.get("pci")) for e in events]
    assert got == [
        (2, "gsp_timeout", 6, None),
        (5, "gsp_timeout", None, None),
        (6, "rm_error", None, None),
        (7, "gsp_timeout", None, None),
    ]
    assert events.stats.unreadable == {("kmsg", "out of range"): 2}

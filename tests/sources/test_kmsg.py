"""Kernel records: every Xid, SXid, fallen-off-the-bus, identity and AER shape."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA, parse, parse_text

KERNEL = DATA / "kernel"


def test_every_xid_shape() -> None:
    events = parse(KERNEL / "xid-shapes.dmesg")
    xids = events.of("xid")
    got = [(e["pci"], e["code"], e.get("pid"), e.get("process")) for e in xids]
    assert got == [
        ("0000:3b:00.0", 79, 2761, "python"),
        ("0000:b7:00.0", 13, None, None),  # pid='<unknown>', name=<unknown>
        ("0000:03:00.0", 13, None, None),  # old form without PCI:
        ("0000:01:00.0", 43, 2233, "python3"),  # MIG GPU-I:05
        ("0000:ca:00.0", 45, 1234, "python3"),  # Ch 0000000b
        ("0000:41:00.0", 31, 9876, "pt_main_thread"),  # channel 0x00000002
        ("0000:1a:00.0", 48, None, None),  # runs of spaces, no pid
        ("0000:c1:00.0", 45, 4321, "python3"),
        ("0000:c1:00.0", 154, None, None),
        ("0002:00:00.0", 79, 0, None),  # domain 0002
        ("0000:86:00.0", 95, 2633, "python"),
        ("0000:b7:00.0", 63, 2633, "python"),
        ("0000:61:00.0", 119, 77, "nvidia-smi"),
    ]
    by_code = {(e["code"], e["pci"]): e for e in xids}
    assert by_code[48, "0000:1a:00.0"]["detail"].startswith(
        "An uncorrectable double bit error (DBE)"
    )
    assert "  " not in by_code[48, "0000:1a:00.0"]["detail"]
    assert by_code[45, "0000:c1:00.0"]["detail"].endswith("caused by previous Xid 149")
    assert "Drain and Reset" in by_code[154, "0000:c1:00.0"]["detail"]
    assert by_code[43, "0000:01:00.0"]["detail"] == "Ch 00000010"
    assert all(e["source"] == "kmsg" and e["clock"] == "boot" for e in xids)
    assert xids[0]["ts"] == 1843.308145 and xids[0]["line"] == 4
    # the garbage "Xid" line is counted, not dropped
    assert events.stats.unreadable == {("kmsg", "malformed xid"): 1}


def test_identity_lines_teach_uuid_and_serial_to_later_records() -> None:
    events = parse(KERNEL / "xid-shapes.dmesg")
    identity = events.of("gpu_identity")
    assert [(e["pci"], e["uuid"], e["serial"]) for e in identity] == [
        ("0000:3b:00.0", "GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11", "1320321057890")
    ]
    xid79 = events.of("xid")[0]
    assert xid79["uuid"] == "GPU-5fc0bcec-8a5a-7f5e-c1a3-9d6b2e0f4a11"
    assert xid79["serial"] == "1320321057890"
    lost = events.of("gpu_lost")[0]
    assert lost["pci"] == "0000:3b:00.0" and lost["serial"] == "1320321057890"
    # a GPU the node never introduced has no identity
    assert "uuid" not in events.of("xid")[1]


def test_identity_is_forgotten_after_a_reboot(tmp_path: Path) -> None:
    text = (
        "[   10.000001] NVRM: GPU at PCI:0000:3b:00: GPU-aaaaaaaa-0000-0000-0000-000000000001\n"
        "[  500.000000] NVRM: Xid (PCI:0000:3b:00): 79, pid=1, name=a, fallen off the bus.\n"
        "[    0.000000] Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)\n"
        "[  600.000000] NVRM: Xid (PCI:0000:3b:00): 48, pid=1, name=a, DBE\n"
    )
    first, second = parse_text(tmp_path, text).of("xid")
    assert first["uuid"] == "GPU-aaaaaaaa-0000-0000-0000-000000000001"
    assert "uuid" not in second


def test_sxid_with_severity() -> None:
    events = parse(KERNEL / "sxid.dmesg")
    got = [(e["pci"], e["code"], e.get("severity")) for e in events]
    assert got == [
        ("0000:05:00.0", 20034, "fatal"),
        ("0000:05:00.0", 20034, None),
        ("0000:c5:00.0", 12028, "nonfatal"),
        ("0000:a9:00.0", 22013, None),
    ]
    assert all(e["kind"] == "sxid" for e in events)
    assert events[0]["detail"] == "Fatal, Link 30 LTSSM Fault Up"


def test_fallen_off_the_bus_in_one_and_three_lines() -> None:
    events = parse(KERNEL / "fallen-off-bus.dmesg")
    got = [(e["kind"], e.get("pci"), e["line"]) for e in events]
    assert got == [
        ("gpu_lost", "0000:09:00.0", 1),
        ("gpu_lost", "0000:0a:00.0", 2),  # the three-line form is one event at its first line
        ("gpu_lost", "0000:41:00.0", 5),
        ("gpu_lost", None, 6),
    ]
    assert events[1]["ts"] == 5002.000001
    assert events[2]["detail"] == "RmInitAdapter failed (0x24:0x65:1473)"
    assert events.stats.lines == 7


def test_aer_one_event_per_report_in_old_and_new_wording() -> None:
    events = parse(KERNEL / "aer.dmesg")
    got = [(e["pci"], e["severity"], e["detail"]) for e in events]
    assert got == [
        ("0000:3b:00.0", "corrected", "Physical Layer: RxErr (First); device 10de:2330"),
        ("0000:01:00.0", "corrected", "Data Link Layer: BadTLP, Timeout; device 10de:2335"),
        ("0000:00:03.0", "corrected", "Data Link Layer: Timeout; device 8086:6f08"),
        ("0000:81:00.0", "nonfatal", "Transaction Layer: CmpltTO (First); device 10de:20b2"),
        ("10003:01:00.0", "fatal", "Transaction Layer: MalfTLP (First); device 10de:2330"),
        ("0000:c0:01.1", "fatal", "Transaction Layer: SDES (First); device 1022:1483"),
    ]
    assert [e["line"] for e in events] == [2, 6, 11, 15, 20, 23]
    assert all(e["kind"] == "aer" for e in events)
    assert events.stats.unreadable == {}


def test_apei_firmware_first_pcie_blocks() -> None:
    events = parse(KERNEL / "apei.dmesg")
    got = [(e["kind"], e["pci"], e["severity"], e["detail"]) for e in events]
    assert got == [
        ("aer", "0000:3b:00.0", "corrected", "APEI firmware-first: RxErr"),
        ("aer", "0000:81:00.0", "nonfatal", "APEI firmware-first: CmpltTO"),
    ]  # the memory-error block is not a PCIe record


def test_real_healthy_a100_node_has_no_gpu_fault_event() -> None:
    events = parse(DATA / "real" / "a100-node-healthy-dmesg.txt")
    assert list(events) == []
    assert events.stats.lines == 7227
    assert events.stats.unreadable == {}


def test_real_h100_xid31_in_raw_and_wall_clock_form() -> None:
    raw = parse(DATA / "h100" / "dmesg-xid31-app-fault.txt")
    wall = parse(DATA / "h100" / "dmesg-T-xid31-app-fault.txt")
    for events in (raw, wall):
        identity, xid = events
        assert identity["kind"] == "gpu_identity"
        assert identity["uuid"] == "GPU-edd619e6-7f48-8fdf-db22-4af96c1acb0a"
        assert identity["serial"] == "1650724013535"
        assert xid["kind"] == "xid" and xid["code"] == 31 and xid["pci"] == "0000:00:06.0"
        assert xid["pid"] == 485 and xid["process"] == "python3"
        assert xid["serial"] == "1650724013535"
        assert xid["detail"].startswith("channel 0x0000000a, intr 00000000. MMU Fault")
    assert raw[1]["clock"] == "boot" and raw[1]["ts"] == 99.080659
    assert wall[1]["clock"] == "wall" and wall[1]["ts"] == 1795708840.0  # 2026-11-26 16:00:40Z

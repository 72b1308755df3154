"""Kernel records: PCIe AER in its firmware-first, recovery-failed and VMM forms."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA, parse, parse_text

KERNEL = DATA / "kernel"


def summary(path: Path, **options: object) -> list[tuple[object, ...]]:
    events = parse(path, **options)
    assert not events.stats.unreadable
    return [(e["line"], e["pci"], e["severity"], e["detail"]) for e in events.of("aer")]


def test_firmware_first_prints_take_severity_from_their_register() -> None:
    assert summary(KERNEL / "aer-firmware-first.dmesg") == [
        # the APEI blocks; the "aer_status" print of each (lines 15, 34) is its twin
        (2, "0000:c9:02.0", "nonfatal", "APEI firmware-first: no error bits"),
        (19, "0000:c9:02.0", "nonfatal", "APEI firmware-first: no error bits"),
        (
            33,
            "0000:c9:02.0",
            "fatal",
            "device recovery failed; driver pcieport; behind it 0000:ca:00.1 (pci)",
        ),
        # CmpltTO (bit 14) is not set in aer_uncor_severity 0x00062011: non-fatal
        (38, "0000:09:00.1", "nonfatal", "Transaction Layer: CmpltTO (First); driver igb"),
    ]


def test_firmware_first_corrected_prints_in_syslog_and_with_tabs() -> None:
    assert summary(KERNEL / "aer-firmware-first-corrected.syslog", year=2020) == [
        (2, "0000:40:03.1", "corrected", "Data Link Layer: Timeout; driver pcieport")
    ]
    assert summary(KERNEL / "aer-firmware-first-tabs.dmesg") == [
        (
            2,
            "0000:2c:00.0",
            "corrected",
            "Physical Layer: RxErr (First), NonFatalErr; driver nvme",
        )
    ]


def test_vfio_passthrough_malformed_tlp_is_fatal_by_the_catalog_default() -> None:
    assert summary(KERNEL / "aer-vfio-passthrough.log") == [
        (1, "0000:42:00.0", "fatal", "firmware-first AER: MalfTLP (First); driver vfio-pci"),
        (
            3,
            "0000:42:00.0",
            "fatal",
            "VMM: unrecoverable error on a passed-through device (vfio_err_notifier_handler)",
        ),
        (4, "0001:c8:00.0", "fatal", "firmware-first AER: MalfTLP (First); driver vfio-pci"),
        (
            6,
            "0001:c6:01.0",
            "fatal",
            "device recovery failed; driver pcieport; behind it 0001:c8:00.0 (vfio-pci)",
        ),
    ]


def test_a_failed_recovery_names_the_gpu_not_its_audio_function() -> None:
    got = summary(KERNEL / "aer-recovery-failed-nvidia.dmesg")
    assert [row[3] for row in got if row[0] in (3, 12)] == [
        "device recovery failed; driver pcieport; behind it 0000:03:00.0 (nvidia)"
    ] * 2


def test_the_printed_severity_register_decides_fatal(tmp_path: Path) -> None:
    # the igb report of the fixture with its severity register's bit 14 set
    text = (
        "[  100.839168] igb 0000:09:00.1: AER: aer_status: 0x00004000, aer_mask: 0x00000000\n"
        "[  100.846463] igb 0000:09:00.1: AER:    [14] CmpltTO                (First)\n"
        "[  100.869400] igb 0000:09:00.1: AER: aer_uncor_severity: 0x00004000\n"
    )
    (event,) = parse_text(tmp_path, text).of("aer")
    assert event["severity"] == "fatal"


def test_hostile_firmware_first_lines_are_counted_or_skipped(tmp_path: Path) -> None:
    text = (
        "[    1.0] nvme 0000:2c:00.0: AER: aer_status: 0xZZ\n"  # no hex: counted
        "[    2.0] nvme 0000:2c:00.0: AER: aer_status: 0x00000001, aer_mask: 0x0\n"  # no lines
        "[    3.0] vfio-pci 0000:42:00.0: AER: aer_status: 0xffffffff\n"  # every bit, no
        "[    3.1] vfio-pci 0000:42:00.0: [99999999999999999999999] Huge (First)\n"
        "[    4.0] AER: device recovery failed\n"  # no device: not the AER core's line
        "[    5.0] qemu-kvm: vfio_err_notifier_handler(bogus) Unrecoverable error detected.\n"
    )
    events = parse_text(tmp_path, text)
    got = [(e["line"], e["pci"], e["severity"]) for e in events]
    # no severity line and no uncorrectable name: the correctable register (the rule)
    assert got == [(2, "0000:2c:00.0", "corrected"), (3, "0000:42:00.0", "corrected")]
    assert "Huge (First)" in events[1]["detail"]
    assert events.stats.unreadable == {("kmsg", "malformed aer"): 1}


def test_the_healthy_a100_log_still_has_no_aer_or_gsp_events() -> None:
    events = parse(DATA / "real" / "a100-node-healthy-dmesg.txt", year=2023)
    assert not [e for e in events if e["kind"] in ("aer", "gsp_timeout", "rm_error")]

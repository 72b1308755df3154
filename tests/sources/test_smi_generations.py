"""nvidia-smi -q reports of every driver generation from 470 to 595, text and XML.

The fixtures are real reports (tests/data/smi/README.md cites each); a report whose
generation added a block the reader does not know is still read, and the block counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DATA, Parsed, parse, parse_text

SMI = DATA / "smi"
UNKNOWN = ("smi", "unknown field")


def values(events: Parsed, pci: str) -> dict[tuple[Any, Any], Any]:
    return {
        (e["kind"], e.get("scope")): e.get("value")
        for e in events
        if e["kind"] != "gpu_identity" and e["pci"] == pci
    }


def identities(events: Parsed) -> set[tuple[Any, ...]]:
    return {(e["pci"], e.get("uuid"), e.get("serial"), e.get("gpu")) for e in events}


ZERO_ECC: dict[tuple[Any, Any], Any] = {
    ("ecc_corrected", "volatile"): 0.0,
    ("ecc_uncorrected", "volatile"): 0.0,
    ("ecc_corrected", "aggregate"): 0.0,
    ("ecc_uncorrected", "aggregate"): 0.0,
}
NO_REMAPS: dict[tuple[Any, Any], Any] = {
    ("remap_correctable", None): 0.0,
    ("remap_uncorrectable", None): 0.0,
    ("remap_pending", None): 0.0,
    ("remap_failure", None): 0.0,
}


@pytest.mark.parametrize(
    ("name", "gpus", "pci", "expected"),
    [
        (
            "470-gtx680.txt",
            {("0000:08:00.0", "GPU-550139a6-4f96-fb93-dc5c-741f01045b48", None, 0)},
            "0000:08:00.0",
            {("temperature", None): 35.0, ("pcie_replay", None): 0.0},
        ),
        (
            "510-gtx1650-head.txt",
            {("0000:82:00.0", "GPU-7878ba12-9b30-8f49-3da8-7930824af120", None, 0)},
            "0000:82:00.0",
            {},
        ),
        (
            "515-gtx1650-head.txt",
            {("0000:01:00.0", "GPU-21e3065c-8a1a-6cf7-b0fd-41d6c51f726e", None, 0)},
            "0000:01:00.0",
            {},
        ),
        (
            "535-h100-two-of-eight.txt",
            {  # two blocks of "Attached GPUs : 8": their places are not their indexes
                ("0000:53:00.0", "GPU-566e6f65-c38e-b12f-4824-6944218668b9", "1655022005478", None),
                ("0000:64:00.0", "GPU-9930d717-21dd-7692-054e-3d0a2bae76b5", "1654522012780", None),
            },
            "0000:53:00.0",
            {
                ("clock_event", None): 1.0,  # Idle, under "Clocks Event Reasons"
                **ZERO_ECC,
                **NO_REMAPS,
                ("pcie_replay", None): 120.0,
                ("temperature", None): 36.0,
                ("memory_temperature", None): 44.0,
                ("power", None): 71.97,
                ("pcie_link", None): 16.0,
            },
        ),
        (
            "550-h200.txt",
            {("0000:03:00.0", "GPU-cb3dfa52-e2f3-9ca4-a399-7d16041c3732", "1753724031847", 0)},
            "0000:03:00.0",
            {
                ("clock_event", None): 1.0,
                **ZERO_ECC,  # SRAM Uncorrectable Parity / SEC-DED spellings
                **NO_REMAPS,
                ("pcie_replay", None): 0.0,
                ("temperature", None): 28.0,
                ("memory_temperature", None): 25.0,
                ("power", None): 74.58,  # Instantaneous, not Average
                ("pcie_link", None): 16.0,
            },
        ),
        (
            "560-titan-v.txt",
            {("0000:01:00.0", "GPU-f4c353ff-b56c-c1de-bcb9-7dad861b589a", "0334517001520", 0)},
            "0000:01:00.0",
            {
                ("clock_event", None): 1.0,
                ("pcie_replay", None): 0.0,
                ("temperature", None): 44.0,
                ("memory_temperature", None): 41.0,
                ("power", None): 29.02,
                ("pcie_link", None): 16.0,
            },
        ),
        (
            "570-rtx5090.txt",
            {("0000:02:00.0", "GPU-ea2294a3-4d61-1757-8aed-f91723f16ad2", "0", 0)},
            "0000:02:00.0",
            {  # "Remapped Rows : N/A" on one line: no remap events
                ("clock_event", None): 4.0,  # SW Power Cap
                ("pcie_replay", None): 0.0,
                ("temperature", None): 25.0,
                ("power", None): 23.78,
                ("pcie_link", None): 8.0,
            },
        ),
        (
            "580-vgpu-host-d-memory-performance.txt",
            {("0000:42:00.0", None, None, None)},  # -d: one section, 1 of 4 GPUs
            "0000:42:00.0",
            {("clock_event", None): 0.0},
        ),
        (
            "595-vgpu-h100-nvl-head.txt",
            {("0000:a1:00.0", None, None, 0)},
            "0000:a1:00.0",
            {},
        ),
    ],
)
def test_a_text_report_of_each_generation_names_its_gpus_and_values(
    name: str, gpus: set[tuple[Any, ...]], pci: str, expected: dict[tuple[Any, Any], Any]
) -> None:
    events = parse(SMI / name)
    assert identities(events) == gpus
    assert values(events, pci) == expected
    assert events.stats.unreadable == {} and events.stats.skipped == {}


def test_a_vgpu_host_report_of_580_was_lost_whole_and_is_read_now() -> None:
    events = parse(SMI / "580-vgpu-host-d-memory-performance.txt")
    # "vGPU Driver Capability" at column 0 used to end the report before its GPUs
    assert [e["kind"] for e in events] == ["gpu_identity", "clock_event"]
    assert events[0]["ts"] is not None and events[0]["line"] == 12


@pytest.mark.parametrize(
    ("name", "gpu", "expected"),
    [
        (
            "470-gt1030.xml",
            ("0000:2d:00.0", "GPU-857c6374-f681-cf3a-f99f-9063a87b8ac0", None, 0),
            {("clock_event", None): 1.0, ("temperature", None): 36.0, ("pcie_link", None): 4.0},
        ),
        (
            "515-a10g.xml",  # nvsmi_device_v11
            ("0000:00:1e.0", "GPU-9a9a6c50-2a47-2f51-a902-b82c3b127e94", "0000000000000", 0),
            {
                ("clock_event", None): 1.0,
                **ZERO_ECC,
                **NO_REMAPS,
                ("temperature", None): 17.0,
                ("power", None): 25.58,
                ("pcie_link", None): 8.0,
            },
        ),
        (
            "535-a100-sxm4.xml",  # nvsmi_device_v12, clocks_event_reasons
            None,
            {("clock_event", None): None, **ZERO_ECC},
        ),
        (
            "570-rtx3060.xml",
            ("0000:2d:00.0", "GPU-d6889ff6-2523-9142-ca3c-1ca3f396a625", None, 0),
            {("clock_event", None): 1.0, ("temperature", None): 42.0, ("power", None): 11.63},
        ),
        (
            "595-rtx3080-v13.xml",  # nvsmi_device_v13
            ("0000:0c:00.0", "GPU-19d6d965-2acc-f646-00f8-4c76979aabb4", "REDACTED", 0),
            {("clock_event", None): 0.0, ("temperature", None): 27.0, ("power", None): 142.33},
        ),
    ],
)
def test_an_xml_report_of_each_generation_names_its_gpu_and_values(
    name: str, gpu: tuple[Any, ...] | None, expected: dict[tuple[Any, Any], Any]
) -> None:
    events = parse(SMI / name)
    assert len(identities(events)) == 1 and events.stats.unreadable == {}
    if gpu is not None:
        assert identities(events) == {gpu}
    got = values(events, events[0]["pci"])
    for key, value in expected.items():
        assert key in got and (value is None or got[key] == value), key


def test_the_old_and_new_clock_reason_spellings_give_one_mask(tmp_path: Path) -> None:
    report = (SMI / "570-rtx5090.txt").read_text()
    old = report.replace("Clocks Event Reasons", "Clocks Throttle Reasons")  # before 535
    assert old != report
    before = values(parse_text(tmp_path, old, name="old.txt"), "0000:02:00.0")
    assert before == values(parse(SMI / "570-rtx5090.txt"), "0000:02:00.0")


def test_a_pending_page_retirement_is_a_pending_remap(tmp_path: Path) -> None:
    # a pre-Ampere GPU retires pages, pending until its next reset, like a row remap
    report = (SMI / "470-gtx680.txt").read_text()
    assert "Pending Page Blacklist            : N/A" in report
    pending = report.replace(
        "Pending Page Blacklist            : N/A", "Pending Page Blacklist            : Yes"
    )
    events = parse_text(tmp_path, pending, name="pending.txt")
    assert values(events, "0000:08:00.0")[("remap_pending", None)] == 1.0


def test_a_block_no_generation_had_is_skipped_and_counted_and_the_rest_read(
    tmp_path: Path,
) -> None:
    report = (SMI / "550-h200.txt").read_text()
    # a block of a driver to come, at the top and inside the GPU (names made up here)
    changed = report.replace(
        "Attached GPUs",
        "Future Capability\n        Something                         : Yes\n\nAttached GPUs",
    ).replace("    Temperature\n", "    Future Section\n        Level : 3\n    Temperature\n")
    events = parse_text(tmp_path, changed, name="future.txt")
    assert values(events, "0000:03:00.0") == values(parse(SMI / "550-h200.txt"), "0000:03:00.0")
    assert events.stats.skipped == {UNKNOWN: 2}
    assert events.stats.unreadable == {}


@pytest.mark.parametrize(
    "text",
    [
        # the banner and nothing after it
        "==============NVSMI LOG==============\n\n",
        # a report cut before its first GPU
        "==============NVSMI LOG==============\n\nTimestamp                                 :"
        " Wed May  4 10:57:14 2022\nDriver Version                            : 510.68.02\n",
    ],
)
def test_a_report_without_gpus_is_unreadable_not_silent(tmp_path: Path, text: str) -> None:
    events = parse_text(tmp_path, text, name="cut.txt")
    assert events == []
    assert events.stats.unreadable == {("smi", "report without gpus"): 1}


def test_an_xml_log_without_gpus_is_unreadable(tmp_path: Path) -> None:
    xml = '<?xml version="1.0" ?>\n<nvidia_smi_log>\n<attached_gpus>0</attached_gpus>\n</nvidia_smi_log>\n'
    events = parse_text(tmp_path, xml, name="none.xml")
    assert events == [] and events.stats.unreadable == {("smi", "report without gpus"): 1}


def test_a_report_is_read_up_to_the_log_line_after_it(tmp_path: Path) -> None:
    report = (SMI / "510-gtx1650-head.txt").read_text()
    after = "[ 2000.000001] NVRM: Xid (PCI:0000:82:00): 79, pid=1, name=a, GPU has fallen off the bus.\n"
    events = parse_text(tmp_path, report + after, name="mixed.log")
    assert [e["kind"] for e in events] == ["gpu_identity", "xid"]


def test_a_section_title_on_the_last_line_of_a_read_window_is_still_a_title(
    tmp_path: Path,
) -> None:
    # the reader peeks 512 lines past the banner at a time: blank lines (a variant of the
    # real report) put 580's top-level section on the 512th, its body on the next window
    report = (SMI / "580-vgpu-host-d-memory-performance.txt").read_text()
    head, title, rest = report.partition("vGPU Driver Capability\n")
    after_banner = head.count("\n") - head[: head.index("NVSMI LOG")].count("\n") - 1
    text = head + "\n" * (511 - after_banner) + title + rest
    events = parse_text(tmp_path, text, name="late-title.txt")
    assert [e["kind"] for e in events] == ["gpu_identity", "clock_event"]

"""nvidia-smi -q text, -q -x XML and --query-gpu CSV, real and synthetic."""

from __future__ import annotations

import calendar

from tests.conftest import DATA, parse

H100 = DATA / "h100"
SMI = DATA / "smi"
H100_PCI = "0000:00:06.0"
H100_UUID = "GPU-dfeb2252-9656-ce4e-eaa5-fb14ff198703"


def values(events: list[dict[str, object]]) -> dict[tuple[object, object], object]:
    return {
        (e["kind"], e.get("scope")): e.get("value") for e in events if e["kind"] != "gpu_identity"
    }


def test_real_h100_text_and_xml_say_the_same() -> None:
    text = parse(H100 / "nvidia-smi-q.txt")
    xml = parse(H100 / "nvidia-smi-q.xml")
    for events in (text, xml):
        assert all(e["pci"] == H100_PCI and e["gpu"] == 0 for e in events)
        assert all(e["uuid"] == H100_UUID and e["serial"] == "1652824036057" for e in events)
        assert events[0]["kind"] == "gpu_identity"
    assert values(text) == {
        ("clock_event", None): 1.0,  # Idle, the real capture at rest
        ("ecc_corrected", "volatile"): 0.0,
        ("ecc_uncorrected", "volatile"): 0.0,
        ("ecc_corrected", "aggregate"): 0.0,
        ("ecc_uncorrected", "aggregate"): 0.0,
        ("remap_correctable", None): 0.0,
        ("remap_uncorrectable", None): 0.0,
        ("remap_pending", None): 0.0,
        ("remap_failure", None): 0.0,
        ("temperature", None): 37.0,
        ("memory_temperature", None): 41.0,
        ("power", None): 72.74,
        ("pcie_replay", None): 0.0,
        ("pcie_link", None): 16.0,
    }
    # the XML was captured seconds apart: the same fields, live readings differ
    assert values(xml).keys() == values(text).keys()
    assert text[0]["ts"] == xml[0]["ts"] == calendar.timegm((2026, 11, 26, 15, 34, 48))
    assert [e["detail"] for e in text if e["kind"] == "pcie_link"] == ["gen5"]


def test_real_h100_after_the_fault_shows_one_aggregate_sram_correctable() -> None:
    events = parse(H100 / "nvidia-smi-q-after-fault.txt")
    assert values(events)[("ecc_corrected", "aggregate")] == 1.0
    assert values(events)[("ecc_uncorrected", "aggregate")] == 0.0


def test_real_a100_old_spellings_and_partial_report() -> None:
    events = parse(DATA / "real" / "a100-nvidia-smi-q.txt")
    assert events[0]["pci"] == "0000:07:00.0"
    assert events[0]["uuid"] == "GPU-eb0003d2-77b4-70fd-4ab9-3ef1c9853c49"
    # "Attached GPUs: 8" but one block (-i 0): the block's place is not its index
    assert all("gpu" not in e for e in events)
    got = values(events)
    assert got[("clock_event", None)] == 0.0  # "Clocks Throttle Reasons", none active
    assert got[("temperature", None)] == 28.0
    assert got[("power", None)] == 67.97


def test_old_driver_report_with_thermal_slowdown_and_single_double_bit_ecc() -> None:
    events = parse(SMI / "two-gpus-throttled.txt")
    first = [e for e in events if e["pci"] == "0000:07:00.0" and e["source"] == "smi"]
    got = values(first)
    assert got[("clock_event", None)] == float(0x8 | 0x40 | 0x20)  # HW slowdown, HW + SW thermal
    assert got[("ecc_corrected", "volatile")] == 5.0
    assert got[("ecc_uncorrected", "volatile")] == 1.0
    assert got[("ecc_corrected", "aggregate")] == 12.0
    assert got[("remap_pending", None)] == 1.0
    assert got[("pcie_replay", None)] == 41.0
    assert got[("pcie_link", None)] == 8.0
    assert got[("temperature", None)] == 88.0
    assert ("memory_temperature", None) not in got  # N/A is no value
    assert {e["gpu"] for e in first} == {0}
    second = [e for e in events if e["pci"] == "0000:0f:00.0" and e["source"] == "smi"]
    assert {e["gpu"] for e in second} == {1}
    assert values(second) == {("clock_event", None): 1.0}  # [Unknown Error] is no value
    # the report ends where the kernel line begins, and the line still reads
    xid = events.of("xid")[0]
    assert (xid["pci"], xid["line"]) == ("0000:0f:00.0", 92)
    assert xid["uuid"] == "GPU-66666666-7777-8888-9999-000000000000"  # learned from the report
    assert xid["gpu"] == 1


def test_real_query_csv() -> None:
    events = parse(H100 / "query.csv")
    assert all(e["pci"] == H100_PCI and e["gpu"] == 0 and e["uuid"] == H100_UUID for e in events)
    got = values(events)
    assert got[("clock_event", None)] == 1.0
    assert got[("temperature", None)] == 37.0
    assert got[("memory_temperature", None)] == 40.0
    assert got[("power", None)] == 110.19
    assert got[("remap_pending", None)] == 0.0
    assert [e["detail"] for e in events if e["kind"] == "pcie_link"] == ["gen5"]
    assert events[0]["ts"] == calendar.timegm((2026, 11, 26, 15, 34, 48)) + 0.621


def test_query_csv_rows_with_units_unknown_errors_and_bad_rows() -> None:
    events = parse(SMI / "query-loop.csv")
    first_row = [e for e in events if e["line"] == 2]
    got = values(first_row)
    assert got[("clock_event", None)] == 96.0
    assert got[("ecc_uncorrected", "aggregate")] == 1.0
    assert got[("remap_pending", None)] == 1.0
    assert got[("power", None)] == 250.12
    assert got[("pcie_link", None)] == 8.0
    # a GPU that answers [Unknown Error] everywhere still shows who it is
    assert [e["kind"] for e in events if e["line"] == 3] == ["gpu_identity"]
    assert events.stats.unreadable == {
        ("smi", "malformed csv row"): 1,  # a row cut short
        ("smi", "malformed csv value"): 1,  # "zz" as a bitmask
    }

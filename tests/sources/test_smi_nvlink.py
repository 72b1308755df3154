"""``nvidia-smi nvlink -e`` through the real reader: real pastes (tests/data/nvlink)."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.sources import ReadStats, read_paths
from tests.conftest import DATA, parse_text

NVLINK = DATA / "nvlink"


def events(path: Path) -> tuple[list[dict[str, object]], ReadStats]:
    stats = ReadStats()
    found = [e for batch in read_paths([str(path)], stats=stats) for e in batch.records()]
    return found, stats


def test_the_h100_paste_is_three_counters_per_link_and_nlink_s_is_not_read() -> None:
    found, stats = events(NVLINK / "h100-nvlink-e.txt")
    # links 0, 1 and 17 ("[...]" stands for the rest); the "nvlink --status" block after
    # it ("Link 0: 26.562 GB/s") is not an error counter
    assert [(e["kind"], e["link"], e["value"]) for e in found[:3]] == [
        ("nvlink_replay", 0, 0.0),
        ("nvlink_recovery", 0, 0.0),
        ("nvlink_crc", 0, 0.0),
    ]
    assert sorted({e["link"] for e in found}) == [0, 1, 17]  # type: ignore[type-var]
    assert len(found) == 9
    assert {e["uuid"] for e in found} == {"GPU-abcdefab-cdef-abdc-abcd-abababababab"}
    assert {(e["gpu"], e["source"], e["line"]) for e in found[:1]} == {(0, "smi", 3)}
    assert "pci" not in found[0]  # the output names none
    assert not stats.unreadable and not stats.skipped


def test_the_gb300_form_without_uuid_and_with_tab_indents() -> None:
    found, stats = events(NVLINK / "gb300-hwinfo-before.out")
    assert [(e["kind"], e["gpu"], e["link"]) for e in found] == [
        ("nvlink_replay", 0, 0),
        ("nvlink_recovery", 0, 0),
        ("nvlink_crc", 0, 0),
    ]
    assert all("uuid" not in e for e in found)
    assert not stats.unreadable


def test_counts_unknown_counters_and_out_of_range_and_orphans(tmp_path: Path) -> None:
    real = (NVLINK / "h100-nvlink-e.txt").read_text().splitlines(keepends=True)
    header, counter = real[1], real[2]  # a GPU line, "Link 0: Replay Errors: 0"
    text = (
        header
        + counter.replace(": 0", ": 99999999999999999999999")  # past int64
        + counter.replace("Replay Errors", "Tx Errors")  # a counter not known here
        + counter.replace("Link 0", "Link 3").replace(": 0", ": 12")
        + "\nsome other line\n"
        + counter  # no GPU line above it
    )
    path = tmp_path / "node-7.txt"
    path.write_text(text)
    found, stats = events(path)
    assert [(e["link"], e["value"]) for e in found] == [(3, 12.0)]
    assert stats.unreadable == {("smi", "out of range"): 1}
    assert stats.skipped == {
        ("smi", "unknown nvlink counter"): 1,
        ("smi", "nvlink counter without its GPU line"): 1,
    }


def test_nvidia_smi_q_gpu_lines_are_not_taken_for_nvlink_output() -> None:
    found, _ = events(DATA / "h100" / "nvidia-smi-q.txt")
    assert not [e for e in found if str(e["kind"]).startswith("nvlink")]


def test_counts_that_are_no_counts_are_counted_inside_their_block(tmp_path: Path) -> None:
    lines = (DATA / "nvlink" / "h100-nvlink-e.txt").read_text().splitlines()
    gpu, good = lines[1], lines[2]  # "GPU 0: …" and "Link 0: Replay Errors: 0"
    bad = [
        "         Link 1: Replay Errors: -5",
        "         Link 1: Recovery Errors: NaN",
        "         Link 1: CRC Errors: 1e400",
        "         Link 2: CRC Errors: 0x10",
        "         Link 99999999999999999999: CRC Errors: 3",
        "         Link -1: CRC Errors: 3",
    ]
    events = parse_text(tmp_path, "\n".join([gpu, *bad, good]) + "\n", name="gpu-1.txt")
    assert [(e["kind"], e["link"], e["value"]) for e in events] == [("nvlink_replay", 0, 0.0)]
    assert events.stats.unreadable == {
        ("smi", "malformed nvlink counter"): 5,
        ("smi", "out of range"): 1,
    }

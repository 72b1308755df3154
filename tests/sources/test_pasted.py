"""What operators paste into tickets: fragments of nvidia-smi -q, dcgm-exporter's
windowed clock-event counter, grepped kubectl get events rows (tests/data/pasted)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DATA, parse, parse_text

PASTED = DATA / "pasted"


def test_a_grepped_clocks_throttle_block_without_a_gpu_is_shown_and_counted() -> None:
    events = parse(PASTED / "smi-grep-clocks-throttle.txt")
    (only,) = events
    assert (only["kind"], only["value"], only["clock"]) == ("clock_event", 1.0, "none")  # Idle
    assert only.get("pci") is None and only.get("gpu") is None
    assert events.stats.skipped["smi", "fragment without gpu"] == 1
    assert not events.stats.unreadable


def test_a_gpu_block_without_the_banner_is_that_gpu_s() -> None:
    events = parse(PASTED / "smi-gpu-block-580.txt")
    assert {e["pci"] for e in events} == {"000f:01:00.0"}
    (clock,) = events.of("clock_event")
    assert clock["value"] == 0.0  # every reason Not Active; the Counters block is not reasons
    assert events.of("temperature")[0]["value"] == 81.0
    idle = parse(PASTED / "smi-gpu-blocks-mangohud.txt")
    assert [e["value"] for e in idle.of("clock_event")] == [1.0]
    assert idle.of("clock_event")[0]["pci"] == "0000:0e:00.0"


def test_a_report_pasted_as_an_indented_code_block_is_read() -> None:
    events = parse(PASTED / "smi-indented-mx330.txt")
    (clock,) = events.of("clock_event")
    assert (clock["pci"], clock["gpu"], clock["value"]) == ("0000:2d:00.0", 0, 0.0)
    assert clock["clock"] == "wall"  # its Timestamp line
    assert not events.stats.unreadable


def test_an_annotated_active_line_is_active(tmp_path: Path) -> None:
    text = (PASTED / "smi-gpu-block-580.txt").read_text()
    marked = text.replace(
        "SW Thermal Slowdown               : Not Active",
        "SW Thermal Slowdown               : Active      (bitmask 0x20)",
    )
    (clock,) = parse_text(tmp_path, marked).of("clock_event")
    assert clock["value"] == 0x20


def test_hostile_fragments_are_counted_never_crash(tmp_path: Path) -> None:
    cases = [
        "GPU 00000000:01:00.0\n",  # a GPU line and nothing under it
        "    Clocks Event Reasons\nunrelated text\n",
        "    Clocks Event Reasons\n        Idle : Active\n" * 3,
        "GPU 00000000:01:00.0\n" + "    x" * 100_000 + "\n",
        "GPU 00000000:01:00.0\n    Clocks Event Reasons\n"
        + "        SW Thermal Slowdown : Active\n" * 5000,
        "  GPU 0000:01:00.0 \n\tClocks Throttle Reasons\n\t\tIdle : \n",
        "GPU FFFFFFFF:FF:FF.7\n    Temperature\n        GPU Current Temp : 999999999999999999999 C\n",
    ]
    for i, text in enumerate(cases):
        events = parse_text(tmp_path, text, name=f"case-{i}.log")
        assert all(e["kind"] in ("gpu_identity", "clock_event", "temperature") for e in events)
    events = parse_text(tmp_path, cases[0], name="empty.log")
    assert events == [] and events.stats.skipped["smi", "fragment without fields"] == 1


# --- dcgm-exporter's windowed clock-event counter ------------------------------------


def test_the_windowed_counter_is_a_clock_event_per_reason_seen() -> None:
    events = parse(PASTED / "dcgm-clock-events-count.prom")
    assert [(e["value"], e["detail"]) for e in events] == [
        (0x1, "gpu_idle seen 2 time(s) in 300 s"),
        (0x20, "sw_thermal seen 1 time(s) in 300 s"),
        (0x40, "hw_thermal seen 1 time(s) in 300 s"),
    ]
    assert {(e["node"], e["gpu"], e["source"]) for e in events} == {("home", 0, "dcgm")}
    old = parse(PASTED / "dcgm-clock-throttle-reasons-count.prom")
    assert [e["value"] for e in old] == [0x20, 0x40]


def test_a_zero_count_is_no_event_and_an_unknown_reason_is_counted(tmp_path: Path) -> None:
    head = 'DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="0",Hostname="n",window_size_in_ms="300000",'
    text = (
        head
        + 'clock_event="sw_thermal"} 0\n'
        + head
        + 'clock_event="warp_drive"} 3\n'
        + head
        + 'clock_event="sw_thermal"} NaN\n'
        + 'DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="0",clock_event="hw_thermal"} 1\n'
        + 'DCGM_EXP_CLOCK_EVENTS_COUNT{gpu="0",clock_event="hw_thermal",window_size_in_ms="9'
        + "9" * 40
        + '"} 1\n'
        + "DCGM_EXP_CLOCK_EVENTS_COUNT{gpu= 1\n"
    )
    events = parse_text(tmp_path, text, name="scrape.prom")
    assert [(e["value"], e["detail"]) for e in events] == [
        (0x40, "hw_thermal seen 1 time(s)"),
        (0x40, "hw_thermal seen 1 time(s)"),
    ]
    assert events.stats.unreadable["dcgm", "unknown clock event reason"] == 1
    assert events.stats.unreadable["dcgm", "malformed sample"] == 1


# --- kubectl get events | grep Evicted -----------------------------------------------


def test_grepped_eviction_rows_without_an_age_are_untimed_evictions() -> None:
    events = parse(PASTED / "k8s-grep-evicted-no-age.txt")
    assert len(events) == 5
    assert {e["kind"] for e in events} == {"pod_evicted"}
    assert {e["clock"] for e in events} == {"none"}
    assert {e["detail"] for e in events} == {"node condition MemoryPressure"}
    assert events[0]["pod"] == "metabase-9d847c4bb-ss74q" and events[0].get("namespace") is None


def test_rows_whose_header_was_grepped_away_keep_their_age(tmp_path: Path) -> None:
    rows = [
        line
        for line in (DATA / "k8s" / "get-events.txt").read_text().splitlines()
        if "Evicted" in line
    ]
    events = parse_text(tmp_path, "\n".join(rows) + "\n")
    (only,) = events
    assert (only["pod"], only["namespace"], only["clock"]) == ("llm-pretrain-8", "ml", "wall")
    aged = parse_text(
        tmp_path,
        "8s          Warning   Evicted   pod/eviction-test-ephemeral     "
        "The node was low on resource: ephemeral-storage\n",
        name="aged.log",
    )
    assert (aged[0]["clock"], aged[0].get("namespace")) == ("wall", None)
    assert aged[0]["detail"] == "low on ephemeral-storage"


def test_hostile_event_rows_never_crash(tmp_path: Path) -> None:
    text = (
        "Warning Evicted pod/ \n"
        "Warning   Evicted   "
        + "x" * 100_000
        + "\n"
        + "9" * 5000
        + "d Warning Evicted pod/p msg evicted\n"
        + "Warning Evicted pod/p\tThe node had condition: ["
        + "A" * 10_000
        + "\n"
    )
    events = parse_text(tmp_path, text)
    assert all(e["kind"] == "pod_evicted" for e in events)

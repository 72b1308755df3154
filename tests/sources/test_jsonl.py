"""fleetwatch's own JSONL events read back, and the real H100 NVML series as events."""

from __future__ import annotations

import json
from pathlib import Path

from fleetwatch.events import FIELDS
from tests.conftest import DATA, parse, parse_text


def test_parse_output_reads_back_to_the_same_events(tmp_path: Path) -> None:
    first = parse(DATA / "kernel", DATA / "dcgm", DATA / "nccl", year=2024)
    text = "".join(json.dumps(e) + "\n" for e in first)
    again = parse_text(tmp_path, text, name="events.jsonl")
    assert list(again) == list(first)
    assert again.stats.unreadable == {}


def test_events_with_wrong_types_are_counted(tmp_path: Path) -> None:
    text = (
        '{"kind": "xid", "code": "seventy-nine", "node": "n1"}\n'
        '{"kind": "no_such_kind", "node": "n1"}\n'
        '{"kind": "temperature", "value": 81.5, "node": "n1", "gpu": 2, "ts": 1700000000}\n'
    )
    events = parse_text(tmp_path, text, name="events.jsonl")
    assert [(e["kind"], e["value"], e["gpu"], e["clock"]) for e in events] == [
        ("temperature", 81.5, 2, "wall")
    ]
    assert events.stats.unreadable == {("jsonl", "invalid event"): 1}


def nvml_series_as_events(nvml: Path, node: str) -> list[dict[str, object]]:
    """The real H100 NVML capture as fleetwatch events: one clock_event, temperature
    and power sample per reading, every 0.1 s."""
    capture = json.loads(nvml.read_text())
    gpu = capture["gpus"][0]
    pci = "0000:" + gpu["pci"].split(":", 1)[1].lower()
    start = 1795707300.0
    events: list[dict[str, object]] = []
    for sample in capture["series"]:
        base = {
            "ts": start + sample["t"],
            "node": node,
            "gpu": gpu["index"],
            "pci": pci,
            "uuid": gpu["uuid"],
            "source": "nvml",
        }
        events.append({**base, "kind": "clock_event", "value": sample["reasons"]})
        events.append({**base, "kind": "temperature", "value": sample["temp"]})
        events.append({**base, "kind": "power", "value": sample["power_mw"] / 1000})
    return events


def test_real_h100_nvml_series_reads_as_events(tmp_path: Path) -> None:
    written = nvml_series_as_events(DATA / "h100" / "nvml.json", "h100-vm")
    path = tmp_path / "h100-series.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in written))
    events = parse(path)
    samples = len(json.loads((DATA / "h100" / "nvml.json").read_text())["series"])
    assert len(events) == len(written) == 3 * samples == 483
    reasons = {e["value"] for e in events.of("clock_event")}
    assert reasons == {0.0, 1.0, 4.0}  # idle, SW power cap under load, and none at cool-down
    assert max(e["value"] for e in events.of("power")) > 600  # ~700 W under the matmul load
    assert all(e["source"] == "nvml" and e["pci"] == "0000:00:06.0" for e in events)
    assert set(events[0]) <= set(FIELDS)

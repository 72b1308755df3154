"""The NVML poller against real H100 readings (a stand-in module: no GPU here)."""

from __future__ import annotations

import threading

import numpy as np

from fleetwatch.config import build, load
from fleetwatch.engine import Engine
from fleetwatch.events import KINDS, EventBatch, concat
from fleetwatch.inputs.nvml import NvmlSettings, NvmlSource
from tests.inputs.fake_nvml import READINGS, FakeNvml


def poll_all(nvml: FakeNvml, polls: int) -> tuple[NvmlSource, EventBatch]:
    source = NvmlSource(NvmlSettings(interval_s=0.001), "h100-node", nvml)
    got: list[EventBatch] = []
    stop = threading.Event()

    def deliver(batches: list[EventBatch], position: object) -> None:
        assert position is None  # counters are cumulative: nothing to resume
        got.extend(batches)
        if source.polls >= polls:
            stop.set()

    source.run(deliver, stop)
    return source, concat(got)


def test_every_reading_becomes_an_event_of_the_kind_the_detectors_read() -> None:
    nvml = FakeNvml()
    source, events = poll_all(nvml, 3)
    assert nvml.initialized == 0  # shut down again
    kinds = {KINDS[k] for k in np.unique(events["kind"])}
    assert kinds == {
        "gpu_identity", "ecc_corrected", "ecc_uncorrected", "remap_correctable",
        "remap_uncorrectable", "remap_pending", "remap_failure", "clock_event",
        "temperature", "power", "pcie_replay", "pcie_link",
    }  # fmt: skip
    first = next(r for r in events.records() if r["kind"] == "power")
    assert first["pci"] == "0000:00:06.0"
    assert first["uuid"] == READINGS["gpus"][0]["uuid"]
    assert first["gpu"] == 0 and first["node"] == "h100-node" and first["source"] == "nvml"
    assert first["value"] == READINGS["series"][0]["power_mw"] / 1000
    link = next(r for r in events.records() if r["kind"] == "pcie_link")
    assert link["value"] == 16 and link["detail"] == "gen5"
    # the serial is not supported by this capture: skipped once, not once per poll
    assert source.stats.skipped == {
        ("nvml", "serial not supported"): 1,
        ("nvml", "nvlink not supported"): 1,  # a one-GPU VM: said once, at start
    }
    assert not source.stats.unreadable


def test_an_xid_arrives_through_the_event_set() -> None:
    nvml = FakeNvml()
    nvml.xids.append(79)
    _, events = poll_all(nvml, 2)
    xids = [r for r in events.records() if r["kind"] == "xid"]
    assert [(x["code"], x["gpu"], x["pci"]) for x in xids] == [(79, 0, "0000:00:06.0")]
    findings = Engine(build(load(None))).run([events])
    assert [(f.detector, f.code, str(f.action)) for f in findings] == [
        ("xid_correlation", 79, "reboot_node")
    ]


def test_the_h100_under_load_at_its_power_cap_is_no_finding() -> None:
    # idle (0x1), then 700 W at the SW power cap (0x4), then cool-down: all normal
    nvml = FakeNvml()
    _, events = poll_all(nvml, len(READINGS["series"]))
    reasons = {r["value"] for r in events.records() if r["kind"] == "clock_event"}
    assert {1.0, 4.0} <= reasons
    assert Engine(build(load(None))).run([events]) == []

"""nvlink: link error rates per link, resets, Xid 74, one incident per GPU."""

from __future__ import annotations

import json
from pathlib import Path

from fleetwatch.config import build, load
from fleetwatch.detectors.nvlink import Config, Nvlink
from fleetwatch.engine import Engine
from fleetwatch.events import concat
from fleetwatch.findings import Action, Severity
from fleetwatch.inputs.nvml import NvmlSettings, NvmlSource
from fleetwatch.sources import read_paths
from tests.conftest import DATA
from tests.detectors.conftest_helpers import findings
from tests.inputs.fake_nvml import NVML_NVLINK_ERROR_DL_RECOVERY, FakeNvml

# dcgm-exporter's labels as a real GB200 scrape has them (NVIDIA/dcgm-exporter#581)
LABELS = (
    '{gpu="0",UUID="GPU-2e2b6342-3996-51b9-5480-e20df571e09c",pci_bus_id="00000008:01:00.0",'
    'device="nvidia0",modelName="NVIDIA GB200",Hostname="3f546054f69d"}'
)
T0 = 1_780_000_000  # seconds
XID_74 = (
    "2026-05-28T20:{m:02d}:00+00:00 3f546054f69d kernel: NVRM: Xid (PCI:0008:01:00): 74, "
    "pid='<unknown>', name=<unknown>, NVLink: fatal error detected on link 3\n"
)


def scrape(metric: str, values: list[float], every_s: float = 60.0, link: int | None = 3) -> str:
    name = f"DCGM_FI_DEV_NVLINK_{metric}_ERROR_COUNT_" + (
        f"L{link}" if link is not None else "TOTAL"
    )
    return "".join(
        f"{name}{LABELS} {v:g} {int((T0 + i * every_s) * 1000)}\n" for i, v in enumerate(values)
    )


def test_replays_over_the_hourly_line_warn_and_name_the_link(tmp_path: Path) -> None:
    found = findings(tmp_path, {"n/dcgm.prom": scrape("REPLAY", [0, 10, 30, 70, 70])}, "nvlink")
    assert len(found) == 1
    f = found[0]
    assert (f.severity, f.action, f.pci, f.node) == (
        Severity.WARNING, Action.INSPECT_FABRIC, "0008:01:00.0", "3f546054f69d"
    )  # fmt: skip
    assert "link 3: 70 replays in the last hour (limit 60)" in f.summary
    assert f.first_ts == T0 + 180  # the sample that crossed the line
    assert "link=3" in f.evidence[0]


def test_below_the_line_a_baseline_and_a_reset_are_no_finding(tmp_path: Path) -> None:
    # a large count already there is history; a drop is a reset (new baseline), not -500
    files = {
        "a/dcgm.prom": scrape("REPLAY", [5000, 5010, 5020]),
        "b/dcgm.prom": scrape("CRC_FLIT", [900, 0, 5, 300], link=None),
    }
    assert findings(tmp_path, files, "nvlink") == []


def test_one_recovery_an_hour_warns_crc_bursts_drain(tmp_path: Path) -> None:
    recovery = findings(tmp_path / "r", {"n/dcgm.prom": scrape("RECOVERY", [0, 0, 1])}, "nvlink")
    assert [(f.severity, f.action) for f in recovery] == [(Severity.WARNING, Action.INSPECT_FABRIC)]
    burst = findings(tmp_path / "c", {"n/dcgm.prom": scrape("CRC_DATA", [0, 7000])}, "nvlink")
    assert [(f.severity, f.action) for f in burst] == [(Severity.ERROR, Action.DRAIN_NODE)]
    assert "CRC errors (data)" in burst[0].summary and "117/s" in burst[0].summary


def test_sustained_over_the_line_drains(tmp_path: Path) -> None:
    rising = [i * 100.0 for i in range(40)]  # 100 replays a minute for 39 minutes
    found = findings(tmp_path, {"n/dcgm.prom": scrape("REPLAY", rising)}, "nvlink")
    assert [(f.severity, f.action) for f in found] == [(Severity.ERROR, Action.DRAIN_NODE)]
    assert "over it for 38 min" in found[0].summary  # the latest word on the link
    shorter = findings(
        tmp_path / "s", {"n/dcgm.prom": scrape("REPLAY", rising)}, "nvlink", nvlink__sustained_s=1e9
    )
    assert [f.action for f in shorter] == [Action.INSPECT_FABRIC]


def test_xid_74_alone_is_the_catalogs_finding_and_xid_correlation_leaves_it(
    tmp_path: Path,
) -> None:
    found = findings(tmp_path, {"n/kern.log": XID_74.format(m=0)})
    assert [(f.detector, f.severity, f.action, f.pci) for f in found] == [
        ("nvlink", Severity.ERROR, Action.INSPECT_FABRIC, "0008:01:00.0")
    ]
    assert "Xid 74 (NVLink Error) on link 3" in found[0].summary


def test_counters_and_xid_74_on_one_gpu_are_one_incident_that_drains(tmp_path: Path) -> None:
    files = {
        "n/dcgm.prom": scrape("REPLAY", [0, 10, 30, 70, 70]),
        "n/kern.log": XID_74.format(m=(T0 + 240) // 60 % 60),
    }
    found = findings(tmp_path, files, "nvlink")
    assert len(found) == 1
    assert (found[0].severity, found[0].action) == (Severity.ERROR, Action.DRAIN_NODE)
    assert "replays" in found[0].summary and "Xid 74" in found[0].summary


def test_a_restart_halfway_resumes_the_hour_and_flush_forgets_quiet_series(
    tmp_path: Path,
) -> None:
    (tmp_path / "dcgm.prom").write_text(scrape("REPLAY", [0, 20, 40, 61, 61]))
    events = concat(list(read_paths([str(tmp_path)])))
    first = Nvlink()
    assert first.process(events.take(slice(0, 3))) == []
    second = Nvlink()
    second.restore(json.loads(json.dumps(first.state())))
    assert [f.action for f in second.process(events.take(slice(3, 5)))] == [Action.INSPECT_FABRIC]
    assert second.size() == 4  # the incident, the series, the UUID and index addresses
    second.flush(T0 + 300)
    second.flush(T0 + 300 + Config().forget_gpu_after_s + 1)
    assert second.size() == 0


def test_nvml_link_counters_reach_the_detector() -> None:
    nvml = FakeNvml()
    nvml.nvlink_errors = {0: {}, 1: {}}
    source = NvmlSource(NvmlSettings(), "hgx-1", nvml)
    source.nvlink_every_s = 0.0
    nvml.nvmlInit()
    gpus = source._gpus(nvml)
    assert gpus[0].nvlinks == (0, 1)
    engine = Engine(build(load(None)))
    first = source.poll(nvml, gpus)
    kinds = {(r["kind"], r["link"], r.get("detail")) for r in first.records() if "link" in r}
    assert ("nvlink_crc", 1, "data") in kinds and ("nvlink_recovery", 0, None) in kinds
    assert engine.process(first) == []
    nvml.nvlink_errors[1][NVML_NVLINK_ERROR_DL_RECOVERY] = 2
    first["ts"][:] -= 60  # the first poll a minute before the second
    found = [f for f in engine.process(source.poll(nvml, gpus)) if f.detector == "nvlink"]
    assert [(f.action, f.pci) for f in found] == [(Action.INSPECT_FABRIC, "0000:00:06.0")]
    assert not source.stats.unreadable


def test_the_real_healthy_captures_are_silent() -> None:
    paths = [DATA / "nvlink", DATA / "real", DATA / "h100", Path("/work/shared/fixtures")]
    events = concat(list(read_paths([str(p) for p in paths if p.exists()])))
    assert [f for f in Engine(build(load(None))).run([events]) if f.detector == "nvlink"] == []


def test_an_undated_sample_and_an_xid_teach_the_gpu_address_for_the_same_batch() -> None:
    """Learning reads each group's first row, and the rows left out of the rates: a
    sample without a time still pairs its UUID with an address, so the UUID-only
    samples of the same batch are that GPU's (and so are Xid 74s naming its address)."""
    from fleetwatch.events import BatchBuilder

    uuid, pci = "GPU-2e2b6342-3996-51b9-5480-e20df571e09c", "00000008:01:00.0"
    base = {"kind": "nvlink_recovery", "source": "smi", "node": "n1", "link": 2}
    builder = BatchBuilder()
    builder.add({**base, "pci": pci, "uuid": uuid, "value": 1.0})  # undated: no rate
    for minute, value in enumerate([0.0, 0.0, 3.0]):
        builder.add(
            {**base, "clock": "wall", "ts": T0 + 60.0 * minute, "uuid": uuid, "value": value}
        )
    builder.add(
        {"kind": "xid", "source": "kmsg", "node": "n1", "code": 74, "pci": pci, "gpu": 1,
         "clock": "wall", "ts": T0 + 130.0, "detail": "NVLink: fatal error detected on link 2"}
    )  # fmt: skip
    builder.add(
        {"kind": "xid", "source": "smi", "node": "n1", "code": 74, "gpu": 1,
         "clock": "wall", "ts": T0 + 140.0}
    )  # fmt: skip
    detector = Nvlink()
    found = detector.process(builder.seal())
    # the UUID-only samples and both Xids are one GPU: the address, counters and Xid 74
    assert [(f.pci, f.action, f.count) for f in found] == [(pci, Action.DRAIN_NODE, 3)]
    assert sum(" xid code=74" in line for line in found[0].evidence) == 2
    assert detector.alias[("n1", uuid)][0] == detector.alias[("n1", "GPU 1")][0] == pci

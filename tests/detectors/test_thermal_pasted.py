"""thermal_throttle on what operators paste: -q fragments and dcgm-exporter's counter."""

from __future__ import annotations

from pathlib import Path

from fleetwatch.findings import Action, Severity
from tests.conftest import DATA
from tests.detectors.conftest_helpers import findings

PASTED = DATA / "pasted"
PCI_LABEL = 'pci_bus_id="00000000:3B:00.0",'


def test_a_pasted_gpu_block_in_thermal_slowdown_is_an_unconfirmed_check_cooling(
    tmp_path: Path,
) -> None:
    # the real 580 block, its SW Thermal Slowdown line Active (a variant made here)
    text = (
        (PASTED / "smi-gpu-block-580.txt")
        .read_text()
        .replace(
            "SW Thermal Slowdown               : Not Active",
            "SW Thermal Slowdown               : Active",
        )
    )
    (only,) = findings(tmp_path, {"gpu-9/ticket.txt": text}, only="thermal_throttle")
    assert (only.severity, only.action) == (Severity.WARNING, Action.CHECK_COOLING)
    assert (only.node, only.pci) == ("gpu-9", "000f:01:00.0")
    assert "unconfirmed" in only.summary and only.first_ts is None


def test_real_pasted_fragments_at_rest_stay_silent(tmp_path: Path) -> None:
    files = {
        f"node-{i}/{p.name}": p.read_text() for i, p in enumerate(sorted(PASTED.glob("smi-*")))
    }
    assert findings(tmp_path, files, only="thermal_throttle") == []


def test_the_windowed_counter_in_thermal_slowdown_is_an_unconfirmed_check_cooling(
    tmp_path: Path,
) -> None:
    real = (PASTED / "dcgm-clock-events-count.prom").read_text()
    # the real scrape names no PCI address: no GPU to judge
    assert findings(tmp_path / "real", {"home/scrape.prom": real}, only="thermal_throttle") == []
    # with the pci_bus_id label newer exporters add (a variant made here)
    labelled = real.replace('gpu="0",', 'gpu="0",' + PCI_LABEL)
    (only,) = findings(tmp_path / "pci", {"home/scrape.prom": labelled}, only="thermal_throttle")
    assert (only.action, only.pci, only.node) == (Action.CHECK_COOLING, "0000:3b:00.0", "home")
    assert "unconfirmed" in only.summary


def test_a_series_of_scrapes_confirms_it_and_idle_or_power_cap_stay_silent(tmp_path: Path) -> None:
    def scrape(reason: str, ts_ms: int) -> str:
        return (
            f'DCGM_EXP_CLOCK_EVENTS_COUNT{{gpu="0",{PCI_LABEL}Hostname="gpu-4",'
            f'clock_event="{reason}",window_size_in_ms="300000"}} 10 {ts_ms}\n'
        )

    t = 1_717_495_200_000
    hot = "".join(scrape("sw_thermal", t + i * 30_000) for i in range(10))
    (only,) = findings(tmp_path / "hot", {"gpu-4/scrape.prom": hot}, only="thermal_throttle")
    assert "unconfirmed" not in only.summary and only.action == Action.CHECK_COOLING
    rest = "".join(
        scrape(reason, t + i * 30_000) for i in range(10) for reason in ("gpu_idle", "power_cap")
    )
    assert findings(tmp_path / "rest", {"gpu-4/scrape.prom": rest}, only="thermal_throttle") == []

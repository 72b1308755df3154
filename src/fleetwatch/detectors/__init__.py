"""The pattern library: one module per fault, registered here by name.

Each detector module defines its class (with ``name``, ``kinds``, ``process``,
``flush``) and a frozen ``Config`` whose fields are its thresholds, each with a
default and a docstring. ``REGISTRY`` maps names to them; a duplicate name is an error
at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetwatch.detectors import (
    hbm_ecc,
    nccl_hang,
    pcie_aer,
    pod_evicted,
    thermal_throttle,
    xid_correlation,
)
from fleetwatch.detectors.base import Detector


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: how to build it and what configures it."""

    name: str
    description: str
    factory: Callable[[Any], Detector]
    config: type
    kinds: frozenset[str]


def _spec(module: Any, cls: Any, description: str) -> DetectorSpec:
    return DetectorSpec(cls.name, description, cls, module.Config, cls.kinds)


_SPECS = [
    _spec(
        hbm_ecc,
        hbm_ecc.HbmEcc,
        "uncorrectable ECC errors, row remaps pending or failed, corrected-error rate",
    ),
    _spec(
        nccl_hang,
        nccl_hang.NcclHang,
        "collective timeouts across ranks, the culprit rank and its GPU",
    ),
    _spec(
        pcie_aer,
        pcie_aer.PcieAer,
        "PCIe AER errors and replays per device, attributed to the GPU behind a port",
    ),
    _spec(
        pod_evicted,
        pod_evicted.PodEvicted,
        "eviction storms on a node, and evictions that are a GPU fault's impact",
    ),
    _spec(
        thermal_throttle,
        thermal_throttle.ThermalThrottle,
        "sustained thermal slowdown, and whether it is one GPU's cooling",
    ),
    _spec(
        xid_correlation,
        xid_correlation.XidCorrelation,
        "classify Xids, fold bursts, tell job bugs from node and fabric faults",
    ),
]
REGISTRY: dict[str, DetectorSpec] = {}
for _s in _SPECS:
    if _s.name in REGISTRY:
        raise ValueError(f"two detectors are named {_s.name!r}")
    REGISTRY[_s.name] = _s

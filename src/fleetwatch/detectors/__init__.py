"""The pattern library: one module per fault, registered here by name.

Each detector module defines its class (with ``name``, ``description``, ``kinds``,
``config_type``, ``process``, ``flush``) and a frozen ``Config`` whose fields are its
thresholds, each with a default and a docstring. ``DETECTORS`` lists the classes, one
row each; ``REGISTRY`` maps names to them; a duplicate name is an error at import
time. Which detector owns each Xid is data: ``owner`` in ``catalog/xid.toml``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleetwatch.detectors import (
    gsp_fault,
    hbm_ecc,
    nccl_hang,
    nvlink,
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


# One row per detector; each says on itself what it is (name, description, kinds,
# config_type).
DETECTORS: tuple[Any, ...] = (
    gsp_fault.GspFault,
    hbm_ecc.HbmEcc,
    nccl_hang.NcclHang,
    nvlink.Nvlink,
    pcie_aer.PcieAer,
    pod_evicted.PodEvicted,
    thermal_throttle.ThermalThrottle,
    xid_correlation.XidCorrelation,
)
REGISTRY: dict[str, DetectorSpec] = {}
for _cls in DETECTORS:
    if _cls.name in REGISTRY:
        raise ValueError(f"two detectors are named {_cls.name!r}")
    REGISTRY[_cls.name] = DetectorSpec(
        _cls.name, _cls.description, _cls, _cls.config_type, _cls.kinds
    )

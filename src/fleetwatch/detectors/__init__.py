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

from fleetwatch.detectors import xid_correlation
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

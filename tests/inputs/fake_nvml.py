"""A stand-in for the ``pynvml`` module, answering with real H100 readings.

Nothing here can load NVML (no GPU, no driver), so the poller's tests use this: each
call answers what the H100 of ``tests/data/h100/nvml.json`` answered, stepping through
its 25 s series (idle, then a bf16 load at the 700 W power cap, then cool-down) one
sample per poll. Calls the real GPU did not support raise ``NVMLError`` with
``NVML_ERROR_NOT_SUPPORTED``, as NVML does: NVLink among them (a one-GPU VM). A test
that wants an NVLink GPU sets ``nvlink_errors`` (link -> counter -> count; not from
the capture): its links are then active and answer those counts, and a link past them
answers ``NVML_ERROR_INVALID_ARGUMENT`` as NVML does. ``make gpu-check`` runs the real
thing.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Any

READINGS = json.loads((Path(__file__).parent.parent / "data" / "h100" / "nvml.json").read_text())

NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_TIMEOUT = 10
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_TEMPERATURE_GPU = 0
nvmlEventTypeXidCriticalError = 8
NVML_FEATURE_ENABLED = 1
NVML_NVLINK_MAX_LINKS = 18
NVML_NVLINK_ERROR_DL_REPLAY = 0
NVML_NVLINK_ERROR_DL_RECOVERY = 1
NVML_NVLINK_ERROR_DL_CRC_FLIT = 2
NVML_NVLINK_ERROR_DL_CRC_DATA = 3


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


class _Pci:
    busId = READINGS["gpus"][0]["pci"].encode()


class _Event:
    def __init__(self, device: int, code: int) -> None:
        self.device = device
        self.eventData = code


class FakeNvml:
    """One module-like object; ``xids`` are delivered through the event set."""

    NVMLError = NVMLError
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_MEMORY_ERROR_TYPE_CORRECTED = NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = NVML_VOLATILE_ECC
    NVML_AGGREGATE_ECC = NVML_AGGREGATE_ECC
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    nvmlEventTypeXidCriticalError = nvmlEventTypeXidCriticalError
    NVML_FEATURE_ENABLED = NVML_FEATURE_ENABLED
    NVML_NVLINK_MAX_LINKS = NVML_NVLINK_MAX_LINKS
    NVML_NVLINK_ERROR_DL_REPLAY = NVML_NVLINK_ERROR_DL_REPLAY
    NVML_NVLINK_ERROR_DL_RECOVERY = NVML_NVLINK_ERROR_DL_RECOVERY
    NVML_NVLINK_ERROR_DL_CRC_FLIT = NVML_NVLINK_ERROR_DL_CRC_FLIT
    NVML_NVLINK_ERROR_DL_CRC_DATA = NVML_NVLINK_ERROR_DL_CRC_DATA

    def __init__(self) -> None:
        self.gpu = READINGS["gpus"][0]
        self.series = READINGS["series"]
        self.step = 0
        self.xids: deque[int] = deque()
        self.initialized = 0
        self.nvlink_errors: dict[int, dict[int, int]] | None = None  # None: no NVLink

    def sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = self.series[min(self.step, len(self.series) - 1)]
        return sample

    # -- the NVML calls the poller makes --------------------------------------------
    def nvmlInit(self) -> None:
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self.initialized -= 1

    def nvmlDeviceGetCount(self) -> int:
        return int(READINGS["count"])

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return 1000 + index

    def nvmlDeviceGetPciInfo(self, handle: int) -> _Pci:
        return _Pci()

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return str(self.gpu["uuid"])

    def nvmlDeviceGetSerial(self, handle: int) -> str:
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # not in the capture

    def nvmlDeviceGetTotalEccErrors(self, handle: int, error_type: int, counter: int) -> int:
        scope = "vol" if counter == NVML_VOLATILE_ECC else "agg"
        kind = "corrected" if error_type == NVML_MEMORY_ERROR_TYPE_CORRECTED else "uncorrected"
        return int(self.gpu[f"ecc_{scope}_{kind}"])

    def nvmlDeviceGetRemappedRows(self, handle: int) -> tuple[int, int, int, int]:
        values = self.gpu["remapped_rows"].strip("()").split(",")
        a, b, c, d = (int(v) for v in values)
        return a, b, c, d

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: int) -> int:
        return int(self.sample()["reasons"])

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return int(self.sample()["temp"])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        power = int(self.sample()["power_mw"])
        self.step += 1  # the last reading of a poll: the next poll is the next sample
        return power

    def nvmlDeviceGetPcieReplayCounter(self, handle: int) -> int:
        return int(self.gpu["pcie_replay"])

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: int) -> int:
        return int(self.gpu["pcie_width"])

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: int) -> int:
        return int(self.gpu["pcie_gen"])

    def nvmlDeviceGetNvLinkState(self, handle: int, link: int) -> int:
        if self.nvlink_errors is None:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)  # as the captured GPU answered
        if link not in self.nvlink_errors:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return NVML_FEATURE_ENABLED

    def nvmlDeviceGetNvLinkErrorCounter(self, handle: int, link: int, counter: int) -> int:
        if self.nvlink_errors is None or link not in self.nvlink_errors:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return self.nvlink_errors[link].get(counter, 0)

    def nvmlEventSetCreate(self) -> str:
        return "events"

    def nvmlDeviceRegisterEvents(self, handle: int, types: int, events: str) -> None:
        assert types == nvmlEventTypeXidCriticalError

    def nvmlEventSetWait_v2(self, events: str, timeout_ms: int) -> _Event:
        if self.xids:
            return _Event(1000, self.xids.popleft())
        raise NVMLError(NVML_ERROR_TIMEOUT)

    def nvmlEventSetFree(self, events: str) -> None:
        pass

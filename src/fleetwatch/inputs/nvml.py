"""The NVML poller: reads every GPU of this node through NVML (nvidia-ml-py).

Every ``interval_s`` it reads, for each GPU, the same things the ``smi`` and ``dcgm``
readers find in their formats, as events of source ``nvml`` and the same kinds, so
every detector reads them unchanged:

=====================  ====================================================================
kind                   NVML call
=====================  ====================================================================
``gpu_identity``       index, UUID, board serial, PCI bus id (once, at start)
``ecc_corrected``,     ``nvmlDeviceGetTotalEccErrors`` (corrected / uncorrected; volatile
``ecc_uncorrected``    and aggregate scope)
``remap_*``            ``nvmlDeviceGetRemappedRows``: correctable and uncorrectable rows,
                       pending, failure
``clock_event``        ``nvmlDeviceGetCurrentClocksEventReasons`` (the reason bitmask)
``temperature``        ``nvmlDeviceGetTemperature`` (GPU, °C)
``power``              ``nvmlDeviceGetPowerUsage`` (W)
``pcie_replay``        ``nvmlDeviceGetPcieReplayCounter``
``pcie_link``          ``nvmlDeviceGetCurrPcieLinkWidth`` (value) and generation (detail)
``xid``                an NVML event set registered for critical XID events, waited on
                       between polls, so an XID arrives within milliseconds
``nvlink_replay``,     ``nvmlDeviceGetNvLinkErrorCounter`` (``NVML_NVLINK_ERROR_DL_REPLAY``,
``nvlink_recovery``,   ``_RECOVERY``, ``_CRC_FLIT`` and ``_CRC_DATA``, detail ``flit`` /
``nvlink_crc``         ``data``) of each active link (``nvmlDeviceGetNvLinkState``, found at
                       start), every ``NVLINK_EVERY_S`` (10 s): 18 links x 4 counters a GPU
=====================  ====================================================================

A reading a GPU does not support (``NVMLError_NotSupported``: remapped rows on older
GPUs, ECC with ECC off) is left out and counted once per GPU and reading as "skipped";
any other NVML error on one reading is counted as unreadable, and the rest goes on.
Counters are cumulative; the detectors keep the deltas, so nothing is saved here.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

from fleetwatch.events import BatchBuilder, EventBatch
from fleetwatch.extras import hint
from fleetwatch.inputs.live import Deliver, SourceError
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import ReadStats

SOURCE: Final = "nvml"
NVLINK_EVERY_S: Final = 10.0  # NVLink error counters change slowly; 72 readings a GPU
# (kind, NVML counter constant, detail): what nvmlDeviceGetNvLinkErrorCounter reads
_NVLINK_COUNTERS: Final = (
    ("nvlink_replay", "NVML_NVLINK_ERROR_DL_REPLAY", None),
    ("nvlink_recovery", "NVML_NVLINK_ERROR_DL_RECOVERY", None),
    ("nvlink_crc", "NVML_NVLINK_ERROR_DL_CRC_FLIT", "flit"),
    ("nvlink_crc", "NVML_NVLINK_ERROR_DL_CRC_DATA", "data"),
)


@dataclass(frozen=True)
class NvmlSettings:
    """``[watch.nvml]``: poll this node's GPUs through NVML."""

    interval_s: float = 1.0
    """Seconds between readings of every GPU."""


@dataclass(frozen=True)
class _Gpu:
    index: int
    handle: Any
    pci: str | None
    uuid: str | None
    serial: str | None
    nvlinks: tuple[int, ...] = ()  # the active NVLink links


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSource:
    """Polls NVML; ``nvml`` is the ``pynvml`` module (a stand-in in tests)."""

    def __init__(self, settings: NvmlSettings, node: str, nvml: Any = None) -> None:
        self.name = SOURCE
        self.settings = settings
        self.node = node
        self.stats = ReadStats()
        self._nvml = nvml
        self._unsupported: set[tuple[int, str]] = set()
        self.polls = 0
        self.nvlink_every_s = NVLINK_EVERY_S
        self._nvlink_due = 0.0  # time.monotonic() of the next NVLink reading

    def _module(self) -> Any:
        if self._nvml is None:
            import pynvml  # nvidia-ml-py: imported only where NVML is wanted

            self._nvml = pynvml
        return self._nvml

    def check(self) -> None:
        """NVML must load here: without a driver no retry will find a GPU."""
        try:
            nvml = self._module()
            nvml.nvmlInit()
        except ImportError as exc:  # nvidia-ml-py is not installed
            raise SourceError(hint("fleetwatch watch --nvml", {"watch"})) from exc
        except Exception as exc:  # NVMLError and its many subclasses
            raise SourceError(f"--nvml: NVML cannot start here ({exc})") from exc
        nvml.nvmlShutdown()

    def run(self, deliver: Deliver, stop: threading.Event) -> None:
        nvml = self._module()
        nvml.nvmlInit()
        events = None
        try:
            gpus = self._gpus(nvml)
            events = self._event_set(nvml, gpus)
            builder = BatchBuilder()
            for gpu in gpus:
                builder.add({**self._base(gpu, time.time()), "kind": "gpu_identity"})
            deliver([builder.seal()], None)
            next_poll = time.monotonic()
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_poll:
                    deliver([self.poll(nvml, gpus)], None)
                    next_poll = now + self.settings.interval_s
                # between polls, wait for XIDs (in short slices, so a stop is quick)
                wait_ms = int(max(0.0, min(next_poll - time.monotonic(), 0.2)) * 1000)
                xids = self._xids(nvml, events, gpus, wait_ms)
                if xids is not None:
                    deliver([xids], None)
                elif events is None:
                    stop.wait(wait_ms / 1000)
        finally:
            if events is not None:
                nvml.nvmlEventSetFree(events)
            nvml.nvmlShutdown()

    def _gpus(self, nvml: Any) -> list[_Gpu]:
        gpus = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            pci = self._try(nvml, index, "pci", nvml.nvmlDeviceGetPciInfo, handle)
            uuid = self._try(nvml, index, "uuid", nvml.nvmlDeviceGetUUID, handle)
            serial = self._try(nvml, index, "serial", nvml.nvmlDeviceGetSerial, handle)
            bus_id = _text(pci.busId) if pci is not None else ""
            gpus.append(
                _Gpu(
                    index,
                    handle,
                    normalize_pci(bus_id),
                    _text(uuid) if uuid is not None else None,
                    _text(serial) if serial is not None else None,
                    self._nvlinks(nvml, index, handle),
                )
            )
        return gpus

    def _nvlinks(self, nvml: Any, index: int, handle: Any) -> tuple[int, ...]:
        """The GPU's active NVLink links (none where NVLink is not supported)."""
        active = []
        for link in range(int(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 18))):
            if link == 0:  # no NVLink at all is said (and counted) once
                state = self._try(nvml, index, "nvlink", partial(_nvlink_state, nvml, 0), handle)
            else:
                try:  # past the GPU's last link NVML answers "invalid argument"
                    state = _nvlink_state(nvml, link, handle)
                except nvml.NVMLError:
                    state = None
            if state is None:
                break
            if state == getattr(nvml, "NVML_FEATURE_ENABLED", 1):
                active.append(link)
        return tuple(active)

    def _event_set(self, nvml: Any, gpus: list[_Gpu]) -> Any:
        try:
            events = nvml.nvmlEventSetCreate()
        except nvml.NVMLError:
            self.stats.skip(SOURCE, "no event set: XIDs are not read")
            return None
        for gpu in gpus:
            try:
                nvml.nvmlDeviceRegisterEvents(
                    gpu.handle, nvml.nvmlEventTypeXidCriticalError, events
                )
            except nvml.NVMLError:
                self.stats.skip(SOURCE, "XID events not supported")
        return events

    def _xids(self, nvml: Any, events: Any, gpus: list[_Gpu], wait_ms: int) -> EventBatch | None:
        if events is None:
            return None
        builder = BatchBuilder()
        while True:
            try:
                data = nvml.nvmlEventSetWait_v2(events, wait_ms)
            except nvml.NVMLError:  # NVML_ERROR_TIMEOUT: nothing happened
                break
            wait_ms = 0  # drain what else is there, without waiting again
            gpu = next((g for g in gpus if _same(g.handle, data.device)), None)
            fields = self._base(gpu, time.time())
            builder.add({**fields, "kind": "xid", "code": int(data.eventData), "detail": "NVML"})
        return builder.seal() if len(builder) else None

    def poll(self, nvml: Any, gpus: list[_Gpu]) -> EventBatch:
        """One reading of every GPU, as a batch."""
        builder = BatchBuilder()
        now = time.time()
        nvlink_now = time.monotonic() >= self._nvlink_due
        if nvlink_now:
            self._nvlink_due = time.monotonic() + self.nvlink_every_s
        for gpu in gpus:
            base = self._base(gpu, now)
            h = gpu.handle
            for kind, error_type in (
                ("ecc_corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                ("ecc_uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
            ):
                for scope, counter in (
                    ("volatile", nvml.NVML_VOLATILE_ECC),
                    ("aggregate", nvml.NVML_AGGREGATE_ECC),
                ):
                    value = self._try(
                        nvml,
                        gpu.index,
                        f"{kind} {scope}",
                        partial(_ecc, nvml, error_type, counter),
                        h,
                    )
                    if value is not None:
                        builder.add({**base, "kind": kind, "scope": scope, "value": float(value)})
            remap = self._try(nvml, gpu.index, "remapped rows", nvml.nvmlDeviceGetRemappedRows, h)
            if remap is not None:
                correctable, uncorrectable, pending, failure = remap
                for kind, value in (
                    ("remap_correctable", correctable),
                    ("remap_uncorrectable", uncorrectable),
                    ("remap_pending", pending),
                    ("remap_failure", failure),
                ):
                    builder.add({**base, "kind": kind, "value": float(value)})
            readings = (
                ("clock_event", _clock_reasons(nvml), 1.0),
                ("temperature", partial(_temperature, nvml), 1.0),
                ("power", nvml.nvmlDeviceGetPowerUsage, 0.001),  # mW -> W
                ("pcie_replay", nvml.nvmlDeviceGetPcieReplayCounter, 1.0),
            )
            for kind, call, scale in readings:
                value = self._try(nvml, gpu.index, kind, call, h)
                if value is not None:
                    builder.add({**base, "kind": kind, "value": float(value) * scale})
            width = self._try(nvml, gpu.index, "link width", nvml.nvmlDeviceGetCurrPcieLinkWidth, h)
            gen = self._try(
                nvml, gpu.index, "link gen", nvml.nvmlDeviceGetCurrPcieLinkGeneration, h
            )
            if width is not None:
                detail = f"gen{gen}" if gen is not None else None
                builder.add({**base, "kind": "pcie_link", "value": float(width), "detail": detail})
            if nvlink_now:
                self._nvlink_errors(nvml, gpu, base, builder)
        self.polls += 1
        self.stats.lines += 1
        return builder.seal()

    def _nvlink_errors(
        self, nvml: Any, gpu: _Gpu, base: dict[str, Any], builder: BatchBuilder
    ) -> None:
        """Each active link's error counters (cumulative) as events."""
        for kind, constant, detail in _NVLINK_COUNTERS:
            counter = getattr(nvml, constant, None)
            if counter is None:  # an old nvidia-ml-py without it
                continue
            for link in gpu.nvlinks:
                value = self._try(
                    nvml,
                    gpu.index,
                    f"{kind} {detail or ''}".strip(),
                    partial(_nvlink_error, nvml, link, counter),
                    gpu.handle,
                )
                if value is not None:
                    builder.add(
                        {
                            **base,
                            "kind": kind,
                            "link": link,
                            "value": float(value),
                            "detail": detail,
                        }
                    )

    def _base(self, gpu: _Gpu | None, ts: float) -> dict[str, Any]:
        fields: dict[str, Any] = {"source": SOURCE, "ts": ts, "clock": "wall", "node": self.node}
        if gpu is not None:
            fields.update(gpu=gpu.index, pci=gpu.pci, uuid=gpu.uuid, serial=gpu.serial)
        return fields

    def _try(self, nvml: Any, index: int, what: str, call: Any, handle: Any) -> Any:
        """``call(handle)``, or None when this GPU cannot say (counted once, never raised)."""
        try:
            return call(handle)
        except nvml.NVMLError as exc:
            if (index, what) not in self._unsupported:
                self._unsupported.add((index, what))
                if _not_supported(nvml, exc):
                    self.stats.skip(SOURCE, f"{what} not supported")
                else:
                    self.stats.bad(SOURCE, f"{what}: {exc}")
            return None


def _ecc(nvml: Any, error_type: int, counter: int, handle: Any) -> Any:
    return nvml.nvmlDeviceGetTotalEccErrors(handle, error_type, counter)


def _nvlink_state(nvml: Any, link: int, handle: Any) -> Any:
    return nvml.nvmlDeviceGetNvLinkState(handle, link)


def _nvlink_error(nvml: Any, link: int, counter: int, handle: Any) -> Any:
    return nvml.nvmlDeviceGetNvLinkErrorCounter(handle, link, counter)


def _temperature(nvml: Any, handle: Any) -> Any:
    return nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)


def _clock_reasons(nvml: Any) -> Any:
    # Renamed in driver 535 ("throttle" -> "clocks event"); the old name still works.
    return getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or (
        nvml.nvmlDeviceGetCurrentClocksThrottleReasons
    )


def _not_supported(nvml: Any, exc: Exception) -> bool:
    return getattr(exc, "value", None) == getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", -1)


def _same(a: Any, b: Any) -> bool:
    """Two NVML device handles name the same GPU (ctypes pointers, by address)."""
    try:
        return _address(a) == _address(b)
    except (ctypes.ArgumentError, TypeError):
        return bool(a == b)  # a stand-in's plain handles


def _address(handle: Any) -> int:
    return int(ctypes.cast(handle, ctypes.c_void_p).value or 0)

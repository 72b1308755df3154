"""Plain per-event versions of two detectors, for comparison and as references.

Each subclasses the shipped detector and replaces only ``process`` with the obvious
loop: one event at a time, as a dict. Incidents, windows and findings are the shipped
code's, so the two must find exactly the same (``tests/bench/test_reference.py``), and
the benchmark shows what reading whole batches with numpy buys.
"""

from __future__ import annotations

from typing import ClassVar

from fleetwatch.detectors.base import at, describe
from fleetwatch.detectors.pod_evicted import PodEvicted
from fleetwatch.detectors.thermal_throttle import _HW_SLOWDOWN, _THERMAL_BITS, ThermalThrottle
from fleetwatch.detectors.thermal_throttle import _Window as ThermalWindow
from fleetwatch.events import EventBatch
from fleetwatch.findings import Finding


class PlainPodEvicted(PodEvicted):
    """pod_evicted, one event at a time."""

    name: ClassVar[str] = "pod_evicted"

    def process(self, batch: EventBatch) -> list[Finding]:
        out: dict[str, Finding] = {}
        for row in range(len(batch)):
            event = batch.record(row)
            kind, ts, node = event["kind"], event["ts"], event["node"]
            wall = event["clock"] == "wall"
            if kind in ("xid", "sxid", "gpu_lost") and ts is not None and wall:
                what = {"xid": f"Xid {event.get('code')}", "sxid": f"SXid {event.get('code')}"}
                self.faults[node] = (ts, what.get(kind, "Xid 79 (fallen off the bus)"), None)
            elif kind in ("pod_evicted", "node_not_ready"):
                when = at(batch, row)
                incident, _ = self.book.touch((node,), when, 1, describe(batch, row))
                reasons = incident.attrs.setdefault("reasons", {})
                reason = event.get("reason") or "Evicted"
                label = f"{reason} ({event['detail']})" if event.get("detail") else reason
                reasons[label] = reasons.get(label, 0) + 1
                if kind == "pod_evicted":
                    incident.attrs["evictions"] = incident.attrs.get("evictions", 0) + 1
                fault = self.faults.get(node)
                soon = self.config.after_fault_s
                if fault is not None and wall and ts is not None and 0 <= ts - fault[0] <= soon:
                    incident.attrs["after_fault"] = fault[1]
                finding = self._finding(node, incident)
                out[finding.id] = finding
        return list(out.values())


class PlainThermalThrottle(ThermalThrottle):
    """thermal_throttle, one event at a time."""

    name: ClassVar[str] = "thermal_throttle"

    def process(self, batch: EventBatch) -> list[Finding]:
        out: dict[str, Finding] = {}
        size = self.config.window_s
        for row in range(len(batch)):
            event = batch.record(row)
            if event.get("pci") is None or event["ts"] is None:
                continue
            key = (event["node"], event["pci"])
            if event["kind"] == "temperature":
                self.temperature[key] = event["value"]
                self.seen[key] = None
                continue
            if event["kind"] != "clock_event":
                continue
            self.seen[key] = None
            if key not in self.identity:
                self.identity[key] = {"gpu": event.get("gpu"), "uuid": event.get("uuid")}
            reasons = int(event["value"])
            hot = self.temperature.get(key, 0.0) >= self.config.hot_c
            thermal = bool(reasons & _THERMAL_BITS) or (bool(reasons & _HW_SLOWDOWN) and hot)
            start = (event["ts"] // size) * size
            window = self.windows.get(key)
            if window is not None and window.start != start:
                for finding in self._close(key):
                    out[finding.id] = finding
                window = None
            if window is None:
                window = self.windows[key] = ThermalWindow(start=start)
            window.samples += 1
            window.seen = None
            window.last_ts = event["ts"]
            if thermal:
                window.thermal += 1
                text = describe(batch, row)
                window.first = window.first or text
                window.last = text
        return list(out.values())

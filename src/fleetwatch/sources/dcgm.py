"""dcgm-exporter scrapes: Prometheus text, read with prometheus-client's own parser.

Each sample of a metric in ``catalog/dcgm_fields.toml`` becomes one event (source
``dcgm``) of that metric's kind and scope, for the GPU its labels name: ``gpu``
(NVML index), ``UUID``, ``pci_bus_id``, ``Hostname``/``hostname`` (the node), and the
workload on it, ``pod``, ``namespace``; MIG labels (``GPU_I_ID``) go to ``detail``.
``DCGM_FI_DEV_XID_ERRORS`` holds the last XID: its value is the code, 0 is none.

DCGM writes a "blank" sentinel for a field the GPU does not support (values from
0x7ffffff0 for 32-bit fields, 0x7ffffffffffffff0 for 64-bit, 2^47 for floats): that
is no value, never a count, and no event comes of it. Samples are parsed one line at
a time, so one bad line is one unreadable record, not a lost scrape.
"""

from __future__ import annotations

from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from fleetwatch.catalog import dcgm_metrics
from fleetwatch.pci import normalize_pci
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.envelope import Envelope

SOURCE: Final = "dcgm"
_INT32_BLANK: Final = 0x7FFFFFF0
_INT64_BLANK: Final = 0x7FFFFFFFFFFFFFF0
_FP64_BLANK: Final = 2.0**47


def is_blank(value: float) -> bool:
    """True for DCGM's not-supported / not-found / no-permission sentinels."""
    return (
        _INT32_BLANK <= value <= _INT32_BLANK + 15
        or value >= float(_INT64_BLANK)
        or _FP64_BLANK <= value <= _FP64_BLANK + 15
    )


def read_line(text: str, env: Envelope, line: int, ctx: FileContext) -> None:
    """Read one exposition line (HELP and TYPE comments carry nothing we need)."""
    if text.startswith("#"):
        return
    try:
        families = list(text_string_to_metric_families(text + "\n"))
    except (ValueError, IndexError, KeyError, TypeError):
        ctx.stats.bad(SOURCE, "malformed sample")
        return
    metrics = dcgm_metrics()
    for family in families:
        for sample in family.samples:
            rule = metrics.get(sample.name)
            if rule is None:
                continue
            value = float(sample.value)
            if is_blank(value):
                ctx.stats.skip(SOURCE, "blank value")
                continue
            if value != value:  # NaN: DCGM had nothing to report
                continue
            _emit(sample.labels, rule.kind, rule.scope, value, sample.timestamp, env, line, ctx)


def _emit(
    labels: dict[str, str],
    kind: str,
    scope: str | None,
    value: float,
    timestamp: Any,
    env: Envelope,
    line: int,
    ctx: FileContext,
) -> None:
    node = labels.get("Hostname") or labels.get("hostname") or env.host
    pci = normalize_pci(labels.get("pci_bus_id", ""))
    gpu_label = labels.get("gpu", "")
    gpu = int(gpu_label) if gpu_label.isdigit() else None
    uuid = labels.get("UUID") or labels.get("uuid") or None
    if pci is not None:
        ctx.identities.learn(node or ctx.node, pci, uuid=uuid, gpu=gpu)
    ts, clock = (float(timestamp), "wall") if timestamp is not None else (env.ts, env.clock)
    event: dict[str, Any] = {
        "kind": kind,
        "source": SOURCE,
        "line": line,
        "ts": ts,
        "clock": clock,
        "node": node,
        "pci": pci,
        "gpu": gpu,
        "uuid": uuid,
        "scope": scope,
        "pod": labels.get("pod") or labels.get("exported_pod") or None,
        "namespace": labels.get("namespace") or labels.get("exported_namespace") or None,
    }
    if "GPU_I_ID" in labels:
        event["detail"] = (
            f"MIG instance {labels['GPU_I_ID']} {labels.get('GPU_I_PROFILE', '')}".strip()
        )
    if kind == "xid":
        if value <= 0:
            return  # no XID since the exporter started
        event["code"] = int(value)
    else:
        event["value"] = value
    ctx.emit(event)

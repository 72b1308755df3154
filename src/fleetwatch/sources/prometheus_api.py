"""Prometheus HTTP API answers holding dcgm-exporter series: history from a user's Prometheus.

``curl …/api/v1/query?query=DCGM_FI_DEV_XID_ERRORS`` answers an instant vector,
``/api/v1/query_range`` a range matrix (format: prometheus.io/docs/prometheus/latest/
querying/api)::

    {"status": "success", "data": {"resultType": "matrix", "result": [
      {"metric": {"__name__": "DCGM_FI_DEV_XID_ERRORS", "gpu": "0", "UUID": "GPU-…",
                  "pci_bus_id": "00000000:1B:00.0", "Hostname": "node-1", …},
       "values": [[1700000000.123, "79"], …]}]}}

Each sample of a series whose ``__name__`` is in ``catalog/dcgm_fields.toml`` becomes
the event (source ``dcgm``) dcgm-exporter's own text would give for that metric, labels
and value, read by ``dcgm.emit_sample``; its time is the sample's (seconds, not the
exposition's milliseconds). A series of any other metric is skipped and counted
"not a dcgm metric". An answer of ``"status": "error"`` is unreadable, counted with its
``errorType`` (one the API documents, else "unknown"); a scalar or string result holds
no series and is "result without series". A series or sample not of the documented
shape is "malformed series" or "malformed sample"; a time no clock shows, "out of
range". "NaN" is no value (DCGM had nothing), and DCGM's blank sentinels are no value
either, as in the exposition text.

The answer is one JSON value, usually on one line (``curl`` prints it so), and is
claimed from its first bytes: its ``status`` and ``resultType`` (or ``errorType``).
Reading is one ``json`` decode and one pass over the samples: linear in the answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final

from fleetwatch.catalog import MetricRule, dcgm_metrics
from fleetwatch.sources import dcgm, json_document
from fleetwatch.sources.context import FileContext
from fleetwatch.sources.envelope import Envelope, showable
from fleetwatch.sources.numbers import OUT_OF_RANGE
from fleetwatch.sources.reader import Reader

SOURCE: Final = dcgm.SOURCE
_STATUS: Final = re.compile(rb'^\s*\{\s*"status"\s*:\s*"(?:success|error)"')
_RESULT_OR_ERROR: Final = re.compile(rb'"(?:resultType|errorType)"\s*:')
_SERIES_RESULTS: Final = frozenset({"vector", "matrix"})
# The API's error types (prometheus/prometheus, web/api/v1/api.go); any other is "unknown"
_ERROR_TYPES: Final = frozenset(
    {"timeout", "canceled", "execution", "bad_data", "internal", "unavailable", "not_found"}
)
_NO_ENVELOPE: Final = Envelope(None, "none", None)


def _is_answer(head: bytes) -> bool:
    """A Prometheus API answer opens with its status, and types its result or error."""
    return _STATUS.match(head) is not None and _RESULT_OR_ERROR.search(head) is not None


def read_answer(data: bytes, ctx: FileContext) -> None:
    """Read one ``/api/v1/query`` or ``/api/v1/query_range`` answer."""
    json_document.read_items(data, ctx, _read_object)


def _read_object(answer: dict[str, Any], line: int, ctx: FileContext) -> None:
    if answer.get("status") == "error":
        kind = answer.get("errorType")
        known = isinstance(kind, str) and kind in _ERROR_TYPES  # a reason is never the input's
        ctx.stats.bad(SOURCE, f"query error ({kind if known else 'unknown'})")
        return
    data = answer.get("data")
    result = data.get("result") if isinstance(data, dict) else None
    result_type = data.get("resultType") if isinstance(data, dict) else None
    if not isinstance(result_type, str) or result_type not in _SERIES_RESULTS:  # {}: unhashable
        ctx.stats.bad(SOURCE, "result without series")
        return
    if not isinstance(result, list):
        ctx.stats.bad(SOURCE, "malformed series")
        return
    rules = dcgm_metrics()
    for series in result:
        _read_series(series, rules, line, ctx)


def _read_series(series: Any, rules: Mapping[str, MetricRule], line: int, ctx: FileContext) -> None:
    labels = series.get("metric") if isinstance(series, dict) else None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        ctx.stats.bad(SOURCE, "malformed series")
        return
    rule = rules.get(labels.get("__name__", ""))
    if rule is None:
        ctx.stats.skip(SOURCE, "not a dcgm metric")
        return
    samples = series.get("values")
    if samples is None and "value" in series:
        samples = [series["value"]]
    if not isinstance(samples, list):
        ctx.stats.bad(SOURCE, "malformed series")
        return
    said = dcgm.read_labels(labels)  # once per series, as a scrape's heads are
    for sample in samples:
        if not (isinstance(sample, list) and len(sample) == 2):
            ctx.stats.bad(SOURCE, "malformed sample")
            continue
        stamp, text = sample
        if (
            isinstance(stamp, bool)
            or not isinstance(stamp, int | float)
            or not isinstance(text, str)
        ):
            ctx.stats.bad(SOURCE, "malformed sample")
            continue
        try:
            seconds = float(stamp)  # an integer past a float's range: OverflowError
        except OverflowError:
            seconds = math.inf
        if not (math.isfinite(seconds) and showable(seconds)):
            ctx.stats.bad(SOURCE, OUT_OF_RANGE)
            continue
        try:
            value = float(text)
        except ValueError:
            ctx.stats.bad(SOURCE, "malformed sample")
            continue
        dcgm.emit_sample(said, rule, value, seconds, _NO_ENVELOPE, line, ctx)


READER: Final = Reader(
    name="prometheus_api",
    source=SOURCE,
    kinds=frozenset(rule.kind for rule in dcgm_metrics().values()),
    description="Prometheus /api/v1/query and query_range answers of dcgm-exporter series",
    sniff=_is_answer,
    read_document=read_answer,
)
